"""The Todo API's create and update, performed from a plain Django request: validation, the
write, the body.

The viewset (todos/views.py, through DRF) and the gateway (config/edge/direct_writes.py, without
Django's middleware or DRF) both create a todo through `create` and change one through `update`,
so the two answers cannot differ. The gateway's `direct_create` and `direct_update` take only a
body that parses and validates (and, for a create, a well-formed `Idempotency-Key` or none; for
an update, a todo of the caller's whose version `If-Match` names, if given): for anything else
they return None with nothing written (an update's refusal rolls its transaction back), and
Django answers with its own error, naming the field (the serializer) or the problem (the parser,
the key, the missing todo, the stale version).
"""

import hashlib
import io
import json

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS
from django.http import HttpRequest
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.renderers import JSONRenderer

from config.edge.direct_writes import Written
from todos import conditional, reads, services
from todos.models import Todo
from todos.parsers import BoundedJSONParser
from todos.representation import todo_instance_representation
from todos.serializers import TodoSerializer


def idempotency_key(request: HttpRequest) -> str | None:
    """The request's `Idempotency-Key`; raises ValidationError (a 400) for a malformed one."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise ValidationError({"Idempotency-Key": ["Must be 1-255 printable ASCII characters."]})
    return key


def body_fingerprint(data) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def create(*, owner, data, fields: dict, key: str | None, todo_url_prefix: str):
    """Create `owner`'s todo from the validated `fields` of the body `data`, once per
    `key` when one is given. Returns the todo's representation and whether it was a replay;
    raises `services.IdempotencyKeyReused` for a key used with another body."""
    if key is None:
        todo = services.todo_create(owner=owner, **fields)
        return todo_instance_representation(todo, todo_url_prefix), False
    record, replayed = services.todo_create_idempotent(
        owner=owner,
        key=key,
        fingerprint=body_fingerprint(data),
        fields=fields,
        todo_url_prefix=todo_url_prefix,
    )
    return record.response_body, replayed


def created_headers(body: dict, replayed: bool) -> dict[str, str]:
    headers = {"Location": body["url"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return headers


def update(*, owner, todo_id: int, data, partial: bool, if_match: str | None, todo_url_prefix: str):
    """Apply the body `data` (all writable fields, or some when `partial`) to `owner`'s todo
    `todo_id`. Returns the todo's representation and its ETag; raises ValidationError,
    `Todo.DoesNotExist` or `services.PreconditionFailed`, with nothing written.

    With no `If-Match` and a valid body, the write is one UPDATE ... RETURNING
    (`services.todo_update_owned`): web CPU per PATCH went from 5.2-5.5 to 2.9-3.4 ms and
    its rate from 271-280 to 408-470 req/s (two interleaved rounds each, one replica as shipped,
    wrk -c64). Otherwise the body is validated against the row as locked,
    so that a missing todo is a 404 before its body is a 400, as in DRF's own update.
    """
    context = {"todo_url_prefix": todo_url_prefix}
    if if_match is None:
        serializer = TodoSerializer(data=data, partial=partial, context=context)
        if serializer.is_valid():
            todo = services.todo_update_owned(
                owner_id=owner.pk, todo_id=todo_id, changes=serializer.validated_data
            )
            return todo_instance_representation(todo, todo_url_prefix), conditional.todo_etag(todo)

    def validated_changes(todo: Todo) -> dict:
        serializer = TodoSerializer(todo, data=data, partial=partial, context=context)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    # Validated against the row the service locks: one read of the todo, not a read (from
    # a standby, after a look at the user's mark and the standby's position) and then a
    # locked read. Web CPU per PATCH went from 17.0 to 14.0 ms (medians of 3 rounds).
    todo = services.todo_update_checked(
        owner=owner, todo_id=todo_id, changes=validated_changes, if_match=if_match
    )
    return todo_instance_representation(todo, todo_url_prefix), conditional.todo_etag(todo)


def resolved_user(user_id: int):
    """The user as DRF's token authentication gives it for a token the gateway resolved: its id
    only (todos/authentication.py)."""
    return get_user_model().from_db(DEFAULT_DB_ALIAS, ["id"], [user_id])


def body_data(request: HttpRequest):
    """The request's JSON body as DRF's parser reads it; raises ParseError."""
    return BoundedJSONParser().parse(io.BytesIO(request.body), "application/json")


def direct_create(request: HttpRequest, user_id: int, kwargs: dict) -> Written | None:
    """The gateway's create: the 201, or None (nothing written) for Django to answer."""
    try:
        key = idempotency_key(request)
        data = body_data(request)
    except (ValidationError, ParseError):
        return None
    prefix = reads.todo_url_prefix(request)
    serializer = TodoSerializer(data=data, context={"todo_url_prefix": prefix})
    if not serializer.is_valid():
        return None
    try:
        body, replayed = create(
            owner=resolved_user(user_id),
            data=data,
            fields=serializer.validated_data,
            key=key,
            todo_url_prefix=prefix,
        )
    except services.IdempotencyKeyReused:
        # Found before writing (the key's row was there): Django answers the 422.
        return None
    return Written(
        201,
        JSONRenderer().render(body),
        [*created_headers(body, replayed).items(), *CREATE_HEADERS],
    )


def direct_update(request: HttpRequest, user_id: int, kwargs: dict) -> Written | None:
    """The gateway's PUT and PATCH: the 200, or None (nothing written) for Django to answer."""
    try:
        data = body_data(request)
    except ParseError:
        return None
    try:
        body, etag = update(
            owner=resolved_user(user_id),
            todo_id=int(kwargs["pk"]),
            data=data,
            partial=request.method == "PATCH",
            if_match=request.headers.get("If-Match"),
            todo_url_prefix=reads.todo_url_prefix(request),
        )
    except (ValidationError, Todo.DoesNotExist, services.PreconditionFailed):
        return None
    return Written(200, JSONRenderer().render(body), [("ETag", etag), *UPDATE_HEADERS])


# What DRF adds to the viewset's answers: each route's methods (config/edge/gateway.py adds the
# security headers and Vary).
CREATE_HEADERS = [("Allow", "GET, POST, DELETE, HEAD, OPTIONS")]
UPDATE_HEADERS = [("Allow", "GET, PUT, PATCH, DELETE, HEAD, OPTIONS")]
