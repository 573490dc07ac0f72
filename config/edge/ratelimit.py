"""Rate limits per user and per client IP, judged atomically in Redis by GCRA.

GCRA (the generic cell rate algorithm) keeps one key per scope and identity (`ip`, `user`, or
`auth` for the sign-up and token endpoints): the theoretical arrival time (TAT) of the next
request if requests came evenly, one emission interval (period / limit) apart. A request passes
when, charged one interval, the TAT stays within one period of now, so at most `limit` requests
pass in any period-long span plus one per interval after it: no fixed window, so no double burst
at a window's edge. The judgement runs inside the same Lua script that looks up cached responses
(config/edge/response_cache.py) on Redis' own clock, so it is atomic, shared by every replica,
and costs no extra round trip. DRF's own throttles read, then write, a list in the cache: two
replicas can both read "limit not reached" and both let a request through.
"""

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PERIODS = {"second": 1, "minute": 60, "hour": 3600}
# Where a password is tried. Logout takes a token, so it is held to the user's limit.
AUTH_PATHS = ("/api/auth/register", "/api/auth/token")


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
class Limit:
    """One rate limit a request is held to: the Redis key of its arrival time and the rate."""

    scope: str
    key: str
    rate: Rate


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


def limits_for(environ: dict, token_digest: str | None, configured: dict) -> list[Limit]:
    """The limits this request is held to, keyed by scope and identity."""
    path = environ.get("PATH_INFO", "")
    identities = [("ip", client_ip(environ))]
    if path.startswith(AUTH_PATHS):
        identities.append(("auth", client_ip(environ)))
    elif token_digest:
        identities.append(("user", token_digest))
    limits = []
    for scope, identity in identities:
        rate = configured.get(scope)
        if rate is None or not identity:
            continue
        # IPs are hashed so an IPv6 address or a long header cannot make a huge key.
        ident = hashlib.blake2b(identity.encode(), digest_size=12).hexdigest()
        limits.append(Limit(scope=scope, key=f"rl:{scope}:{ident}", rate=rate))
    return limits


@dataclass(frozen=True)
class Verdict:
    """What the limits say: allowed or not, and the headers that tell the client."""

    allowed: bool
    headers: list[tuple[str, str]]
    retry_after: int


def _seconds(microseconds: int) -> int:
    """Whole seconds, rounded up, so a client that waits them is never early."""
    return -(-microseconds // 1_000_000)


def verdict(limits: list[Limit], judged: list[tuple[bool, int, int]]) -> Verdict:
    """The request's verdict from the gate's judgement; the tightest limit is the one reported."""
    if not limits:
        return Verdict(True, [], 0)
    allowed, retry_after = True, 0
    tightest = None
    for limit, (fits, remaining, frees) in zip(limits, judged, strict=True):
        # At least 1: "0 s" would read as "now" while the next slot may be microseconds away.
        reset = max(_seconds(frees), 1)
        if not fits:
            allowed = False
            retry_after = max(retry_after, reset)
        if tightest is None or remaining < tightest[0]:
            tightest = (remaining, limit.rate.limit, reset)
    remaining, limit, reset = tightest
    headers = [
        ("X-RateLimit-Limit", str(limit)),
        ("X-RateLimit-Remaining", str(remaining)),
        ("X-RateLimit-Reset", str(reset)),
    ]
    if not allowed:
        headers.append(("Retry-After", str(retry_after)))
    return Verdict(allowed, headers, retry_after)
