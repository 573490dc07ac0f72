"""A Todo Scale user's journey for Locust (`make load`), against any running server.

wrk (`make bench`) measures single request kinds at full speed; this is the other view: many
users, each with an account and a list of its own, pausing between steps as people do, through
the whole API a client uses: sign up, list, create, complete, page through the list by its
`Link: <...>; rel="next"` header, delete. Each step checks what a client relies on, and a wrong
answer is a Locust failure even when its status is 2xx: after a write, the very next read (an
item GET or the pages of the list, on whichever replica, standby and cache entry it lands on)
must show it. So a run with no failures says that read-your-writes held under that load.

Every Locust user signs up as a user of its own, so the per-user rate limit (RATE_LIMIT_USER,
1,200/minute) is never near. All of them come from one IP, though: the sign-up limit
(RATE_LIMIT_AUTH, 20/minute per IP) and the per-IP limit (RATE_LIMIT_IP, 3,000/minute) are, so
start the server for a load run with `RATE_LIMIT_AUTH=off RATE_LIMIT_IP=off`. A sign-up refused
with 429 is counted as a failure and tried again after its Retry-After.

`--think-time SECONDS` (or LOCUST_THINK_TIME) is the mean pause between two steps of a user: 1 s
by default, 0 for a closed loop.
"""

from __future__ import annotations

import secrets
import time
import uuid

from locust import HttpUser, SequentialTaskSet, between, events, task
from locust.exception import StopUser

# Small pages, so a short list already has several and the journey follows `rel="next"`.
PAGE_SIZE = 5
# Todos a user adds right after signing up, so its list has two pages with the journey's own.
BACKLOG = 9
# A list longer than this many pages means the `next` links go round in a circle.
MAX_PAGES = 100
RATE_LIMITED = (
    "429 rate limited: every Locust user comes from one IP, so start the server with "
    "RATE_LIMIT_AUTH=off RATE_LIMIT_IP=off for a load run"
)


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument(
        "--think-time",
        type=float,
        env_var="LOCUST_THINK_TIME",
        default=1.0,
        help="mean seconds a user pauses between two steps (0: none)",
    )


def unexpected(response, expected: int) -> str | None:
    """Why `response` is not the `expected` status, or None when it is."""
    if response.status_code == expected:
        return None
    if response.status_code == 429:
        return RATE_LIMITED
    return f"{response.status_code} instead of {expected}: {response.text[:200]}"


class Journey(SequentialTaskSet):
    """One pass of the journey, step by step; a failed step starts the journey over."""

    todo: dict | None = None

    def todo_path(self) -> str:
        return f"/api/todos/{self.todo['id']}"

    def fail(self, response, reason: str) -> None:
        """Count `response` as a failure and start the journey over (the later steps need this
        one's result)."""
        response.failure(reason)
        self.interrupt(reschedule=False)

    def body(self, response):
        """The response's JSON; a body that is not JSON is a failure."""
        try:
            return response.json()
        except ValueError:
            self.fail(response, f"not JSON: {response.text[:200]}")

    @task
    def list_first_page(self):
        with self.client.get(
            f"/api/todos?limit={PAGE_SIZE}", name="list", catch_response=True
        ) as response:
            if reason := unexpected(response, 200):
                self.fail(response, reason)

    @task
    def create(self):
        title = f"journey {uuid.uuid4().hex[:12]}"
        with self.client.post(
            "/api/todos", json={"title": title}, name="create", catch_response=True
        ) as response:
            if reason := unexpected(response, 201):
                self.fail(response, reason)
            body = self.body(response)
            if body.get("title") != title or "Location" not in response.headers:
                self.fail(response, f"create answered {body} without its title or a Location")
            self.todo = body

    @task
    def read_after_create(self):
        with self.client.get(
            self.todo_path(), name="read after create", catch_response=True
        ) as response:
            if response.status_code == 404:
                self.fail(response, "read-your-writes: the todo just created is not found")
            if reason := unexpected(response, 200):
                self.fail(response, reason)
            if (body := self.body(response)).get("title") != self.todo["title"]:
                self.fail(response, f"read-your-writes: {body} is not {self.todo}")

    @task
    def complete(self):
        with self.client.patch(
            self.todo_path(), json={"completed": True}, name="complete", catch_response=True
        ) as response:
            if reason := unexpected(response, 200):
                self.fail(response, reason)
            if (body := self.body(response)).get("completed") is not True:
                self.fail(response, f"PATCH completed=true answered {body}")

    @task
    def read_after_complete(self):
        with self.client.get(
            self.todo_path(), name="read after complete", catch_response=True
        ) as response:
            if reason := unexpected(response, 200):
                self.fail(response, reason)
            if (body := self.body(response)).get("completed") is not True:
                self.fail(response, f"read-your-writes: the completed todo reads {body}")

    @task
    def page_through(self):
        """Every page of the list, by the `next` links: the completed todo is on one of them,
        completed."""
        url, name, seen = f"/api/todos?limit={PAGE_SIZE}", "list", {}
        for page in range(1, MAX_PAGES + 1):
            with self.client.get(url, name=name, catch_response=True) as response:
                if reason := unexpected(response, 200):
                    self.fail(response, reason)
                seen.update((todo["id"], todo) for todo in self.body(response))
                url = response.links.get("next", {}).get("url")
                if url is None:
                    found = seen.get(self.todo["id"])
                    if found is None:
                        self.fail(response, "read-your-writes: the new todo is on no page")
                    if found["completed"] is not True:
                        self.fail(response, f"read-your-writes: the list shows {found}")
                    return
                if page == MAX_PAGES:
                    self.fail(response, f"over {MAX_PAGES} pages of {PAGE_SIZE}: the links loop")
            name = "list next page"

    @task
    def delete(self):
        with self.client.delete(self.todo_path(), name="delete", catch_response=True) as response:
            if reason := unexpected(response, 204):
                self.fail(response, reason)

    @task
    def read_after_delete(self):
        with self.client.get(
            self.todo_path(), name="read after delete", catch_response=True
        ) as response:
            if response.status_code == 200:
                self.fail(response, "read-your-writes: the deleted todo is still there")
            if reason := unexpected(response, 404):
                self.fail(response, reason)
            response.success()


class TodoUser(HttpUser):
    """A person with an account of its own: signs up, adds a few todos, then goes through the
    journey again and again."""

    tasks = [Journey]

    def wait_time(self) -> float:
        think = self.environment.parsed_options.think_time if self.environment.parsed_options else 1
        return between(think / 2, think * 3 / 2)(self)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Token {self.sign_up()}"
        for number in range(BACKLOG):
            with self.client.post(
                "/api/todos", json={"title": f"backlog {number}"}, name="create",
                catch_response=True,
            ) as response:  # fmt: skip
                if reason := unexpected(response, 201):
                    response.failure(reason)

    def sign_up(self) -> str:
        """A new account's token; a 429 (the per-IP sign-up limit) is retried after Retry-After."""
        credentials = {
            "username": f"locust-{uuid.uuid4().hex[:16]}",
            "password": secrets.token_urlsafe(18),
        }
        while True:
            with self.client.post(
                "/api/auth/register", json=credentials, name="sign up", catch_response=True
            ) as response:
                if response.status_code == 201:
                    return response.json()["token"]
                response.failure(unexpected(response, 201))
                if response.status_code != 429:
                    raise StopUser
            time.sleep(float(response.headers.get("Retry-After", 1)))
