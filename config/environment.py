"""Reading environment variables strictly: django-environ's `Env`, with a bad value an error."""

from datetime import timedelta

import environ
from django.core.exceptions import ImproperlyConfigured

# What each strict type must look like, as the error message says it.
_EXPECTED = {bool: "true or false", int: "an integer", float: "a number"}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class StrictEnv(environ.Env):
    """django-environ's `Env`, changed where it would run on a value nobody chose.

    A typo must stop the process at start-up with a message naming the variable, not give a
    replica that quietly runs without TLS redirects or with a different pool size:

    - a boolean other than 1/true/yes/on or 0/false/no/off is an error (`Env.bool` reads any
      unknown word as False, so `DJANGO_SECURE_SSL_REDIRECT=ture` would switch HTTPS off);
    - an integer or a number that does not parse is an error (`Env.float` first drops every
      character that is not a digit, so `1e3` would read as 13);
    - an empty boolean, integer or number is unset and takes its default, as `VAR=` in a compose
      file or a manifest means;
    - a list item is trimmed and empty items are dropped, so `a, b,` is the two hosts `a` and `b`;
    - a value is taken as written: `Env` reads a value starting with `$` as the name of another
      variable, which would silently replace a password or a token that starts with `$`.

    Only the variable's own value is read: no prefix, no scheme of defaults, and a default is
    returned as given, never parsed.
    """

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        raw = self.ENVIRON.get(var)
        if raw is None or (raw == "" and cast in _EXPECTED):
            if default is self.NOTSET:
                raise ImproperlyConfigured(f"Set the {var} environment variable")
            return default
        try:
            return self.parse_value(raw, cast)
        except ValueError as exc:
            expected = _EXPECTED.get(cast, "valid")
            raise ImproperlyConfigured(f"{var} must be {expected}, not {raw!r}") from exc

    @classmethod
    def parse_value(cls, value, cast):
        if cast is bool:
            word = value.strip().lower()
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
            raise ValueError(value)
        if cast is float:
            return float(value)
        if cast is list:
            return [item.strip() for item in value.split(",") if item.strip()]
        return super().parse_value(value, cast)

    def seconds(self, var: str, *, default: int) -> timedelta:
        """A positive whole number of seconds, as a `timedelta`: 0 or less is an error, since a
        duration of nothing (a token that expires as it is issued) is never what was meant."""
        value = self.int(var, default=default)
        if value < 1:
            raise ImproperlyConfigured(f"{var} must be a positive number of seconds, not {value}")
        return timedelta(seconds=value)
