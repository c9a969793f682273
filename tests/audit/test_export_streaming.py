"""Exports stream: 100,000 events go out through a database cursor, a chunk at a time, and
memory stays far below what holding the rows would take."""
import csv
import gc
import json
import os
import sys

import pytest
from django.db import connection
from django.http import StreamingHttpResponse

from controlplane.audit.models import AuditEvent

ROWS = 100_000
MB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def many_events(team):
    """A fixture, not a way to write events: set-based inserts, unchained (prev_hash NULL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {AuditEvent._meta.db_table}
                (created_at, actor_name, source, request_id, team_id, object_type, object_id, object_repr, action, after, reason)
                SELECT now() - make_interval(secs => n), 'bulk-' || (n %% 7), 'worker', md5(n::text), %s, 'registry.model',
                       n::text, 'vision/model-' || n, 'model.update', jsonb_build_object('n', n, 'note', repeat('x', 40)), ''
                FROM generate_series(1, %s) AS n""",
            [team.pk, ROWS],
        )
    return ROWS


def rss() -> int:
    """Resident memory of this process now: the Python heap plus libpq's buffers and the rest."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def open_server_side_cursors() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_cursors")
        return [name for (name,) in cursor.fetchall()]


def test_exports_of_100k_events_stream_in_bounded_memory(api, platform_admin, many_events, tmp_path):
    """Memory is sampled after every piece, from before the request: resident memory (which
    counts the database driver's buffers too) and the number of Python objects. Holding the
    rows would take some 2,000,000 objects and well over 100 MB; tracemalloc would be more
    exact but slows this test five times."""
    client = api(platform_admin)
    for fmt in ("csv", "json"):
        out = tmp_path / f"export.{fmt}"
        gc.collect()
        rss_before, blocks_before = rss(), sys.getallocatedblocks()
        rss_peak, blocks_peak, pieces, cursors_mid_stream = rss_before, blocks_before, 0, None

        response = client.get(f"/api/v1/audit/events/export.{fmt}")
        assert response.status_code == 200 and isinstance(response, StreamingHttpResponse)
        with out.open("wb") as file:
            for piece in response.streaming_content:
                file.write(piece)
                pieces += 1
                rss_peak, blocks_peak = max(rss_peak, rss()), max(blocks_peak, sys.getallocatedblocks())
                if pieces == 10:  # the database hands rows over through a cursor, not all at once
                    cursors_mid_stream = open_server_side_cursors()

        size = out.stat().st_size
        assert size > 20 * MB and pieces > ROWS / 250, (fmt, size, pieces)
        assert any(name.startswith("_django_curs_") for name in cursors_mid_stream), cursors_mid_stream
        assert rss_peak - rss_before < min(24 * MB, size / 2), (fmt, (rss_peak - rss_before) / MB)
        assert blocks_peak - blocks_before < 200_000, (fmt, blocks_peak - blocks_before)

        print(f"{fmt}: {size / MB:.1f} MB in {pieces} pieces; resident memory grew {(rss_peak - rss_before) / MB:.1f} MB, "
              f"Python objects by {blocks_peak - blocks_before}")

    # Read back after measuring, so that parsing does not leave freed memory for a stream to reuse.
    with (tmp_path / "export.csv").open(encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == ROWS
    assert (rows[0]["actor"], json.loads(rows[0]["after"])["n"]) == (f"bulk-{ROWS % 7}", ROWS)  # newest first
    with (tmp_path / "export.json").open(encoding="utf-8") as file:
        rows = json.load(file)
    assert len(rows) == ROWS
    assert (rows[0]["actor"], rows[0]["after"]["n"]) == (f"bulk-{ROWS % 7}", ROWS)
