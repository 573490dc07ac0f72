"""`manage.py create_api_user NAME`: a user for a script or an operator, and a new API token.

Each run issues another token (valid for `API_TOKEN_TTL`; the earlier ones keep working until
they expire or are revoked): the database keeps only digests, so no earlier key can be shown.
"""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from todos.services import user_token_issue


class Command(BaseCommand):
    help = "Create (or find) user NAME and print a new API token of theirs on stdout."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--password", help="set this password (default: a random one)")
        parser.add_argument("--staff", action="store_true", help="may log in to the admin")
        parser.add_argument("--superuser", action="store_true")

    def handle(self, *args, name, password, staff, superuser, **options):
        user, created = get_user_model().objects.get_or_create(username=name)
        if created or password:
            user.set_password(password or secrets.token_urlsafe(24))
        user.is_staff = user.is_staff or staff or superuser
        user.is_superuser = user.is_superuser or superuser
        user.save()
        token = user_token_issue(user=user, name="create_api_user")
        verb = "created" if created else "exists"
        self.stderr.write(f"user {name} {verb}; a new token:")
        self.stdout.write(token.key)
