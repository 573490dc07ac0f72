"""Writes of accounts: sign-up, and the API tokens a user authenticates with."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from todos.models import ApiToken

# Bytes of randomness in a key (64 hex characters): far past guessing, so a plain SHA-256 of
# it is all the protection its digest needs (config/edge/response_cache.token_digest).
TOKEN_BYTES = 32


class UsernameTaken(Exception):
    """Raised by `user_register` when the username already exists."""


@transaction.atomic
def user_register(*, username: str, password: str) -> ApiToken:
    """Create a user with `password` (already validated) and return their first API token."""
    user_model = get_user_model()
    try:
        # A savepoint, so that a lost race on the unique username leaves the outer
        # transaction usable.
        with transaction.atomic():
            user = user_model.objects.create_user(username=username, password=password)
    except IntegrityError as exc:
        raise UsernameTaken(username) from exc
    return user_token_issue(user=user, name="register")


def user_token_issue(*, user: AbstractBaseUser, name: str = "") -> ApiToken:
    """A new API token for `user`, valid for `API_TOKEN_TTL`; its `key` is on the returned
    instance only, since the database keeps just the digest."""
    token = ApiToken.for_key(
        secrets.token_hex(TOKEN_BYTES),
        user=user,
        name=name,
        expires_at=timezone.now() + settings.API_TOKEN_TTL,
    )
    token.save(force_insert=True)
    return token


@transaction.atomic
def user_token_revoke(*, digest: str) -> int:
    """Delete the token of `digest` (logout); every gateway refuses it from now on
    (todos/cache.py). Returns how many tokens went: 0 when it was gone already."""
    deleted, _ = ApiToken.objects.filter(digest=digest).delete()
    return deleted


@transaction.atomic
def user_tokens_revoke(*, user_id: int) -> int:
    """Delete every token of the user (logout everywhere); returns how many."""
    deleted, _ = ApiToken.objects.filter(user_id=user_id).delete()
    return deleted
