"""`Idempotency-Key` on todo creation: a retry gets the first answer, never a second todo."""

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from todos.models import IdempotencyKey, Todo
from todos.representation import COLUMNS, todo_representation
from todos.services.todos import todo_create


class IdempotencyKeyReused(Exception):
    """Raised when an `Idempotency-Key` comes back with a different request body."""


# A client retries within minutes; a day covers a retry after an outage without keeping keys
# forever (housekeeping deletes older ones).
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)


@transaction.atomic
def todo_create_idempotent(
    *,
    owner: AbstractBaseUser,
    key: str,
    fingerprint: str,
    fields: dict,
    todo_url_prefix: str,
) -> tuple[IdempotencyKey, bool]:
    """Create a todo once per (owner, key); returns the key's record and whether it was replayed.

    The key row is inserted first, in the todo's transaction. A concurrent request with the same
    key blocks on the unique index until this transaction ends, then finds the row and replays
    its answer. Raises `IdempotencyKeyReused` when the stored request had another body.

    The stored answer is the todo as the API represents it (todos/representation.py), its `url`
    under `todo_url_prefix`, the absolute prefix of todo URLs the client sees.
    """
    IdempotencyKey.objects.filter(
        owner=owner, key=key, created_at__lt=timezone.now() - IDEMPOTENCY_KEY_TTL
    ).delete()
    try:
        with transaction.atomic():
            record = IdempotencyKey.objects.create(
                owner=owner, key=key, fingerprint=fingerprint, response_status=0, response_body={}
            )
    except IntegrityError:
        record = IdempotencyKey.objects.get(owner=owner, key=key)
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReused(key) from None
        return record, True
    todo = todo_create(owner=owner, **fields)
    record.todo = todo
    record.response_status = 201
    record.response_body = _todo_body(todo, todo_url_prefix)
    record.updated_at = timezone.now()
    # By owner and id, not `save()` (the id alone): one owner's rows (docs/scaling.md).
    IdempotencyKey.objects.filter(owner=owner, pk=record.pk).update(
        todo=todo,
        response_status=record.response_status,
        response_body=record.response_body,
        updated_at=record.updated_at,
    )
    return record, False


def _todo_body(todo: Todo, todo_url_prefix: str) -> dict:
    return todo_representation(
        {column: getattr(todo, column) for column in COLUMNS}, todo_url_prefix
    )
