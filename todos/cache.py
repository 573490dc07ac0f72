"""Read caching of the Todo API: generation bumps on commit, the view-side cache with its
stampede guard, and tokens forgotten the moment they are revoked.

The HTTP side (ETags, conditional requests, the cached response and its headers) is
config/edge/http_cache.py; the Redis keys, the Lua gate and the storage are
config/edge/response_cache.py; the gateway in front of Django answers hits itself
(config/edge/gateway.py). This module holds what the Todo resource decides: which writes move a
user's generation, how the list and item views fill and reuse entries, and when a token's
mapping to its user must go (todos/authentication.py writes it).
"""

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import connections, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpResponse
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from config.edge import response_cache
from config.edge.http_cache import CachedResponse
from config.edge.redis_breaker import breaker
from config.replicas import read_routing, sticking
from config.replicas.health import replica_aliases
from todos.models import ApiToken

logger = logging.getLogger(__name__)

# How long a request waits for another request that is computing the same entry before it
# computes the entry itself (seconds), and how often it looks.
FILL_WAIT = 1.0
FILL_POLL = 0.025


def todos_changed(*, owner_ids: Iterable[int], position: int | None = None) -> None:
    """Bump the generations of `owner_ids` once the current transaction commits.

    Call it from every path that writes todos. After commit, not before: a reader that fills the
    cache between the bump and the commit would store the old rows under the new generation.
    With read replicas, each owner is first stuck to the primary's new WAL position
    (config/replicas/sticking.py): a read that misses the new generation must not fill it from a
    standby that has not replayed the write yet — also when the writer was someone else (an
    operator). `position`: the primary's position right after the write committed, when the
    write read it in its own round trip (`sticking.execute_committing`); otherwise it is read
    here.

    With the response cache off there are no generations, only the marks: they are set here
    when the write brought its position (it committed on its own, so this runs after the
    commit), and otherwise by the read routing once the request's transaction committed.
    """
    owner_ids = sorted(set(owner_ids))
    if not response_cache.enabled():
        if position is not None:
            for owner_id in owner_ids:
                sticking.stick(owner_id, position)
            read_routing.users_stuck(owner_ids)
        return
    transaction.on_commit(lambda: _owners_changed(owner_ids, position))


def _owners_changed(owner_ids: list[int], position: int | None = None) -> None:
    if _bump(owner_ids, position):
        read_routing.users_stuck(owner_ids)
    else:
        pending_bumps.add(owner_ids)


def _bump(owner_ids: list[int], position: int | None = None) -> bool:
    """Stick `owner_ids` to the primary's position (`position`, when the write read it after
    its commit, else read now) and move their generations; False if Redis did not answer."""
    # One position and one round trip to Redis for the whole commit, marks before bumps, and
    # the request's user is not stuck a second time. Before: per owner an LSN query, SET,
    # EXISTS and INCRBY, then the same LSN queried and SET again. Web CPU per create went from
    # 14.3 to 11.1 ms (medians of 3 interleaved rounds, wrk -t2 -c64, 1 standby).
    standbys = bool(replica_aliases())
    if standbys and position is None:
        position = sticking.write_position()
    marks = sticking.marks(owner_ids, position) if position is not None else {}
    bumped = response_cache.generations_bump(
        owner_ids, first=marks, ttl=settings.DATABASE_STICKING_TTL
    )
    return bumped and bool(marks or not standbys)


class PendingBumps:
    """Owners whose generation bump after a commit did not reach Redis (a timeout, a blip on
    this replica's path to it), bumped again from a thread of this process as soon as Redis
    answers.

    Without it, the other replicas, which still reach Redis, would serve the owner's cached
    responses from before the write until they expire (`TODO_RESPONSE_CACHE_TTL`), and route
    the owner's reads by the old mark. The retry takes a fresh position for the marks: one
    taken now is at least as far as any other replica stored since, so a mark never moves back.
    """

    RETRY_EVERY = 0.25  # seconds

    def __init__(self) -> None:
        self._owners: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, owner_ids: Iterable[int]) -> None:
        with self._lock:
            self._owners.update(owner_ids)
            if self._thread is None:
                logger.warning("generation bump failed; retrying for owners %s", sorted(owner_ids))
                self._thread = threading.Thread(
                    target=self._retry, name="generation-bump-retry", daemon=True
                )
                self._thread.start()

    def _retry(self) -> None:
        while True:
            time.sleep(self.RETRY_EVERY)
            with self._lock:
                if not self._owners:
                    self._thread = None
                    return
                owners = sorted(self._owners)
                self._owners.clear()
            done = False
            if breaker.allows():
                try:
                    done = _bump(owners)
                finally:
                    # This thread's own connection to the primary, if it opened one.
                    connections.close_all()
            if done:
                logger.info("generation bump retried for owners %s", owners)
            else:
                with self._lock:
                    self._owners.update(owners)


