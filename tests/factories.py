"""factory_boy factories for users, tokens and todos."""

import secrets

import factory
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from todos.models import ApiToken, Todo
from todos.services.accounts import TOKEN_BYTES


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct-horse-battery")


class TokenFactory(factory.django.DjangoModelFactory):
    """An API token; the plain key is on the instance (`.key`), the row holds its digest.
    `key=` picks the key, `expires_at=` the expiry (default: `API_TOKEN_TTL` from now)."""

    class Meta:
        model = ApiToken

    user = factory.SubFactory(UserFactory)
    key = factory.LazyFunction(lambda: secrets.token_hex(TOKEN_BYTES))
    expires_at = factory.LazyFunction(lambda: timezone.now() + settings.API_TOKEN_TTL)

    @classmethod
    def _build(cls, model_class, *args, key, **kwargs):
        return model_class.for_key(key, *args, **kwargs)

    @classmethod
    def _create(cls, model_class, *args, key, **kwargs):
        token = model_class.for_key(key, *args, **kwargs)
        token.save(force_insert=True)
        return token


class TodoFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Todo

    owner = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"todo {n}")
