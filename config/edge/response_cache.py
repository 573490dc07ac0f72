"""Cached API responses in Redis, keyed by user and generation, and the one-round-trip gate.

Keys (all under the cache's key prefix, in the cache database):
- `tok:<token digest>` → user id. Filled after a request authenticated by that token, and
  expiring when the token does (at the latest); replaced by a tombstone (`-`) the moment the
  token is revoked (logout, a delete) or its user deactivated, and never overwritten, so a
  request that authenticated just before the revocation cannot bring the mapping back. Unknown
  and expired tokens are never stored. The digest is the one the database keeps
  (`todos.ApiToken.digest`), from the same function.
- `gen:<user id>` → the user's generation. Every write to the user's todos moves it on commit
  (todos/cache.py). No TTL: with `maxmemory-policy volatile-lru` it is never evicted, and when
  it is missing nothing is served for that user until a fresh, never-used value is set.
- `resp:<user id>:<generation>:<request signature>` → the rendered response (ETag, Link, body;
  config/edge/http_cache.py packs it), with a TTL. A bump makes every entry of the old
  generation unreachable at once.
Rate-limit arrival times live in another database (`REDIS_RATELIMIT_DB`).

`gate()` runs one Lua script: resolve the token, read the generation, fetch the entry, and
judge the request by the rate limits (GCRA, config/edge/ratelimit.py) — a cache hit costs
exactly one round trip to Redis. With read replicas it also reads the user's read-your-writes
mark (config/replicas/sticking.py), so a request that reaches Django does not ask Redis for it
again.
"""

import functools
import hashlib
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.edge.http_cache import CachedResponse
from config.edge.redis_breaker import redis_call
from config.tracing import tracing_enabled

# Lua: one round trip for the whole hit path. Keys are built inside because the user id is only
# known after the token lookup (fine on a single Redis; a Redis Cluster would need hash tags).
# SELECT inside a script is undone when the script returns on Redis >= 7; the script switches
# back itself for older servers.
GATE_SCRIPT = """
local prefix, cache_db, limit_db = ARGV[1], ARGV[2], ARGV[3]
local digest, signature, mark_prefix = ARGV[4], ARGV[5], ARGV[6]
local uid, gen, entry, mark = false, false, false, false
if digest ~= '' then
  uid = redis.call('GET', prefix .. 'tok:' .. digest)
  if uid == '-' then uid = false end
  if uid then
    gen = redis.call('GET', prefix .. 'gen:' .. uid)
    if gen and signature ~= '' then
      entry = redis.call('GET', prefix .. 'resp:' .. uid .. ':' .. gen .. ':' .. signature)
    end
    if mark_prefix ~= '' then
      mark = redis.call('GET', prefix .. mark_prefix .. uid) or ''
    end
  end
end
local limits = {}
if #ARGV > 6 then
  -- GCRA per limit: the key holds the theoretical arrival time (TAT, microseconds of Redis'
  -- own clock, so replica clocks do not matter). A request passes when, charged one emission
  -- interval (period / limit), the TAT stays within one period of now. Either every limit
  -- takes the request or none is charged.
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
  redis.call('SELECT', limit_db)
  local passes, tats = true, {}
  for i = 7, #ARGV, 3 do
    local period, limit = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    local tat = tonumber(redis.call('GET', ARGV[i]) or '0')
    if tat < now then tat = now end
    local charged = tat + period / limit
    -- One microsecond of slack: period / limit is rarely exact, and `limit` intervals summed
    -- must still fit in one period.
    local fits = charged - now <= period + 1
    if not fits then passes = false end
    tats[#tats + 1] = {ARGV[i], tat, charged, period, limit, fits}
  end
  for n, t in ipairs(tats) do
    local key, tat, charged, period, limit, fits = t[1], t[2], t[3], t[4], t[5], t[6]
    if passes then
      tat = charged
      -- %.17g keeps every digit of the double; the key lives until the TAT is reached.
      redis.call('SET', key, string.format('%.17g', tat),
        'PX', math.max(math.ceil((tat - now) / 1000), 1))
    end
    local interval = period / limit
    local remaining = math.max(math.floor((period + 1 - (tat - now)) / interval), 0)
    -- Until one more request fits: the TAT falls back far enough to hold one more interval.
    local frees = math.max(tat - period - 1 + (remaining + 1) * interval - now, 0)
    limits[n] = {fits and 1 or 0, remaining, math.ceil(frees)}
  end
  redis.call('SELECT', cache_db)
end
return {uid, gen, entry, limits, mark}
"""


