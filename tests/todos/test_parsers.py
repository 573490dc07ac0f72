"""Hostile body shapes (deep nesting, long arrays and strings, odd types): always a 4xx JSON error
naming the problem, never a 5xx, and nothing written."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import TodoFactory
from todos.models import Todo
from todos.parsers import MAX_ARRAY_LENGTH, MAX_DEPTH, MAX_OBJECT_MEMBERS, MAX_STRING_LENGTH

pytestmark = pytest.mark.django_db


def post_raw(api, body: str, url: str = "/api/todos"):
    return api.generic("POST", url, body, content_type="application/json")


def test_a_title_nested_five_thousand_arrays_deep_is_400_naming_the_depth(api):
    response = post_raw(api, '{"title": ' + "[" * 5000 + "]" * 5000 + "}")

    assert response.status_code == 400
    assert response.json() == {"detail": f"JSON nested deeper than {MAX_DEPTH} levels."}
    assert Todo.objects.count() == 0


def test_nesting_just_past_the_limit_is_400_saying_where(api):
    body = {"title": {"a": {"b": {"c": {"d": "x"}}}}}

    response = api.post("/api/todos", body, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": f"JSON nested deeper than {MAX_DEPTH} levels at $.title.a.b.c."
    }
    assert Todo.objects.count() == 0


def test_a_shallow_wrong_type_still_gets_the_field_error(api):
    response = api.post("/api/todos", {"title": [["x"]]}, format="json")

    assert response.status_code == 400
    assert response.json() == {"title": ["Must be a JSON string."]}


def test_an_array_longer_than_the_limit_is_400(api):
    response = api.post("/api/todos", {"title": ["x"] * (MAX_ARRAY_LENGTH + 1)}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": f"JSON array at $.title has more than {MAX_ARRAY_LENGTH} items."
    }
    assert Todo.objects.count() == 0


def test_an_object_with_too_many_members_is_400(api):
    body = {"title": "x", **{f"field{n}": n for n in range(MAX_OBJECT_MEMBERS)}}

    response = api.post("/api/todos", body, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": f"JSON object at $ has more than {MAX_OBJECT_MEMBERS} members."
    }
    assert Todo.objects.count() == 0


def test_a_title_a_little_too_long_gets_the_field_error(api):
    response = api.post("/api/todos", {"title": "x" * MAX_STRING_LENGTH}, format="json")

    assert response.status_code == 400
    assert response.json() == {"title": ["Ensure this field has no more than 500 characters."]}


def test_a_string_past_the_limit_is_400(api):
    response = api.post("/api/todos", {"title": "x" * (MAX_STRING_LENGTH + 1)}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": f"JSON string at $.title is longer than {MAX_STRING_LENGTH} characters."
    }
    assert Todo.objects.count() == 0


def test_a_long_key_is_400_and_not_echoed_whole(api):
    response = api.post("/api/todos", {"title": "x", "k" * 5000: 1}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": f"JSON key at $.{'k' * 40} is longer than {MAX_STRING_LENGTH} characters."
    }


@pytest.mark.parametrize(
    ("body", "where"),
    [('{"title": "\\ud800"}', "$.title"), ('{"title": "x", "\\udfff": 1}', "$.\\udfff")],
)
def test_a_lone_surrogate_is_400_not_a_database_error(api, body, where):
    response = post_raw(api, body)

    assert response.status_code == 400
    assert response.json() == {
        "detail": f"JSON {'string' if where == '$.title' else 'key'} at {where} "
        "is not valid Unicode (a lone surrogate)."
    }
    assert Todo.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("null", "No data provided"),
        ('"a todo"', "Expected a dictionary, but got str"),
        ("5", "Expected a dictionary, but got int"),
        ("[]", "Expected a dictionary, but got list"),
    ],
)
def test_a_body_that_is_not_an_object_is_400_naming_the_type(api, body, message):
    response = post_raw(api, body)

    assert response.status_code == 400
    assert message in response.json()["non_field_errors"][0]
    assert Todo.objects.count() == 0


def test_the_limits_apply_to_every_endpoint_that_takes_a_body(client):
    response = client.generic(
        "POST", "/api/auth/register", '{"username": ' + "[" * 3000, content_type="application/json"
    )

    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]


# --- Fuzzing ----------------------------------------------------------------------------------
FIELDS = ("title", "completed", "order", "due_at", "id", "url", "owner")
# Every code point, lone surrogates included (hypothesis leaves them out unless told).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | ANY_TEXT
    | st.text(max_size=1200)
    | st.datetimes().map(lambda value: value.isoformat())
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=MAX_ARRAY_LENGTH + 2)
        | st.dictionaries(ANY_TEXT, children, max_size=4)
    ),
    max_leaves=40,
)
TODO_LIKE = st.dictionaries(st.sampled_from(FIELDS) | ANY_TEXT, JSON_VALUES, max_size=6)


@st.composite
def nested(draw) -> str:
    """A value wrapped in arrays or objects from a few levels to far past Python's recursion
    limit, sometimes unbalanced."""
    depth = draw(st.integers(min_value=1, max_value=3000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    inner = json.dumps(draw(SCALARS))
    tail = closer * draw(st.sampled_from([depth, depth - 1, 0]))
    return '{"title": ' + opener * depth + inner + tail + "}"


BODIES = TODO_LIKE.map(json.dumps) | JSON_VALUES.map(json.dumps) | nested() | st.text(max_size=50)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    # The database and the client are shared by the examples on purpose: each one checks the
    # row count before and after its own request.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def no_rate_limits(settings):
    # Hundreds of requests in a few seconds would otherwise be answered 429 and test nothing.
    settings.RATE_LIMIT_USER = settings.RATE_LIMIT_IP = "off"


@FUZZ
@given(body=BODIES)
def test_fuzzed_create_bodies_are_never_a_5xx_and_write_nothing_on_4xx(api, no_rate_limits, body):
    before = Todo.objects.count()

    response = post_raw(api, body)

    assert response.status_code < 500, (body[:300], response.content[:300])
    assert response["Content-Type"] == "application/json"
    if response.status_code >= 400:
        assert response.status_code == 400, response.content[:300]
        assert isinstance(response.json(), dict)
        assert Todo.objects.count() == before
    else:
        assert Todo.objects.count() == before + 1


@FUZZ
@given(body=BODIES, method=st.sampled_from(["PATCH", "PUT"]))
def test_fuzzed_update_bodies_are_never_a_5xx_and_change_nothing_on_4xx(
    api, no_rate_limits, body, method
):
    todo = TodoFactory(owner=api.user, title="keep")
    before = Todo.objects.filter(pk=todo.pk).values().get()

    response = api.generic(method, f"/api/todos/{todo.pk}", body, content_type="application/json")

    assert response.status_code < 500, (body[:300], response.content[:300])
    if response.status_code >= 400:
        assert response.status_code == 400, response.content[:300]
        assert isinstance(response.json(), dict)
        assert Todo.objects.filter(pk=todo.pk).values().get() == before
