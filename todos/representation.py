"""The JSON shape of a todo, built straight from database rows for the read paths.

`TodoSerializer` is the definition (and validates writes); rendering a 100-row page through it
spends most of the request in per-field machinery (`to_representation` and time-zone handling of
two datetimes per row). Lists and items are built here from `.values()` rows instead, with the
same output: tests/todos/test_representation.py compares the two on every field.
"""

from datetime import UTC, datetime

from django.db.models import QuerySet

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


def todo_rows(queryset: QuerySet) -> QuerySet:
    """`queryset` as dictionaries of exactly the represented columns."""
    return queryset.values(*COLUMNS)
