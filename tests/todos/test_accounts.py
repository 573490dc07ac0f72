"""Sign-up, login and logout endpoints, and the tokens they hand out: kept only as digests,
expiring, revocable one by one or all at once."""

import json
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from tests.conftest import api_client_for
from tests.factories import TokenFactory, UserFactory
from todos.models import ApiToken

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


def test_register_returns_a_token_that_works():
    client = APIClient()

    response = client.post(
        "/api/auth/register", {"username": "carol", "password": PASSWORD}, format="json"
    )

    assert response.status_code == 201
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.post("/api/todos", {"title": "first"}, format="json").status_code == 201
    assert [t["title"] for t in client.get("/api/todos").json()] == ["first"]


def test_register_twice_is_400_naming_username():
    client = APIClient()
    body = {"username": "carol", "password": PASSWORD}
    client.post("/api/auth/register", body, format="json")

    response = client.post("/api/auth/register/", body, format="json")

    assert response.status_code == 400
    assert "username" in response.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "carol", "password": "123"}, "password"),
        ({"username": "carol", "password": "password"}, "password"),
        ({"username": "carol"}, "password"),
        ({"password": PASSWORD}, "username"),
        ({"username": "bad name!", "password": PASSWORD}, "username"),
        ({"username": "carol", "password": PASSWORD, "is_staff": True}, "is_staff"),
    ],
)
def test_register_rejects_bad_input_and_creates_nobody(body, field, django_user_model):
    response = APIClient().post("/api/auth/register", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not django_user_model.objects.exists()


def login(client: APIClient, path: str = "/api/auth/token") -> str:
    response = client.post(path, {"username": "dave", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    return response.json()["token"]


def status_with(token: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get("/api/todos").status_code


def test_token_endpoint_issues_a_new_working_token_each_time():
    UserFactory(username="dave", password=PASSWORD)
    client = APIClient()

    first, second = login(client), login(client, "/api/auth/token/")

    assert first != second
    assert len(first) == 64
    assert status_with(first) == status_with(second) == 200


def test_token_endpoint_rejects_a_wrong_password():
    UserFactory(username="dave", password=PASSWORD)

    response = APIClient().post(
        "/api/auth/token", {"username": "dave", "password": "wrong-password"}, format="json"
    )

    assert response.status_code == 400
    assert "token" not in response.json()
    assert "detail" in response.json()


def test_session_login_reaches_the_browsable_api(user):
    client = APIClient()
    client.force_login(user)

    response = client.get("/api/todos", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert b"Todo" in response.content


def test_the_database_holds_no_usable_key(django_user_model):
    # given: tokens from a sign-up, a login and the factory
    client = APIClient()
    registered = client.post(
        "/api/auth/register", {"username": "dave", "password": PASSWORD}, format="json"
    ).json()["token"]
    keys = [registered, login(client), TokenFactory().key]
    assert {status_with(key) for key in keys} == {200}

    # when: the database is dumped, as a backup or an attacker would
    dump = StringIO()
    call_command("dumpdata", "--database", "default", stdout=dump)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM todos_apitoken")
        rows = cursor.fetchall()

    # then: no key is in it, and no value of a token row authenticates
    assert not [key for key in keys if key in dump.getvalue()]
    dumped = [o for o in json.loads(dump.getvalue()) if o["model"] == "todos.apitoken"]
    assert len(dumped) == len(rows) == 3
    values = {str(value) for row in rows for value in row}
    values |= {str(value) for o in dumped for value in o["fields"].values()}
    assert {key for key in keys if key in values} == set()
    assert {status_with(value) for value in values} == {401}


def test_logout_revokes_only_the_token_it_is_sent_with(user):
    phone, laptop = api_client_for(user), api_client_for(user)

    response = phone.post("/api/auth/logout")

    assert response.status_code == 204
    assert response.content == b""
    assert phone.get("/api/todos").json() == {"detail": "Invalid token."}
    assert phone.post("/api/auth/logout/").status_code == 401
    assert laptop.get("/api/todos").status_code == 200
    assert list(ApiToken.objects.values_list("digest", flat=True)) == [laptop.token.digest]


def test_logout_all_revokes_every_token_of_the_caller_only(user, other_api):
    phone, laptop = api_client_for(user), api_client_for(user)

    response = laptop.post("/api/auth/logout-all")

    assert response.status_code == 204
    assert phone.get("/api/todos").status_code == laptop.get("/api/todos").status_code == 401
    assert other_api.get("/api/todos").status_code == 200
    assert not user.api_tokens.exists()


@pytest.mark.parametrize("path", ["/api/auth/logout", "/api/auth/logout-all"])
def test_logout_needs_a_token_not_a_session(path, user):
    session = APIClient()
    session.force_login(user)

    assert APIClient().post(path).status_code == 401
    assert session.post(path).status_code == 401
    assert api_client_for(user).get(path).status_code == 405


def test_a_token_is_refused_once_it_expires(settings):
    settings.API_TOKEN_TTL = timedelta(milliseconds=300)
    token = (
        APIClient()
        .post("/api/auth/register", {"username": "carol", "password": PASSWORD}, format="json")
        .json()["token"]
    )
    assert status_with(token) == 200

    time.sleep(0.4)

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.get("/api/todos")
    assert response.status_code == 401
    assert response.json() == {"detail": "Token expired."}
    assert response["WWW-Authenticate"] == "Token"
