"""Export file formats: a user's todos rendered as JSON or CSV, one piece of the file per batch.

Both render each todo exactly as the API does (todos/representation.py, with the
`todo_url_prefix` of the request that asked for the export), so a client can treat the file as
one long list response; in CSV only, a text cell a spreadsheet would run as a formula is
neutralised first (`csv_cell`). A piece is produced per batch of todos, so an export of any
size needs the memory of one batch.
"""

import csv
import io
from collections.abc import Iterable, Iterator

from rest_framework.renderers import JSONRenderer

from todos.models import Export
from todos.representation import todo_representation
from todos.serializers import TodoSerializer

# OWASP's CSV injection guidance: a cell starting with one of these is a formula (or, for tab and
# carriage return, hides one after the separator) in Excel, LibreOffice and Google Sheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

CONTENT_TYPES = {
    Export.Format.JSON: "application/json",
    Export.Format.CSV: "text/csv; charset=utf-8",
}


def render(
    *, export_format: str, batches: Iterable[list[dict]], todo_url_prefix: str
) -> Iterator[bytes]:
    """The pieces of the file, in order; joined, they are the whole file. `batches` holds rows
    of the represented columns (`todos.representation.todo_rows`)."""
    rows = ([todo_representation(row, todo_url_prefix) for row in batch] for batch in batches)
    if export_format == Export.Format.JSON:
        return _json_pieces(rows)
    if export_format == Export.Format.CSV:
        return _csv_pieces(rows)
    raise ValueError(f"unknown export format {export_format!r}")


def _json_pieces(rows: Iterable[list[dict]]) -> Iterator[bytes]:
    """A JSON array: `[`, the batches' items separated by commas, `]`."""
    renderer = JSONRenderer()
    separator = b"["
    for batch in rows:
        # The API's own renderer, so spacing, escaping and number formats are the API's;
        # slicing off the brackets of each batch's array splices the batches into one array.
        yield separator + renderer.render(batch)[1:-1]
        separator = b","
    yield b"]" if separator == b"," else b"[]"


def _csv_pieces(rows: Iterable[list[dict]]) -> Iterator[bytes]:
    """RFC 4180 CSV with a header row of the API's field names; booleans as true/false (as in
    JSON), null as an empty field, text cells as `csv_cell` neutralises them."""
    fields = list(TodoSerializer.Meta.fields)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(fields)
    for batch in rows:
        for item in batch:
            writer.writerow([csv_cell(item[name]) for name in fields])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        # No todos at all: the file is the header row.
        yield buffer.getvalue().encode()


def csv_cell(value) -> str:
    """One CSV cell. A string starting with a formula character gets a leading `'`, which makes
    spreadsheets take the cell as text; numbers are left alone, so an `order` of -5 stays the
    number -5."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return str(value)
