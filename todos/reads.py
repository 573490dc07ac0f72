"""The Todo API's two JSON reads, rendered from a plain Django request: a list page and a todo.

The viewset (todos/views.py, through DRF) and the gateway (config/edge/direct_reads.py, without
DRF, on a cache miss) both render the list and the item here, so the two answers cannot differ
in a byte or a header. The gateway takes only requests whose meaning is settled before any of
DRF's machinery runs: a JSON read with nothing but `limit`, `cursor` and `ordering` (all valid)
for the list, no parameter at all for the item. Anything else (a filter, `?format=`, a bad
cursor, a missing todo) is handed to Django, which answers it in full, errors included.
"""

import functools
from datetime import UTC, datetime

from django.db import connections, router
from django.http import HttpRequest
from django.urls import get_script_prefix, reverse
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer

from config.edge.http_cache import CachedResponse, body_etag
from todos import conditional, selectors
from todos.cache import cached_or_computed
from todos.models import Todo
from todos.pagination import (
    KeysetPagination,
    Ordering,
    decode_cursor,
    parse_limit,
    parse_ordering,
)
from todos.representation import (
    COLUMNS,
    json_array,
    json_rows_supported,
    json_text_array,
    todo_instance_representation,
    todo_json_item,
    todo_json_rows,
    todo_representation,
)

# The list's parameters a page needs; the filters (django-filter) are left to the viewset.
PAGE_PARAMS = frozenset({"limit", "cursor", "ordering"})


def todo_url_prefix(request: HttpRequest) -> str:
    """The absolute URL every todo's `url` starts with: once per request, not per row."""
    return request.build_absolute_uri(todo_list_path(get_script_prefix())) + "/"


@functools.lru_cache(maxsize=16)
def todo_list_path(script_prefix: str) -> str:
    """`reverse("todo-list")` under `script_prefix`, the one it reads (the cache's key): the
    URLconf does not change while the process runs, so each prefix is reversed once: the
    prefix of a request went from 46 to 20 us in process (reverse() was 3 % of an uncached
    list's CPU, py-spy with the GIL held)."""
    return reverse("todo-list")


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


# A page of one owner's todos is compiled by the ORM once per shape (ordering, cursor kind,
# limit) with these stand-ins, then run with the request's values in their places: building and
# compiling the same query was a fifth of an uncached list's worker time. Each is unlike any
# value the ORM adds itself and inside its column's range (Django turns an integer lookup out of
# range into an empty or a full condition, which would change the statement).
_OWNER = 1_987_654_321
_AFTER_ID = 1_876_543_219
_PREFIX = "\x00todo-url-prefix\x00"
_AFTER_VALUES = {
    "created_at": datetime(1970, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    "due_at": datetime(1970, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    "order": 1_765_432_198,
    "title": "\x00after-title\x00",
}


@functools.lru_cache(maxsize=256)
def page_statement(key: str, descending: bool, after: str, limit: int) -> tuple[str, tuple]:
    """The SQL and parameters (stand-ins included) of a page in one shape; `after` is "first"
    (no cursor), "null" (after a NULL sort key) or "value"."""
    pagination = KeysetPagination()
    pagination.ordering, pagination.limit = Ordering(key, descending), limit
    pagination.after = {
        "first": None,
        "null": (None, _AFTER_ID),
        "value": (_AFTER_VALUES[key], _AFTER_ID),
    }[after]
    todos = todo_json_rows(selectors.todo_list(owner=_OWNER), _PREFIX)
    sql, params = pagination.page_queryset(todos, ["json"]).query.sql_with_params()
    expected = {_OWNER, _PREFIX} | ({_AFTER_ID} if pagination.after else set())
    if after == "value":
        expected.add(_AFTER_VALUES[key])
    if not expected <= set(params):
        raise RuntimeError(f"a stand-in is missing from the compiled page statement: {sql}")
    return sql, tuple(params)


def owner_page(pagination: KeysetPagination, owner_id: int, prefix: str) -> list[str]:
    """The page `pagination` was started on, of `owner_id`'s todos, as the JSON text of each
    todo: exactly the `json` of `pagination.paginate(todo_json_rows(...), ...)`'s rows, without
    the ORM's work. The rows stay the cursor's tuples (only the last becomes a dictionary, for
    the next page's cursor): a dictionary for each of 100 rows was some 70 of an uncached
    list's 860 µs in process."""
    if pagination.after is None:
        shape, replace = "first", {}
    else:
        value, last_id = pagination.after
        shape = "null" if value is None else "value"
        replace = {_AFTER_ID: last_id}
        if value is not None:
            replace[_AFTER_VALUES[pagination.ordering.key]] = value
    replace.update({_OWNER: owner_id, _PREFIX: prefix})
    ordering = pagination.ordering
    sql, template = page_statement(ordering.key, ordering.descending, shape, pagination.limit)
    params = [_bound(param, replace) for param in template]
    with connections[router.db_for_read(Todo)].cursor() as cursor:
        cursor.execute(sql, params)
        names = [column.name for column in cursor.description]
        rows = pagination.finish(cursor.fetchall(), names)
    at = names.index("json")
    return [row[at] for row in rows]


def _bound(param, replace: dict):
    """`param` of a compiled statement, or the request's value for the stand-in it is. Integers
    come wrapped for their column (psycopg's `Int4`, an int): the value is wrapped the same."""
    for stand_in, value in replace.items():
        if param == stand_in and not isinstance(param, bool):
            return type(param)(value) if isinstance(param, int) else value
    return param


def owner_page_response(owner_id: int, request: HttpRequest) -> CachedResponse:
    """`page_response` of all of `owner_id`'s todos (no filter), from `owner_page` on
    Postgres."""
    if not json_rows_supported():
        return page_response(selectors.todo_list(owner=owner_id), request)
    pagination = KeysetPagination()
    pagination.start(request.GET, request.build_absolute_uri())
    body = json_text_array(owner_page(pagination, owner_id, todo_url_prefix(request)))
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
    compute = lambda: owner_page_response(user_id, request)  # noqa: E731
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
