"""The routes whose GETs the gateway may answer from the response cache, named by their apps.

An app registers the URL names of its cacheable reads when Django starts (todos/apps.py); the
gateway then matches a request's path against those routes' full patterns, prefix included,
exactly as the URLconf builds them. So the gateway never repeats an app's URL, and a route moved
in the URLconf moves here too.
"""

import functools
import re

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import ResolverMatch, get_resolver, get_urlconf, resolve

NAMED_GROUP = re.compile(r"\(\?P<\w+>")

_names: list[str] = []
_matcher: re.Pattern | None = None
# The URL name of each of the matcher's groups, by the group's name (`r0`, `r1`, ...).
_group_names: dict[str, str] = {}


def register(*url_names: str) -> None:
    """Let the gateway answer GETs of the routes named `url_names` from the response cache."""
    global _matcher
    for name in url_names:
        if name not in _names:
            _names.append(name)
    _matcher = None


def _compile() -> re.Pattern:
    """One regex for every registered route, from the root resolver's reverse index; each
    route is a named group, so a match also tells which route it was.

    Matching it costs a fraction of a microsecond; `django.urls.resolve()` would cost about
    20 µs on every hit, some 5% of the gateway's whole work for one.
    """
    resolver = get_resolver()
    patterns = []
    _group_names.clear()
    for name in _names:
        # Each entry is (bits, the route's regex below the root "/", defaults, converters).
        routes = resolver.reverse_dict.getlist(name)
        if not routes:
            raise ImproperlyConfigured(f"cacheable route {name!r} is not in the URLconf")
        # The route's own groups unnamed, so that two routes may both call their id `pk`.
        for route in routes:
            group = f"r{len(_group_names)}"
            _group_names[group] = name
            patterns.append(f"(?P<{group}>{NAMED_GROUP.sub('(?:', route[1])})")
    # Nothing registered: a pattern that matches no path.
    return re.compile("/(?:" + "|".join(patterns) + ")" if patterns else r"(?!)")


def route_name(path: str) -> str | None:
    """The URL name of the registered route `path` (a PATH_INFO) is, or None."""
    global _matcher
    if _matcher is None:
        _matcher = _compile()
    match = _matcher.fullmatch(path)
    # The route's group encloses any group of its own, so it is the last to close.
    return None if match is None else _group_names[match.lastgroup]


def is_cacheable(path: str) -> bool:
    """True when `path` (a PATH_INFO) is one of the registered routes."""
    return route_name(path) is not None


def resolved(path: str) -> ResolverMatch:
    """`django.urls.resolve(path)`, remembered for the last 4,096 paths (of this thread's
    URLconf): the gateway's own reads and writes need the URL's arguments, and a resolve walks
    the URLconf, some 55 us of each create's CPU measured in process (the lookup here is under
    one). Raises Resolver404 as resolve does. The match is shared: read it, never change it."""
    return _resolved(path, get_urlconf())


@functools.lru_cache(maxsize=4096)
def _resolved(path: str, urlconf) -> ResolverMatch:
    return resolve(path, urlconf)


@receiver(setting_changed)
def _urlconf_changed(*, setting: str, **kwargs) -> None:
    """A test that swaps ROOT_URLCONF resolves against the new one."""
    if setting == "ROOT_URLCONF":
        _resolved.cache_clear()
