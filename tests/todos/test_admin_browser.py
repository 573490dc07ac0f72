"""The todo admin as an operator uses it: a real headless Chromium against the live server.

Covers what the Django test client cannot: the login form, the search box, the owner filter's
text input (submitted with Enter, keeping the search through its hidden inputs), the header
checkbox that selects every row, and the bulk action round trip down to the database.
"""

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.factories import TodoFactory, UserFactory
from todos.models import Todo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
OPERATOR_PASSWORD = "operator-password-1"
# A fixed, well-known path so the last run's page can be looked at; nothing reads it back.
SCREENSHOT = Path("/tmp/admin-changelist.png")  # noqa: S108
# Generous for a page served by the local live server, short enough to fail fast.
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        reason = f"the browser tests need Chromium at {CHROMIUM}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI must run them", pytrace=False)
        pytest.skip(reason)
    # Playwright's sync API keeps an asyncio event loop marked as running on this thread for as
    # long as it is started, so Django would refuse every ORM call made here (test data, the
    # database assertions, the flush after each transactional test) with
    # SynchronousOnlyOperation. Those calls are plain blocking calls, never made from inside a
    # coroutine, so the check does not apply; the live server answers the browser from its own
    # thread and is unaffected.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield chromium
            finally:
                chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def operator():
    user = UserFactory(username="operator", is_staff=True, is_superuser=True)
    user.set_password(OPERATOR_PASSWORD)
    user.save()
    return user


@pytest.fixture
def todos():
    alice = UserFactory(username="alice")
    bob = UserFactory(username="bob")
    return {
        "buy milk": TodoFactory(owner=alice, title="buy milk"),
        "buy bread": TodoFactory(owner=alice, title="buy bread"),
        "walk dog": TodoFactory(owner=alice, title="walk dog"),
        "buy stamps": TodoFactory(owner=bob, title="buy stamps"),
    }


def log_in(page, live_server, operator):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", operator.username)
    page.fill("#id_password", OPERATOR_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def row_titles(page) -> list[str]:
    return sorted(page.locator("#result_list tbody .field-title").all_inner_texts())


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_operator_finds_filters_and_bulk_completes_todos(page, live_server, operator, todos):
    log_in(page, live_server, operator)
    page.goto(f"{live_server.url}/admin/todos/todo/")
    expect(page.locator("#result_list tbody tr")).to_have_count(4)

    # Search by title.
    page.fill("#searchbar", "buy")
    page.press("#searchbar", "Enter")
    page.wait_for_url("**/admin/todos/todo/?q=buy")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    assert row_titles(page) == ["buy bread", "buy milk", "buy stamps"]

    # The owner filter's form carries the search along as a hidden input.
    owner_form = page.locator("form.input-filter")
    expect(owner_form.locator("input[type=hidden][name=q]")).to_have_value("buy")
    owner_input = page.get_by_label("Filter by owner")
    expect(owner_input).to_have_value("")
    owner_input.fill("alice")
    owner_input.press("Enter")
    page.wait_for_url("**/admin/todos/todo/?*owner=alice*")
    assert query_of(page.url) == {"q": ["buy"], "owner": ["alice"]}
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    assert row_titles(page) == ["buy bread", "buy milk"]
    expect(page.locator("#searchbar")).to_have_value("buy")
    expect(page.get_by_label("Filter by owner")).to_have_value("alice")

    # Select every row with the header checkbox and run the bulk action.
    page.check("#action-toggle")
    expect(page.locator("#result_list tbody input.action-select:checked")).to_have_count(2)
    page.select_option("select[name=action]", label="Mark selected todos as completed")
    page.click("button[name=index]")
    expect(page.locator("ul.messagelist li.success")).to_have_text("2 todos marked completed.")
    # Back on the same filtered changelist.
    assert query_of(page.url) == {"q": ["buy"], "owner": ["alice"]}
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    completed = dict(Todo.objects.values_list("title", "completed"))
    assert completed == {
        "buy milk": True,
        "buy bread": True,
        "walk dog": False,
        "buy stamps": False,
    }


def test_changelist_counts_rows_and_filters_by_completed(page, live_server, operator, todos):
    Todo.objects.filter(pk=todos["walk dog"].pk).update(completed=True)
    log_in(page, live_server, operator)

    page.goto(f"{live_server.url}/admin/todos/todo/")
    expect(page.locator("#result_list tbody tr")).to_have_count(4)
    expect(page.locator("p.paginator")).to_contain_text("4 todos")

    completed_filter = page.locator('details[data-filter-title="completed"]')
    completed_filter.get_by_role("link", name="Yes", exact=True).click()
    page.wait_for_url("**/admin/todos/todo/?completed__exact=1")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    assert row_titles(page) == ["walk dog"]
    expect(page.locator("p.paginator")).to_contain_text("1 todo")

    completed_filter.get_by_role("link", name="No", exact=True).click()
    page.wait_for_url("**/admin/todos/todo/?completed__exact=0")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    assert row_titles(page) == ["buy bread", "buy milk", "buy stamps"]
