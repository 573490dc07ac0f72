"""Writes of accounts: sign-up and the API token a user authenticates with."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token


class UsernameTaken(Exception):
    """Raised by `user_register` when the username already exists."""


@transaction.atomic
def user_register(*, username: str, password: str) -> Token:
    """Create a user with `password` (already validated) and return their API token."""
    user_model = get_user_model()
    try:
        # A savepoint, so that a lost race on the unique username leaves the outer
        # transaction usable.
        with transaction.atomic():
            user = user_model.objects.create_user(username=username, password=password)
    except IntegrityError as exc:
        raise UsernameTaken(username) from exc
    return Token.objects.create(user=user)


@transaction.atomic
def user_token_issue(*, user: AbstractBaseUser) -> Token:
    """Return the user's API token, creating it on first use."""
    token, _ = Token.objects.get_or_create(user=user)
    return token
