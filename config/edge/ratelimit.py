"""Rate limits per user and per client IP, as fixed windows counted atomically in Redis.

Each request increments one counter per scope that applies to it (`ip`, `user`, or `auth` for
the sign-up and token endpoints) inside the same Lua script that looks up cached responses
(config/edge/response_cache.py), so counting is atomic, shared by every replica, and costs no extra
round trip. DRF's own throttles read, then write, a list in the cache: two replicas can both
read "limit not reached" and both let a request through.
"""

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PERIODS = {"second": 1, "minute": 60, "hour": 3600}
AUTH_PATHS = ("/api/auth/",)


@dataclass(frozen=True)
class Rate:
    limit: int
    window: int  # seconds

    @classmethod
    def parse(cls, name: str, text: str) -> "Rate | None":
        """`"100/minute"` → Rate(100, 60); `"off"` → None."""
        if text.strip().lower() in {"off", "none", ""}:
            return None
        try:
            count, period = text.split("/")
            rate = cls(int(count), PERIODS[period.strip().lower()])
        except (ValueError, KeyError):
            raise ImproperlyConfigured(
                f"{name} must look like 100/minute (second, minute, hour) or off, not {text!r}"
            ) from None
        if rate.limit < 1:
            raise ImproperlyConfigured(f"{name} must allow at least one request")
        return rate


@dataclass(frozen=True)
class Counter:
    """One window counter a request increments: its Redis key and the rate it is held to."""

    scope: str
    key: str
    rate: Rate
    window_ends_at: int


def rates() -> dict[str, Rate | None]:
    return {
        "user": Rate.parse("RATE_LIMIT_USER", settings.RATE_LIMIT_USER),
        "ip": Rate.parse("RATE_LIMIT_IP", settings.RATE_LIMIT_IP),
        "auth": Rate.parse("RATE_LIMIT_AUTH", settings.RATE_LIMIT_AUTH),
    }


def client_ip(environ: dict) -> str:
    """The client's address: the proxy's view of it when proxy headers are trusted.

    nginx replaces `X-Forwarded-For` with the address it saw, so the last entry is the one our
    own proxy wrote; earlier entries are whatever the client claimed.
    """
    if settings.TRUST_PROXY_HEADERS:
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.rsplit(",", 1)[-1].strip()
    return environ.get("REMOTE_ADDR", "")


def counters_for(
    environ: dict, token_digest: str | None, configured: dict, now: float | None = None
) -> list[Counter]:
    """The counters this request increments, keyed by scope, identity and window."""
    now = time.time() if now is None else now
    path = environ.get("PATH_INFO", "")
    identities = [("ip", client_ip(environ))]
    if path.startswith(AUTH_PATHS):
        identities.append(("auth", client_ip(environ)))
    elif token_digest:
        identities.append(("user", token_digest))
    counters = []
    for scope, identity in identities:
        rate = configured.get(scope)
        if rate is None or not identity:
            continue
        window = int(now // rate.window)
        # IPs are hashed so an IPv6 address or a long header cannot make a huge key.
        ident = hashlib.blake2b(identity.encode(), digest_size=12).hexdigest()
        counters.append(
            Counter(
                scope=scope,
                key=f"rl:{scope}:{ident}:{window}",
                rate=rate,
                window_ends_at=(window + 1) * rate.window,
            )
        )
    return counters


@dataclass(frozen=True)
class Verdict:
    """What the counters say: allowed or not, and the headers that tell the client."""

    allowed: bool
    headers: list[tuple[str, str]]
    retry_after: int


def verdict(counters: list[Counter], counts: list[int], now: float | None = None) -> Verdict:
    """Judge a request by its counts; the tightest counter is the one reported."""
    now = time.time() if now is None else now
    if not counters:
        return Verdict(True, [], 0)
    allowed, retry_after = True, 0
    tightest = None
    for counter, count in zip(counters, counts, strict=True):
        remaining = counter.rate.limit - count
        reset = max(int(counter.window_ends_at - now + 0.999), 1)
        if remaining < 0:
            allowed = False
            retry_after = max(retry_after, reset)
        if tightest is None or remaining < tightest[0]:
            tightest = (remaining, counter.rate.limit, reset)
    remaining, limit, reset = tightest
    headers = [
        ("X-RateLimit-Limit", str(limit)),
        ("X-RateLimit-Remaining", str(max(remaining, 0))),
        ("X-RateLimit-Reset", str(reset)),
    ]
    if not allowed:
        headers.append(("Retry-After", str(retry_after)))
    return Verdict(allowed, headers, retry_after)
