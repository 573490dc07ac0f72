"""Sign-up and token endpoints, and the token they hand out."""

import pytest
from rest_framework.test import APIClient

from tests.factories import UserFactory

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


def test_token_endpoint_returns_the_same_token_each_time():
    UserFactory(username="dave", password=PASSWORD)
    client = APIClient()

    first = client.post(
        "/api/auth/token", {"username": "dave", "password": PASSWORD}, format="json"
    )
    second = client.post(
        "/api/auth/token/", {"username": "dave", "password": PASSWORD}, format="json"
    )

    assert first.status_code == 200
    assert first.json()["token"] == second.json()["token"]


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
