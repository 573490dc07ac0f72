"""Token authentication that always reads from the primary.

The user is unknown until the token is looked up, so their read-your-writes mark cannot be
consulted yet; and a token issued a millisecond ago, on any web replica, must already work.
"""

from django.db import DEFAULT_DB_ALIAS
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication


class PrimaryTokenAuthentication(TokenAuthentication):
    """DRF's `TokenAuthentication`, reading the token and its user from the primary in one query."""

    def authenticate_credentials(self, key):
        model = self.get_model()
        try:
            token = model.objects.using(DEFAULT_DB_ALIAS).select_related("user").get(key=key)
        except model.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return (token.user, token)
