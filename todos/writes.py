"""The Todo API's create, performed from a plain Django request: validation, the write, the body.

The viewset (todos/views.py, through DRF) and the gateway (config/edge/direct_writes.py, without
Django's middleware or DRF) both create a todo through `create`, so the two answers cannot
differ. The gateway's `direct_create` takes only a body that parses and validates, with a
well-formed `Idempotency-Key` or none: for anything else it returns None before writing, and
Django answers with its own error, naming the field (the serializer) or the problem (the parser,
the key).
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
from todos import reads, services
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


def direct_create(request: HttpRequest, user_id: int, kwargs: dict) -> Written | None:
    """The gateway's create: the 201, or None (nothing written) for Django to answer."""
    try:
        key = idempotency_key(request)
        data = BoundedJSONParser().parse(io.BytesIO(request.body), "application/json")
    except (ValidationError, ParseError):
        return None
    prefix = reads.todo_url_prefix(request)
    serializer = TodoSerializer(data=data, context={"todo_url_prefix": prefix})
    if not serializer.is_valid():
        return None
    # The user as DRF's token authentication gives it for a token the gateway resolved: its id
    # only (todos/authentication.py).
    owner = get_user_model().from_db(DEFAULT_DB_ALIAS, ["id"], [user_id])
    try:
        body, replayed = create(
            owner=owner,
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


# What DRF adds to the viewset's 201: the route's methods and content negotiation's Vary
# (config/edge/gateway.py adds the security headers and the Vary of CORS).
CREATE_HEADERS = [("Allow", "GET, POST, DELETE, HEAD, OPTIONS")]