@dataclass(frozen=True)
class GateResult:
    """What Redis knew about a request: its user, their generation, a cached entry, each rate
    limit's judgement `(fits, remaining, microseconds until one more request fits)`, and the
    user's read-your-writes mark ("" when they have none; None when it was not read)."""

    user_id: int | None
    generation: str | None
    entry: bytes | None
    limits: list[tuple[bool, int, int]]
    mark: str | None = None


def enabled() -> bool:
    return settings.TODO_RESPONSE_CACHE


def gate_enabled() -> bool:
    """The gate runs whenever the cache is Redis: rate limits and token resolution need no
    response cache, and a resolved token spares Django its token query
    (todos/authentication.py)."""
    return bool(settings.REDIS_URL)


@dataclass(frozen=True)
class _Target:
    """Where the request path's scripts run, looked up once per process instead of on every
    request (the lookups were some 8 % of a cache hit's Python time on granian, profiled under
    load): the cache's client, the gate and the bump as registered scripts (EVALSHA sends a
    hash, not the text, and reloads the script by itself after a Redis restart), the key prefix
    and the cache's database."""

    client: object
    gate: object
    bump: object
    prefix: str
    cache_db: int


@functools.cache
def _target() -> _Target:
    client = _client()
    return _Target(
        client=client,
        gate=client.register_script(GATE_SCRIPT),
        bump=client.register_script(BUMP_SCRIPT),
        prefix=_prefix(),
        cache_db=client.connection_pool.connection_kwargs.get("db", 0),
    )


_thread = threading.local()


def _thread_client(client):
    """A client of `client`'s pool that holds one connection of it for this thread (redis-py's
    `Redis.client()`): a script then skips taking a connection from the pool and giving it
    back, another 5-7 % of a hit's Python time. A server's threads are few and long-lived
    (gunicorn's and granian's), and a thread's client and connection go back to the pool when
    the thread ends."""
    held = getattr(_thread, "client", None)
    if held is None or held.connection_pool is not client.connection_pool:
        held = _thread.client = client.client()
    return held


def _run(script: str, keys: list, args: list):
    """Run the script named `script` ("gate" or "bump") on this thread's connection.

    The EVALSHA is written to the held connection and its reply read straight back: redis-py's
    client around that (the script object, command dispatch, the retry wrapper, the response
    callbacks, none of which an EVALSHA reply needs) cost 36-48 us of a cache hit's 291-335 in
    process (medians of 9 alternated rounds of 1,000, two series), and a write runs two
    scripts. What the client would do on a failure is done here:
    - Redis no longer holds the script (a restart, a `SCRIPT FLUSH`): the registered script
      loads it and runs it, and the hash stays valid from then on;
    - the connection failed (after a Redis restart each held connection fails once) or timed
      out mid-reply: it is closed, and the command goes once more through the client, which
      reconnects; if Redis is still away that fails too and the caller's breaker takes over.
    With tracing on, every run goes through the client, which the Redis instrumentation wraps,
    so the round trip has its span."""
    target = _target()
    client = _thread_client(target.client)
    registered = getattr(target, script)
    if tracing_enabled():
        return _through_client(registered, keys, args, client)
    connection = client.connection
    try:
        connection.send_command("EVALSHA", registered.sha, len(keys), *keys, *args)
        return connection.read_response()
    except NoScriptError:
        return registered(keys=keys, args=args, client=client)
    except (RedisConnectionError, RedisTimeoutError):
        connection.disconnect()
        return _through_client(registered, keys, args, client)


def _through_client(registered, keys: list, args: list, client):
    """The script run by redis-py's client on `client`'s connection; a held connection that
    fails (it is not checked before each use, as the pool checks one it hands out) is replaced
    and the command sent once more."""
    try:
        return registered(keys=keys, args=args, client=client)
    except RedisConnectionError:
        return registered(keys=keys, args=args, client=client)