pending_bumps = PendingBumps()


def cached_or_computed(
    request, *, user_id: int, compute: Callable[[], CachedResponse]
) -> tuple[CachedResponse, str]:
    """The response for `request`, from the cache when possible; returns it and how it was made.

    The generation is read before the data: if a write commits while this request computes, the
    entry lands under the old generation, where nobody looks any more.
    """
    if not response_cache.enabled():
        return compute(), "uncached"
    gate = request.META.get("todo_scale.gate")
    signature = response_cache.request_signature(request.META)
    generation = gate.generation if gate and gate.user_id == user_id else None
    if generation is None:
        generation = response_cache.generation_get(user_id)
        if generation is None:
            return compute(), "bypass"
        cached = response_cache.response_get(user_id, generation, signature)
        if cached:
            return cached, "hit"
    claimed = response_cache.fill_lock(user_id, generation, signature)
    if not claimed:
        deadline = time.monotonic() + FILL_WAIT
        while time.monotonic() < deadline:
            time.sleep(FILL_POLL)
            cached = response_cache.response_get(user_id, generation, signature)
            if cached:
                return cached, "hit"
    try:
        response = compute()
    except BaseException:
        # A request that fails (a missing todo, a bad cursor) fills nothing: the next one for
        # the same entry must not wait for it.
        if claimed:
            response_cache.fill_release(user_id, generation, signature)
        raise
    response_cache.response_store(user_id, generation, signature, response)
    return response, "miss"


# Cached JSON reads for a viewset. Described here, not in a docstring: drf-spectacular takes the
# first docstring of a view's classes as the description of each of its operations.
class CachedReadMixin:
    def cached_read(self, request: Request, compute: Callable[[], CachedResponse]):
        """Answer from the response cache, or compute and fill it; honour `If-None-Match`.

        `compute` renders the response when the cache has none. The browsable API (HTML) is
        always rendered afresh.
        """
        if request.accepted_renderer.format != "json":
            cached = compute()
            return Response(json.loads(cached.body), headers=dict(cached.entity_headers()))
        cached, outcome = cached_or_computed(request, user_id=request.user.pk, compute=compute)
        if cached.not_modified(request.headers.get("If-None-Match")):
            response = HttpResponse(status=status.HTTP_304_NOT_MODIFIED)
        else:
            response = HttpResponse(cached.body, content_type="application/json")
        for name, value in cached.headers(outcome):
            response[name] = value
        return response


# The gateway resolves tokens from Redis without asking Postgres (for the response cache and
# for authentication: todos/authentication.py), so a token's mapping must disappear the moment
# the token does. Connected when the app is ready (todos/apps.py).


@receiver(post_delete, sender=ApiToken)
def token_deleted(sender, instance: ApiToken, **kwargs) -> None:
    # An expired token's mapping expired with it (config/edge/response_cache.token_remember):
    # housekeeping's purge of expired tokens writes no tombstones.
    if response_cache.gate_enabled() and not instance.expired():
        digest = instance.digest
        # Now and after commit: a gateway must not resolve it in between, nor refill it from a
        # request that authenticated just before the delete committed.
        response_cache.token_forget(digest)
        transaction.on_commit(lambda: response_cache.token_forget(digest))


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def user_saved(sender, instance, **kwargs) -> None:
    if response_cache.gate_enabled() and not instance.is_active:
        live = ApiToken.objects.filter(user=instance, expires_at__gt=timezone.now())
        for digest in live.values_list("digest", flat=True):
            response_cache.token_forget(digest)
            transaction.on_commit(lambda digest=digest: response_cache.token_forget(digest))
