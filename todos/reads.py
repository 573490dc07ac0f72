"""The Todo API's two JSON reads, rendered from a plain Django request: a list page and a todo.

The viewset (todos/views.py, through DRF) and the gateway (config/edge/direct_reads.py, without
DRF, on a cache miss) both render the list and the item here, so the two answers cannot differ
in a byte or a header. The gateway takes only requests whose meaning is settled before any of
DRF's machinery runs: a JSON read with nothing but `limit`, `cursor` and `ordering` (all valid)
for the list, no parameter at all for the item. Anything else (a filter, `?format=`, a bad
cursor, a missing todo) is handed to Django, which answers it in full, errors included.
"""

from django.http import HttpRequest
from django.urls import reverse
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer

from config.edge.http_cache import CachedResponse, body_etag
from todos import conditional, selectors
from todos.cache import cached_or_computed
from todos.models import Todo
from todos.pagination import KeysetPagination, decode_cursor, parse_limit, parse_ordering
from todos.representation import (
    COLUMNS,
    json_array,
    json_rows_supported,
    todo_instance_representation,
    todo_json_item,
    todo_json_rows,
    todo_representation,
)

# The list's parameters a page needs; the filters (django-filter) are left to the viewset.
PAGE_PARAMS = frozenset({"limit", "cursor", "ordering"})


def todo_url_prefix(request: HttpRequest) -> str:
    """The absolute URL every todo's `url` starts with: one reverse() per request, not per row."""
    return request.build_absolute_uri(reverse("todo-list")) + "/"


def page_response(todos, request: HttpRequest) -> CachedResponse:
    """One keyset page of the queryset `todos` (already scoped to its owner and filtered), as
    `?limit=`, `?cursor=` and `?ordering=` of `request` ask; raises ValidationError for bad ones."""
    pagination = KeysetPagination()
    prefix = todo_url_prefix(request)
    params, url = request.GET, request.build_absolute_uri()
    if json_rows_supported():
        page = pagination.paginate(todo_json_rows(todos, prefix), params, url, ["json"])
        body = json_array(page)
    else:
        page = pagination.paginate(todos, params, url, COLUMNS)
        body = JSONRenderer().render([todo_representation(row, prefix) for row in page])
    return CachedResponse(body_etag(body), pagination.next_link() or "", body)


def item_response(owner, todo_id: int, request: HttpRequest) -> CachedResponse:
    """`owner`'s (a user or a user's id) todo `todo_id`; raises Todo.DoesNotExist for a missing
    or foreign id. On Postgres the database writes the JSON (`todo_json_item`)."""
    prefix = todo_url_prefix(request)
    if json_rows_supported():
        row = todo_json_item(owner, todo_id, prefix)
        if row is None:
            raise Todo.DoesNotExist
        text, updated_at = row
        return CachedResponse(conditional.todo_version_etag(todo_id, updated_at), "", text.encode())
    todo = selectors.todo_get(owner=owner, todo_id=todo_id)
    body = JSONRenderer().render(todo_instance_representation(todo, prefix))
    return CachedResponse(conditional.todo_etag(todo), "", body)


def page_params_valid(request: HttpRequest) -> bool:
    """True when the request names only page parameters, each valid."""
    params = request.GET
    if not params.keys() <= PAGE_PARAMS or any(len(params.getlist(k)) > 1 for k in params):
        return False
    try:
        ordering = parse_ordering(params.get("ordering"))
        parse_limit(params.get("limit"))
        if params.get("cursor"):
            decode_cursor(params["cursor"], ordering)
    except ValidationError:
        return False
    return True


def direct_list(request: HttpRequest, user_id: int, kwargs: dict):
    """The gateway's list read: (response, cache outcome), or None for Django to answer."""
    if not page_params_valid(request):
        return None
    compute = lambda: page_response(selectors.todo_list(owner=user_id), request)  # noqa: E731
    return cached_or_computed(request, user_id=user_id, compute=compute)


def direct_item(request: HttpRequest, user_id: int, kwargs: dict):
    """The gateway's item read: (response, cache outcome), or None (a parameter given, or no
    such todo of this user: Django answers the 404)."""
    if request.GET:
        return None

    def compute() -> CachedResponse:
        return item_response(user_id, int(kwargs["pk"]), request)

    try:
        return cached_or_computed(request, user_id=user_id, compute=compute)
    except Todo.DoesNotExist:
        return None
