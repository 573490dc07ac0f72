"""Token authentication by the key's digest, that never reads a token from a standby.

The user is unknown until the token is looked up, so their read-your-writes mark cannot be
consulted yet; and a token issued a millisecond ago, on any web replica, must already work. So
the token is either resolved by the gateway in Redis (config/edge/gateway.py) or read from the
primary.
"""

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from config.edge import response_cache
from config.edge.gateway import bearer_token
from todos.models import ApiToken


class PrimaryTokenAuthentication(TokenAuthentication):
    """DRF's `TokenAuthentication` (the `Authorization: Token <key>` header), looking the token
    up by the SHA-256 of its key (`todos.ApiToken`), trusting the gateway's resolution of it,
    else reading the token and its user from the primary in one query.

    The gateway resolves a token only through the `tok:` mapping, which is written only after
    this class authenticated the token against the primary, expires with the token, and is
    replaced by a tombstone that is never overwritten the moment the token is deleted or its
    user deactivated (todos/cache.py, config/edge/response_cache.py). A mapping therefore stands
    for a token that exists, has not expired, and an active user, as the query would. The user
    then carries only its id; any other field is loaded on first use (Django's deferred
    fields): the API itself needs only the id.
    """

    model = ApiToken

    def authenticate(self, request):
        self.meta = request.META
        return super().authenticate(request)

    def authenticate_credentials(self, key):
        meta = getattr(self, "meta", {})
        digest = response_cache.token_digest(key)
        gate = meta.get("todo_scale.gate")
        if gate is not None and gate.user_id is not None and bearer_token(meta) == key:
            return self.resolved(digest, gate.user_id)
        try:
            token = (
                ApiToken.objects.using(DEFAULT_DB_ALIAS).select_related("user").get(digest=digest)
            )
        except ApiToken.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        if token.expired():
            raise exceptions.AuthenticationFailed(_("Token expired."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        if response_cache.gate_enabled():
            # Teach the gateway this token, so the next request needs no query for it.
            response_cache.token_remember(digest, token.user_id, token.expires_at)
        return (token.user, token)

    def resolved(self, digest: str, user_id: int):
        user = get_user_model().from_db(DEFAULT_DB_ALIAS, ["id"], [user_id])
        return (user, ApiToken(digest=digest, user=user))
