"""Response caching for the Todo API: generation bumps on commit, and the view-side cache.

The keys, the Lua gate and the storage live in config/response_cache.py; this module holds what
the Todo resource decides: which writes move a user's generation, and how a list or item view
fills and reuses entries.
"""

import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import transaction

from config import response_cache, sticking
from config.response_cache import CachedResponse

# How long a request waits for another request that is computing the same entry before it
# computes the entry itself (seconds), and how often it looks.
FILL_WAIT = 1.0
FILL_POLL = 0.025


def todos_changed(*, owner_ids: Iterable[int]) -> None:
    """Bump the generations of `owner_ids` once the current transaction commits.

    Call it from every path that writes todos. After commit, not before: a reader that fills the
    cache between the bump and the commit would store the old rows under the new generation.
    With read replicas, each owner is first stuck to the primary's new WAL position
    (config/sticking.py): a read that misses the new generation must not fill it from a standby
    that has not replayed the write yet — also when the writer was someone else (an operator).
    """
    if not response_cache.enabled():
        return
    for owner_id in set(owner_ids):
        transaction.on_commit(lambda owner_id=owner_id: _owner_changed(owner_id))


def _owner_changed(owner_id: int) -> None:
    if settings.DATABASE_REPLICA_URLS:
        sticking.stick(owner_id)
    response_cache.generation_bump(owner_id)


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
    if not response_cache.fill_lock(user_id, generation, signature):
        deadline = time.monotonic() + FILL_WAIT
        while time.monotonic() < deadline:
            time.sleep(FILL_POLL)
            cached = response_cache.response_get(user_id, generation, signature)
            if cached:
                return cached, "hit"
    response = compute()
    response_cache.response_store(user_id, generation, signature, response)
    return response, "miss"
