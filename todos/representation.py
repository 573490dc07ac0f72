"""The JSON shape of a todo, built straight from database rows for the read paths.

`TodoSerializer` is the definition (and validates writes); rendering a 100-row page through it
spends most of the request in per-field machinery (`to_representation` and time-zone handling of
two datetimes per row). Lists and items are built here from `.values()` rows instead, with the
same output: tests/todos/test_representation.py compares the two on every field.

On Postgres a list page goes one step further: the database writes each row's JSON text
(`todo_json_rows`), so the worker neither converts seven columns per row into Python objects nor
encodes them again; it joins the texts. The same test proves the bytes equal DRF's rendering.
"""

import functools
from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import connections, router
from django.db.models import QuerySet, TextField
from django.db.models.expressions import RawSQL

from todos.models import Todo

# The columns a representation needs: select only these.
COLUMNS = ("id", "title", "completed", "order", "due_at", "created_at", "updated_at")


def _datetime(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, as DRF's DateTimeField renders it with USE_TZ and UTC."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def todo_representation(row: dict, url_prefix: str) -> dict:
    return {
        "id": row["id"],
        "url": f"{url_prefix}{row['id']}",
        "title": row["title"],
        "completed": row["completed"],
        "order": row["order"],
        "due_at": _datetime(row["due_at"]),
        "created_at": _datetime(row["created_at"]),
        "updated_at": _datetime(row["updated_at"]),
    }


def todo_instance_representation(todo, url_prefix: str) -> dict:
    """`todo_representation` of a model instance: what a write answers, without a serializer's
    per-field machinery."""
    return todo_representation({column: getattr(todo, column) for column in COLUMNS}, url_prefix)


def todo_rows(queryset: QuerySet) -> QuerySet:
    """`queryset` as dictionaries of exactly the represented columns."""
    return queryset.values(*COLUMNS)


def _timestamp_json(column: str) -> str:
    """SQL for a timestamptz column as `_datetime` renders it: UTC, `Z`, and the microseconds
    only when there are any (Python's `isoformat` leaves out `.000000`)."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"CASE WHEN {column} IS NULL THEN 'null' ELSE '\"'"
        f" || to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        f" || CASE WHEN mod(date_part('microseconds', {column})::bigint, 1000000) = 0"
        f" THEN ''"
        f" ELSE to_char({utc}, '.US') END || 'Z\"' END"
    )


# `to_json(text)` escapes exactly what Python's json module does with ensure_ascii off (quote,
# backslash, control characters); DRF's JSONRenderer also escapes U+2028 and U+2029 (they end a
# line in JavaScript), so the title does too.
TODO_JSON_SQL = (
    "'{\"id\":' || id::text"
    " || ',\"url\":' || to_json(%s || id::text)::text"
    " || ',\"title\":' || replace(replace(to_json(title)::text, %s, %s), %s, %s)"
    " || ',\"completed\":' || CASE WHEN completed THEN 'true' ELSE 'false' END"
    " || ',\"order\":' || coalesce(\"order\"::text, 'null')"
    f" || ',\"due_at\":' || {_timestamp_json('due_at')}"
    f" || ',\"created_at\":' || {_timestamp_json('created_at')}"
    f" || ',\"updated_at\":' || {_timestamp_json('updated_at')}"
    " || '}'"
)


def json_rows_supported() -> bool:
    """Every database alias is Postgres (standbys must be), so the database can render rows."""
    return connections["default"].vendor == "postgresql"


def todo_json_rows(queryset: QuerySet, url_prefix: str) -> QuerySet:
    """`queryset` with each todo's JSON text in the column `json` (exactly what
    `todo_representation` renders through DRF's JSONRenderer); select it with `.values("json")`,
    as keyset pagination does, so no other column is turned into Python values."""
    params = [url_prefix, "\u2028", "\\u2028", "\u2029", "\\u2029"]
    rendered = RawSQL(TODO_JSON_SQL, params, output_field=TextField())  # noqa: S611 (no input in the SQL; values are parameters)
    return queryset.annotate(json=rendered)


def todo_json_item(owner, todo_id: int, url_prefix: str) -> tuple[str, datetime] | None:
    """The JSON text of `owner`'s todo `todo_id` (as `todo_json_rows` renders it) and its
    `updated_at`, or None. One statement written once: an item read is too small to pay for the
    ORM building and compiling the same query each time (about a fifth of its worker time).
    Read from the alias the router picks, through Django's cursor (its execute wrappers route
    and fail over as for any ORM read)."""
    owner_id = getattr(owner, "pk", owner)
    alias = router.db_for_read(Todo)
    params = [url_prefix, "\u2028", "\\u2028", "\u2029", "\\u2029", owner_id, todo_id]
    with connections[alias].cursor() as cursor:
        cursor.execute(_todo_item_sql(), params)
        return cursor.fetchone()


@functools.cache
def _todo_item_sql() -> str:
    quote = connections["default"].ops.quote_name
    table, owner = quote(Todo._meta.db_table), quote(Todo._meta.get_field("owner").column)
    # Only the model's own names and the constant above: every value is a parameter.
    return (
        f"SELECT {TODO_JSON_SQL}, {quote('updated_at')} FROM {table}"  # noqa: S608
        f" WHERE {owner} = %s AND {quote('id')} = %s"
    )


def json_array(rows: list[dict]) -> bytes:
    """The page's body from rows of `todo_json_rows`."""
    return json_text_array(row["json"] for row in rows)


def json_text_array(texts: Iterable[str]) -> bytes:
    """The JSON array of the JSON `texts`, each one todo as `todo_json_rows` renders it."""
    return ("[" + ",".join(texts) + "]").encode()
