"""Signal receivers: a revoked token or a deactivated user stops being served from the cache.

The gateway resolves tokens from Redis without asking Postgres, so the mapping must disappear
the moment the token does.
"""

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from config import response_cache


@receiver(post_delete, sender=Token)
def token_deleted(sender, instance: Token, **kwargs) -> None:
    if response_cache.enabled():
        # Now and after commit: a gateway must not resolve it in between, nor refill it from a
        # request that authenticated just before the delete committed.
        response_cache.token_forget(instance.key)
        transaction.on_commit(lambda: response_cache.token_forget(instance.key))


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def user_saved(sender, instance, **kwargs) -> None:
    if response_cache.enabled() and not instance.is_active:
        for key in Token.objects.filter(user=instance).values_list("key", flat=True):
            response_cache.token_forget(key)
            transaction.on_commit(lambda key=key: response_cache.token_forget(key))
