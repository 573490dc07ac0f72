"""Keyset (cursor) pagination of todo lists, with `?ordering=` and `?limit=`.

A page is `WHERE owner = ? AND (key, id) after the cursor ORDER BY key, id LIMIT n + 1`: its cost
does not grow with the page number (OFFSET does), pages stay stable while rows are added, and no
page runs `COUNT(*)`. The extra row tells whether a next page exists.
"""

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import F, Q, QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.utils.urls import replace_query_param

# The sort keys a client may ask for, and whether the column can be NULL (NULLs sort last in
# both directions, so the cursor needs to know when it has reached them).
ORDERING_KEYS = {"created_at": False, "order": True, "due_at": True, "title": False}
DEFAULT_ORDERING = "created_at"
DATETIME_KEYS = {"created_at", "due_at"}


@dataclass(frozen=True)
class Ordering:
    key: str
    descending: bool

    @property
    def param(self) -> str:
        return f"-{self.key}" if self.descending else self.key

    def order_by(self) -> tuple:
        column = F(self.key)
        if self.descending:
            return (column.desc(nulls_last=True), "-id")
        return (column.asc(nulls_last=True), "id")

    def after(self, value, last_id: int) -> Q:
        """Rows strictly after (value, last_id) in this ordering."""
        beyond, id_beyond = ("lt", "lt") if self.descending else ("gt", "gt")
        if value is None:
            return Q(**{f"{self.key}__isnull": True, f"id__{id_beyond}": last_id})
        condition = Q(**{f"{self.key}__{beyond}": value}) | Q(
            **{self.key: value, f"id__{id_beyond}": last_id}
        )
        if ORDERING_KEYS[self.key]:
            condition |= Q(**{f"{self.key}__isnull": True})
        return condition


def parse_ordering(raw: str | None) -> Ordering:
    if not raw:
        return Ordering(DEFAULT_ORDERING, descending=False)
    key = raw[1:] if raw.startswith("-") else raw
    if key not in ORDERING_KEYS:
        allowed = ", ".join(sorted(ORDERING_KEYS))
        raise ValidationError(
            {"ordering": [f"Unknown ordering {raw!r}: use one of {allowed}, with '-' to reverse."]}
        )
    return Ordering(key, descending=raw.startswith("-"))


def parse_limit(raw: str | None) -> int:
    maximum = settings.TODO_MAX_PAGE_SIZE
    if raw is None or raw == "":
        return settings.TODO_PAGE_SIZE
    try:
        limit = int(raw)
    except ValueError:
        raise ValidationError({"limit": ["Must be an integer."]}) from None
    if not 1 <= limit <= maximum:
        raise ValidationError({"limit": [f"Must be between 1 and {maximum}."]})
    return limit


def encode_cursor(ordering: Ordering, row: dict) -> str:
    """The cursor after `row` (a `.values()` dictionary) in `ordering`."""
    value = row[ordering.key]
    if isinstance(value, datetime):
        value = value.isoformat()
    payload = json.dumps({"o": ordering.param, "v": value, "i": row["id"]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(raw: str, ordering: Ordering) -> tuple:
    """Return (value, id) from a cursor made by `encode_cursor` for the same ordering."""
    invalid = ValidationError({"cursor": ["Invalid cursor."]})
    try:
        padded = raw + "=" * (-len(raw) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        param, value, last_id = payload["o"], payload["v"], payload["i"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeError):
        raise invalid from None
    if param != ordering.param:
        raise ValidationError({"cursor": ["The cursor belongs to another ordering."]})
    if not isinstance(last_id, int) or isinstance(last_id, bool):
        raise invalid
    if value is None:
        if not ORDERING_KEYS[ordering.key]:
            raise invalid
        return None, last_id
    if ordering.key in DATETIME_KEYS:
        if not isinstance(value, str):
            raise invalid
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise invalid from None
    elif ordering.key == "order":
        if not isinstance(value, int) or isinstance(value, bool):
            raise invalid
    elif not isinstance(value, str):
        raise invalid
    return value, last_id


class KeysetPagination:
    """Pages a queryset by (ordering key, id) as `.values()` rows; the next page is a `Link`
    header."""

    def paginate(
        self, queryset: QuerySet, params: Mapping[str, str], url: str, columns: Sequence[str]
    ) -> list:
        """The page's rows: dictionaries of `columns`, plus the id and the ordering key (the
        cursor is made from the last row). `params` are the request's query parameters and
        `url` its absolute URL, which the next page's link is made from."""
        self.start(params, url)
        return self.finish(list(self.page_queryset(queryset, columns)))

    def start(self, params: Mapping[str, str], url: str) -> None:
        """Read the page's ordering, limit and cursor (ValidationError for a bad one)."""
        self.url = url
        self.ordering = parse_ordering(params.get("ordering"))
        self.limit = parse_limit(params.get("limit"))
        cursor = params.get("cursor")
        # (value, id) of the row the page starts after, or None for the first page.
        self.after = decode_cursor(cursor, self.ordering) if cursor else None

    def page_queryset(self, queryset: QuerySet, columns: Sequence[str]) -> QuerySet:
        """The page's query: one row more than the limit tells whether a next page exists."""
        if self.after is not None:
            queryset = queryset.filter(self.ordering.after(*self.after))
        fields = dict.fromkeys((*columns, "id", self.ordering.key))
        page = queryset.values(*fields).order_by(*self.ordering.order_by())
        return page[: self.limit + 1]

    def finish(self, rows: list, columns: Sequence[str] | None = None) -> list:
        """The page from the query's rows, noting whether there is a next one and the last.

        With `columns`, the rows are tuples of those columns, as a cursor fetches them: only
        the last becomes a dictionary, for the next page's cursor."""
        self.has_next = len(rows) > self.limit
        rows = rows[: self.limit]
        self.last = rows[-1] if rows else None
        if columns is not None and self.last is not None:
            self.last = dict(zip(columns, self.last, strict=True))
        return rows

    def next_link(self) -> str | None:
        if not self.has_next:
            return None
        return replace_query_param(self.url, "cursor", encode_cursor(self.ordering, self.last))

    def headers(self) -> dict:
        link = self.next_link()
        return {"Link": f'<{link}>; rel="next"'} if link else {}
