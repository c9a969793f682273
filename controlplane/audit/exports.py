"""CSV and JSON exports of audit events, streamed: rows are read in chunks with a database
cursor and written out as they come, so an export of any size holds one chunk in memory."""
import csv
import json
from collections.abc import Iterable, Iterator

from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.http import StreamingHttpResponse
from django.utils import timezone

# (column, source) in output order. before and after come as JSON text, which is written out
# as it is instead of being decoded and encoded again.
COLUMNS = [
    ("id", "id"), ("created_at", "created_at"), ("actor", "actor_name"), ("actor_user_id", "actor_user_id"),
    ("token_id", "token_id"), ("source", "source"), ("request_id", "request_id"), ("ip", "ip"), ("team", "team__slug"),
    ("object_type", "object_type"), ("object_id", "object_id"), ("object_repr", "object_repr"), ("action", "action"),
    ("before", "before_json"), ("after", "after_json"), ("reason", "reason"), ("prev_hash", "prev_hash"), ("hash", "hash"),
]
NAMES = [name for name, _ in COLUMNS]
JSON_COLUMNS = {NAMES.index("before"), NAMES.index("after")}
CREATED_AT = NAMES.index("created_at")
CHUNK_ROWS = 2000  # rows fetched from the database at a time
ROWS_PER_WRITE = 200  # rows joined into one piece of the response
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _rows(events: QuerySet) -> Iterator[list]:
    events = events.annotate(before_json=Cast("before", TextField()), after_json=Cast("after", TextField()))
    for values in events.values_list(*(source for _, source in COLUMNS)).iterator(chunk_size=CHUNK_ROWS):
        row = list(values)
        row[CREATED_AT] = row[CREATED_AT].isoformat()
        yield row


def _batched(pieces: Iterable[str]) -> Iterator[str]:
    batch = []
    for piece in pieces:
        batch.append(piece)
        if len(batch) >= ROWS_PER_WRITE:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


class _Line:
    """A file for csv.writer that hands back each line it is given."""

    def write(self, line: str) -> str:
        return line


def _cell(value) -> object:
    # A spreadsheet would run a cell that starts like a formula; the quote keeps it text.
    if value.__class__ is str and value.startswith(FORMULA_START):
        return f"'{value}"
    return value


def csv_lines(events: QuerySet) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(NAMES)
    yield from _batched(writer.writerow([_cell(v) for v in row]) for row in _rows(events))


def json_pieces(events: QuerySet) -> Iterator[str]:
    """One JSON array, written an element at a time."""
    yield "["
    yield from _batched(_json_elements(events))
    yield "\n]\n"


def _json_elements(events: QuerySet) -> Iterator[str]:
    separator = "\n"
    scalar_names = [name for index, name in enumerate(NAMES) if index not in JSON_COLUMNS]
    before, after = sorted(JSON_COLUMNS)
    for row in _rows(events):
        scalars = json.dumps(dict(zip(scalar_names, (v for i, v in enumerate(row) if i not in JSON_COLUMNS))),
                             ensure_ascii=False, separators=(",", ":"))
        yield f'{separator}{scalars[:-1]},"before":{row[before] or "null"},"after":{row[after] or "null"}}}'
        separator = ",\n"


def export_response(events: QuerySet, fmt: str) -> StreamingHttpResponse:
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    if fmt == "csv":
        response = StreamingHttpResponse(csv_lines(events), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(json_pieces(events), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="audit-events-{stamp}.{fmt}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
