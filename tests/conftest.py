"""Shared fixtures: users with tokens and API clients that authenticate like real clients."""

import pytest
from rest_framework.test import APIClient

from tests.factories import TokenFactory, UserFactory


def api_client_for(user) -> APIClient:
    """An API client sending `Authorization: Token <key>` for `user`, as scripts do."""
    token = TokenFactory(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    client.user = user
    return client


@pytest.fixture
def user(db):
    return UserFactory(username="alice")


@pytest.fixture
def other_user(db):
    return UserFactory(username="bob")


@pytest.fixture
def api(user) -> APIClient:
    return api_client_for(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return api_client_for(other_user)
