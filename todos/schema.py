"""The OpenAPI description of the Todo endpoints that DRF cannot infer: query parameters and
the conditional and idempotency headers."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view

LIST_PARAMETERS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="page size, 1-1000 (default 100)"),
    OpenApiParameter("cursor", OpenApiTypes.STR, description="from the Link rel=next header"),
    OpenApiParameter(
        "ordering",
        OpenApiTypes.STR,
        description="order, created_at, due_at or title; prefix '-' to reverse",
    ),
]

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
