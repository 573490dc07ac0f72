"""GCRA rate limits judged by the gate on the suite's real Redis: no double burst at what would
be a fixed window's edge, and a Retry-After a client can rely on."""

import math
import time
import uuid

from config.edge import ratelimit, response_cache


def _limits(rate: str) -> list[ratelimit.Limit]:
    """The per-IP limit of a client no other test uses, so no state is shared."""
    environ = {"PATH_INFO": "/api/todos", "REMOTE_ADDR": f"client-{uuid.uuid4()}"}
    return ratelimit.limits_for(environ, None, {"ip": ratelimit.Rate.parse("RATE_LIMIT_IP", rate)})


def _request(limits: list[ratelimit.Limit]) -> ratelimit.Verdict:
    return ratelimit.verdict(limits, response_cache.gate(None, None, limits).limits)


def test_bursts_either_side_of_a_window_edge_pass_at_most_the_limit_plus_the_rate():
    limits = _limits("5/second")
    # Just before a whole second: a fixed window would let 5 pass now and 5 more right after.
    time.sleep((0.9 - time.time() % 1) % 1)
    started = time.monotonic()
    before = [_request(limits).allowed for _ in range(10)]
    time.sleep((1.02 - time.time() % 1) % 1)  # just past the edge
    after = [_request(limits).allowed for _ in range(10)]
    elapsed = time.monotonic() - started

    assert before[:5] == [True] * 5
    assert sum(before) + sum(after) <= 5 + math.floor(elapsed * 5)
    assert sum(before) + sum(after) < 10


def test_steady_traffic_never_passes_more_than_the_limit_plus_the_rate():
    limits = _limits("5/second")
    passed = []  # (sent, answered): Redis judged each one in between
    started = time.monotonic()
    while time.monotonic() - started < 2.5:
        sent = time.monotonic()
        if _request(limits).allowed:
            passed.append((sent, time.monotonic()))
        time.sleep(0.01)

    for i, (first_sent, _) in enumerate(passed):
        within = [answered for _, answered in passed[i:] if answered - first_sent <= 1.0]
        assert len(within) <= 5 + math.floor((within[-1] - first_sent) * 5)
    # One every 200 ms once the burst is spent: about 5 + 2.5 s at 5 a second.
    assert 15 <= len(passed) <= 18


def test_retry_after_is_exact():
    limits = _limits("5/minute")
    allowed = [_request(limits) for _ in range(5)]
    refused = _request(limits)
    headers = dict(refused.headers)

    assert [dict(v.headers)["X-RateLimit-Remaining"] for v in allowed] == list("43210")
    assert not refused.allowed
    # One request per 12 s: the next slot frees 12 s after the first request, rounded up.
    assert headers["Retry-After"] == "12"
    assert headers["X-RateLimit-Reset"] == "12"
    assert headers["X-RateLimit-Remaining"] == "0"


def test_a_client_that_waits_the_retry_time_gets_through_and_not_earlier():
    limits = _limits("2/second")
    while _request(limits).allowed:
        pass
    waits = response_cache.gate(None, None, limits).limits[0][2] / 1_000_000
    assert 0.3 < waits <= 0.5  # one emission interval, less the time the burst took

    time.sleep(waits - 0.15)
    assert not _request(limits).allowed
    time.sleep(0.2)
    assert _request(limits).allowed


def test_a_refused_request_charges_no_other_limit():
    environ = {"PATH_INFO": "/api/todos", "REMOTE_ADDR": f"client-{uuid.uuid4()}"}
    configured = {
        "ip": ratelimit.Rate.parse("RATE_LIMIT_IP", "10/minute"),
        "user": ratelimit.Rate.parse("RATE_LIMIT_USER", "2/minute"),
    }
    limits = ratelimit.limits_for(environ, uuid.uuid4().hex, configured)
    verdicts = [_request(limits) for _ in range(6)]

    assert [v.allowed for v in verdicts] == [True, True, False, False, False, False]
    ip_only = ratelimit.limits_for(environ, None, configured)
    assert dict(_request(ip_only).headers)["X-RateLimit-Remaining"] == "7"


def test_logins_are_held_to_the_auth_limit_and_logouts_to_the_users():
    configured = {
        scope: ratelimit.Rate.parse(scope, "10/minute") for scope in ("ip", "user", "auth")
    }

    def scopes(path: str) -> list[str]:
        environ = {"PATH_INFO": path, "REMOTE_ADDR": "10.0.0.1"}
        return [limit.scope for limit in ratelimit.limits_for(environ, "digest", configured)]

    assert scopes("/api/auth/register") == scopes("/api/auth/token/") == ["ip", "auth"]
    assert scopes("/api/auth/logout") == scopes("/api/auth/logout-all/") == ["ip", "user"]
    assert scopes("/api/todos") == ["ip", "user"]
