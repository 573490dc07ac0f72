"""The OpenAPI description of the Todo endpoints that DRF cannot infer: query parameters and
the conditional and idempotency headers."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view

from todos.filters import SEARCH_MAX_LENGTH
from todos.pagination import ORDERING_KEYS

# Each query parameter declared exactly as the API takes it, so that a request the schema
# forbids is one the API refuses. drf-spectacular would infer `completed` from the model's
# boolean field and publish `type: boolean` with string choices, a schema no value matches;
# declared here, these replace what it infers from todos/filters.py.
LIST_PARAMETERS = [
    OpenApiParameter(
        "completed",
        {"type": "string", "enum": ["true", "false"]},
        description="true: only completed todos; false: only open ones",
    ),
    OpenApiParameter(
        "search",
        {"type": "string", "maxLength": SEARCH_MAX_LENGTH},
        description="part of the title, case-insensitive",
    ),
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": settings.TODO_MAX_PAGE_SIZE},
        description=f"page size, 1-{settings.TODO_MAX_PAGE_SIZE} "
        f"(default {settings.TODO_PAGE_SIZE})",
    ),
    OpenApiParameter("cursor", OpenApiTypes.STR, description="from the Link rel=next header"),
    OpenApiParameter(
        "ordering",
        {
            "type": "string",
            "enum": [f"{sign}{key}" for key in ORDERING_KEYS for sign in ("", "-")],
        },
        description="order, created_at, due_at or title; prefix '-' to reverse",
    ),
]


def allow_empty_list_parameters(result, generator, request, public):
    """Post-processing hook: mark the list's query parameters `allowEmptyValue`.

    The API takes `?completed=&ordering=&limit=` as if the parameters were left out (the
    filters, `parse_ordering` and `parse_limit` treat an empty value as absent), so the schema
    says so; drf-spectacular has no argument for this keyword of the parameter object.
    """
    names = {parameter.name for parameter in LIST_PARAMETERS}
    for operations in result.get("paths", {}).values():
        operation = operations.get("get", {})
        if operation.get("operationId") != "todos_list":
            continue
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and parameter["name"] in names:
                parameter["allowEmptyValue"] = True
    return result


IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    description="retrying with the same key returns the first answer instead of a second todo",
)
IF_MATCH_HEADER = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    description="the ETag you last saw; a stale one is answered 412 and nothing changes",
)
IF_NONE_MATCH_HEADER = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    description="the ETag you hold; unchanged → 304 without a body",
)

todo_schema = extend_schema_view(
    list=extend_schema(
        parameters=[*LIST_PARAMETERS, IF_NONE_MATCH_HEADER], summary="List the caller's todos"
    ),
    create=extend_schema(parameters=[IDEMPOTENCY_HEADER]),
    retrieve=extend_schema(parameters=[IF_NONE_MATCH_HEADER]),
    update=extend_schema(parameters=[IF_MATCH_HEADER]),
    partial_update=extend_schema(parameters=[IF_MATCH_HEADER]),
    destroy=extend_schema(parameters=[IF_MATCH_HEADER]),
)

# On the method itself: `extend_schema_view` knows only the standard actions and `@action`
# methods, and `destroy_all` (routed by hand in todos/urls.py) is neither.
destroy_all_schema = extend_schema(
    operation_id="todos_destroy_all",
    summary="Delete all the caller's todos",
    request=None,
    responses={204: None},
)