@receiver(setting_changed)
def _cache_settings_changed(*, setting: str, **kwargs) -> None:
    """A test that points CACHES elsewhere gets scripts that follow it."""
    if setting == "CACHES":
        _target.cache_clear()


def _client():
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def _prefix() -> str:
    """The cache's key prefix and version, so raw keys match `cache.get` keys."""
    return cache.make_key("")


def token_digest(token: str) -> str:
    """The SHA-256 of an API token's key, in hex: all that Postgres (`todos.ApiToken.digest`)
    and Redis (`tok:<digest>`) ever hold of it, so a dump of either authenticates nobody.

    One plain hash, no salt and no slow key derivation: salts and work factors exist against
    guessing low-entropy passwords and against tables precomputed for them. A key of 32 random
    bytes (a migrated DRF key: 20) has no dictionary to precompute and is beyond guessing, hash
    or no hash; and a hash the database can look up directly keeps authentication one indexed
    query, and the gateway's lookup one Redis round trip keyed by the same value.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def request_signature(environ: dict) -> str:
    """Everything the rendered bytes depend on besides the user and the data.

    The path without its trailing slash, the query (order-insensitive) and what decides the
    absolute URLs in the body: the host and scheme as the client and the proxy sent them.
    """
    query = "&".join(sorted(environ.get("QUERY_STRING", "").split("&")))
    parts = (
        environ.get("PATH_INFO", "").rstrip("/"),
        query,
        environ.get("HTTP_HOST", ""),
        environ.get("HTTP_X_FORWARDED_HOST", ""),
        environ.get("HTTP_X_FORWARDED_PROTO", ""),
        environ.get("wsgi.url_scheme", ""),
    )
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


def gate(
    digest: str | None, signature: str | None, limits: list, mark_prefix: str = ""
) -> GateResult:
    """Resolve the token of `digest` (`token_digest`), fetch the cached entry, judge the rate
    limits: one round trip.

    With `mark_prefix` (the mark's key without the user id) the user's mark is read too.
    """
    target = _target()
    argv = [
        target.prefix,
        target.cache_db,
        settings.REDIS_RATELIMIT_DB,
        digest or "",
        signature or "",
        mark_prefix,
    ]
    for limit in limits:
        argv += [limit.key, limit.rate.window * 1_000_000, limit.rate.limit]
    uid, gen, entry, judged, mark = _run("gate", [], argv)
    return GateResult(
        user_id=int(uid) if uid else None,
        generation=gen.decode() if gen else None,
        entry=entry or None,
        limits=[(bool(fits), int(left), int(frees)) for fits, left, frees in judged],
        # Stored by `cache.set`, so in django-redis' encoding (a pickle); "" is no mark.
        mark=(cache.client.decode(mark) if mark else "") if mark is not None else None,
    )


# A day at most: a mapping never changes, revocation replaces it explicitly, and a token used
# after a day is taught again. A tombstone lives a day, so it outlasts any request that
# authenticated before the revocation (and the mapping it replaced). Both are plain values, not
# django-redis's pickles, so the Lua script can read them.
TOKEN_TTL = 86_400
REVOKED = "-"


def token_remember(digest: str, user_id: int, expires_at: datetime) -> None:
    """Let the gate resolve the token of `digest` to `user_id` (after Django authenticated it)
    until `expires_at`, the token's expiry: Redis drops the mapping at that instant (PXAT), so
    an expired token is not resolved, not even for a cached response.

    Never over an existing value: that is either the same mapping or a revocation's tombstone.
    """
    expires_ms = int(expires_at.timestamp() * 1000)
    now_ms = time.time_ns() // 1_000_000
    if expires_ms <= now_ms:
        return
    key = cache.make_key(f"tok:{digest}")
    at = min(expires_ms, now_ms + TOKEN_TTL * 1000)
    redis_call("token_remember", lambda: _client().set(key, user_id, pxat=at, nx=True), None)


def token_forget(digest: str) -> None:
    """Replace the mapping of the token of `digest` with a tombstone: every gate refuses it."""
    key = cache.make_key(f"tok:{digest}")
    redis_call("token_forget", lambda: _client().set(key, REVOKED, ex=TOKEN_TTL), None)


def generation_get(user_id: int) -> str | None:
    """The user's current generation, or None when Redis is unavailable."""
    key = cache.make_key(f"gen:{user_id}")
    raw = redis_call("generation_get", lambda: _client().get(key), b"")
    if raw is None:
        return generation_start(user_id)
    return raw.decode() if raw else None


def generation_start(user_id: int) -> str | None:
    """Give a user without a generation one that was never used: microseconds since the epoch.

    Entries of any earlier generation (before an eviction or a flush) then stay unreachable.
    """
    key = cache.make_key(f"gen:{user_id}")
    fresh = time.time_ns() // 1000

    def start() -> str:
        client = _client()
        client.set(key, fresh, nx=True)
        value = client.get(key)
        return value.decode() if value else str(fresh)

    return redis_call("generation_start", start, None)


def generation_bump(user_id: int) -> None:
    """Move the user to a new generation. Without one yet, start a fresh one."""
    key = cache.make_key(f"gen:{user_id}")

    def bump() -> None:
        client = _client()
        if not client.exists(key):
            generation_start(user_id)
        client.incr(key)

    redis_call("generation_bump", bump, None)


# Lua: what a commit changes in one round trip. KEYS are first the entries to set (their values
# in ARGV after the first two), each expiring after ARGV[1] ms, then the generations to move;
# a missing generation restarts from ARGV[2], a value never used (see `generation_start`).
BUMP_SCRIPT = """
local ttl, fresh, entries = ARGV[1], ARGV[2], #ARGV - 2
for i = 1, entries do
  redis.call('SET', KEYS[i], ARGV[i + 2], 'PX', ttl)
end
for i = entries + 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('SET', KEYS[i], fresh) end
  redis.call('INCR', KEYS[i])
end
return 1
"""


def generations_bump(
    user_ids: Iterable[int], *, first: Mapping[str, bytes] | None = None, ttl: float = 0
) -> bool:
    """`generation_bump` for each of `user_ids`, in one round trip; False if Redis did not answer.

    `first` (full key → value, expiring after `ttl` seconds) is set before any generation moves,
    in the same script: the read-your-writes marks a reader of a new generation relies on.
    """
    first = first or {}
    keys = [*first, *(cache.make_key(f"gen:{user_id}") for user_id in user_ids)]
    args = [int(ttl * 1000), time.time_ns() // 1000, *first.values()]

    def bump() -> bool:
        return bool(_run("bump", keys, args))

    return redis_call("generation_bump", bump, False)


def response_store(user_id: int, generation: str, signature: str, response: CachedResponse):
    key = cache.make_key(f"resp:{user_id}:{generation}:{signature}")
    ttl = settings.TODO_RESPONSE_CACHE_TTL
    redis_call("response_store", lambda: _client().set(key, response.pack(), ex=ttl), None)


def response_get(user_id: int, generation: str, signature: str) -> CachedResponse | None:
    key = cache.make_key(f"resp:{user_id}:{generation}:{signature}")
    raw = redis_call("response_get", lambda: _client().get(key), None)
    return CachedResponse.unpack(raw) if raw else None


def fill_lock(user_id: int, generation: str, signature: str) -> bool:
    """Claim the right to compute this entry; the stampede guard for concurrent misses.

    Two seconds: longer than any list computation takes, so the lock holder normally finishes
    first; short enough that a crashed holder delays the others only briefly.
    """
    key = cache.make_key(f"fill:{user_id}:{generation}:{signature}")
    claimed = redis_call("fill_lock", lambda: _client().set(key, 1, nx=True, px=2000), True)
    return bool(claimed)


def fill_release(user_id: int, generation: str, signature: str) -> None:
    """Give up a claim whose computation failed (a 404, a 400), so that the next request for
    the same entry computes at once instead of waiting out the lock."""
    key = cache.make_key(f"fill:{user_id}:{generation}:{signature}")
    redis_call("fill_release", lambda: _client().delete(key), None)
