"""Per-user cache generations: every write bumps its owner's generation when it commits.

Cached list and item responses are stored under keys that carry the owner's generation, so a
bump makes every older entry of that owner unreachable at once, on every web replica, without
finding or deleting them; they age out by their TTL.
"""

from collections.abc import Iterable

from django.core.cache import cache
from django.db import transaction

GENERATION_KEY = "todo-gen:{owner_id}"


def generation_key(owner_id: int) -> str:
    return GENERATION_KEY.format(owner_id=owner_id)


def generation_bump(owner_id: int) -> None:
    """Move `owner_id` to a new generation now (use `todos_changed` inside a transaction)."""
    key = generation_key(owner_id)
    try:
        cache.incr(key)
    except ValueError:
        # No generation yet (first write, or evicted): any fresh value differs from what
        # cached entries carry, as long as it is never reused; add() loses no race.
        if not cache.add(key, 1, timeout=None):
            cache.incr(key)


def todos_changed(*, owner_ids: Iterable[int]) -> None:
    """Bump the generations of `owner_ids` once the current transaction commits.

    Call it from every path that writes todos. After commit, not before: a reader that fills the
    cache between the bump and the commit would store the old rows under the new generation.
    """
    for owner_id in set(owner_ids):
        transaction.on_commit(lambda owner_id=owner_id: generation_bump(owner_id))
