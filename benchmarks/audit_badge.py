"""The audit chain badge: its cost must not grow with the audit log.

Goal (issue 8, section 4): the badge costs the same at 10k and at 1M events. The badge runs the
quick check, which re-hashes only the events after the newest verified checkpoint (at most
``selectors.TAIL_LIMIT``); the periodic task ``audit.checkpoint_extend`` moves the checkpoint.

How it measures, for each size in turn on one growing chain:

* Seed the chain to the size: rows with a correct hash chain computed in Python and loaded with
  PostgreSQL's COPY (bulk_create on SQLite), then the chain head moved, then ``VACUUM (ANALYZE)``
  so that autovacuum does not run during the timing. The triggers only refuse UPDATE and DELETE,
  so nothing is switched off.
* Worst case first: the checkpoint is where the previous size left it (none at the first size),
  so the tail is the whole growth and the badge stops at TAIL_LIMIT events.
* Then the periodic task's work, timed once: extend the checkpoint to the end of the chain.
* Then ``TAIL`` more events, as if written since the task last ran, and the badge timed
  ``rounds`` times: ``GET /audit/chain/`` (the fragment the Audit page loads) and
  ``GET /api/v1/audit/verify/``, in process with ``django.test.Client`` as a signed-in viewer.
* Interleaved with those, ``GET /api/v1/pools/`` (the same middleware and session, no audit
  rows): the goal compares the badge in units of this reference, so that the load of a shared
  machine during one size's timing does not pass for growth.
* For reference, the full check once (what every badge request cost before checkpoints).

``main()`` creates and drops its own database, as api_latency does; ``run()`` works on the
current one, which must hold no audit events yet.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from benchmarks.api_latency import percentile, run_in_own_database

GOAL_RATIO = 1.5  # badge median at the largest size over the smallest; flat means about 1.0
TAIL = 100  # events written since the periodic task last ran
REFERENCE = "/api/v1/pools/"  # the same middleware, session and rendering, and no audit rows


@dataclass(frozen=True)
class Size:
    chains: tuple[int, ...]  # chain lengths measured, smallest first
    rounds: int


SIZES = {
    "full": Size(chains=(10_000, 1_000_000), rounds=200),
    "small": Size(chains=(10_000, 100_000), rounds=50),
    "tiny": Size(chains=(50, 400), rounds=2),
}


@dataclass
class Point:
    events: int  # chain length before the tail
    seed_s: float = 0.0
    extend_s: float = 0.0  # the periodic task catching up with the growth
    full_s: float = 0.0  # the full check, once
    worst_ms: float = 0.0  # the badge before the catch-up: bounded by TAIL_LIMIT
    worst_checked: int = 0
    badge_ms: list[float] = field(default_factory=list)
    api_ms: list[float] = field(default_factory=list)
    reference_ms: list[float] = field(default_factory=list)  # a page that never reads the audit log
    checked: int = 0  # events the badge re-hashed
    queries: int = 0  # queries per badge request

    @property
    def badge_median(self) -> float:
        return statistics.median(self.badge_ms)

    @property
    def badge_over_reference(self) -> float:
        """The badge in units of the reference request timed beside it: the machine's load at
        the time cancels out, which matters on a shared machine."""
        return self.badge_median / statistics.median(self.reference_ms)


@dataclass
class Result:
    size: str
    points: list[Point]
    final: dict[str, str]


# --------------------------------------------------------------------------------------------
# Seeding


def _rows(start: int, count: int, prev_hash: str, team_id: int, user_id: int):
    """``count`` chained events after ``prev_hash``: (values for the insert, hash) pairs."""
    from controlplane.audit import chain

    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(start, start + count):
        platform = i % 10 == 0
        row = {
            "created_at": base + timedelta(seconds=i, microseconds=i % 997), "actor_user_id": None if platform else user_id,
            "actor_name": "system" if platform else "bench-viewer", "token_id": None, "source": ("api", "ui", "cli", "worker")[i % 4],
            "request_id": f"{i:032x}", "ip": "10.1.2.3", "team_id": None if platform else team_id,
            "object_type": "fleet.server" if platform else "registry.modelversion", "object_id": str(i % 5000),
            "object_repr": f"triton-{i % 1000:04d}" if platform else f"bench/model-{i % 200:03d} v{i % 50 + 1}",
            "action": "server.probe" if platform else "version.register",
            "before": None if i % 3 else {"status": "registering"},
            "after": {"version": i % 50 + 1, "checksum": f"sha256:{i:064x}"}, "reason": "" if i % 4 else "nightly retrain",
            "prev_hash": prev_hash,
        }
        prev_hash = chain.event_hash(row)
        yield row, prev_hash


def seed(count: int, team_id: int, user_id: int) -> float:
    """Append ``count`` chained events and move the chain head. A benchmark fixture: real
    events go through audit_record, which this matches hash for hash (verification checks it)."""
    from django.db import connection, transaction

    from controlplane.audit import chain
    from controlplane.audit.models import AuditChainHead, AuditEvent

    t0 = time.perf_counter()
    head = AuditChainHead.objects.filter(pk=1).first()
    prev = head.last_hash if head else chain.GENESIS
    done = AuditEvent.objects.count()
    columns = [*chain.FIELDS, "hash"]
    with transaction.atomic():
        if connection.vendor == "postgresql":
            table = connection.ops.quote_name(AuditEvent._meta.db_table)
            with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row, digest in _rows(done, count, prev, team_id, user_id):
                    copy.write_row([*(_copy_value(row[name]) for name in chain.FIELDS), digest])
                    prev = digest
        else:
            batch = []
            for row, digest in _rows(done, count, prev, team_id, user_id):
                batch.append(AuditEvent(**row, hash=digest))
                prev = digest
            AuditEvent.objects.bulk_create(batch, batch_size=1000)
        last_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
        AuditChainHead.objects.update_or_create(pk=1, defaults={"last_id": last_id, "last_hash": prev})
    with connection.cursor() as cursor:
        # As autovacuum would, but now: left to it, a vacuum of the fresh rows would run during
        # the timed requests. VACUUM cannot run inside a transaction (the smoke test's).
        table = connection.ops.quote_name(AuditEvent._meta.db_table)
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        else:
            cursor.execute(f"ANALYZE {table}")
    return time.perf_counter() - t0


def _copy_value(value):
    return json.dumps(value) if isinstance(value, dict) else value


# --------------------------------------------------------------------------------------------
# Measuring


def _get(client, path: str):
    response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}, not 200")
    return response


def _checked(response) -> int:
    return response.json()["checked"]


def measure_point(client, point: Point, rounds: int) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from controlplane.audit.selectors import audit_chain_verify
    from controlplane.audit.services import audit_checkpoint_extend

    t0 = time.perf_counter()
    point.worst_checked = _checked(_get(client, "/api/v1/audit/verify/"))
    point.worst_ms = (time.perf_counter() - t0) * 1000

    t0 = time.perf_counter()
    report = audit_checkpoint_extend()
    point.extend_s = time.perf_counter() - t0
    if report is None or not report.ok:
        raise RuntimeError(f"the seeded chain did not verify: {report}")
    seed(TAIL, *_ids())

    _get(client, "/audit/chain/")  # warm-up
    with CaptureQueriesContext(connection) as ctx:
        _get(client, "/audit/chain/")
    point.queries = len(ctx.captured_queries)
    point.checked = _checked(_get(client, "/api/v1/audit/verify/"))
    for _ in range(rounds):  # interleaved, so that noise hits all three alike
        for path, samples in (("/audit/chain/", point.badge_ms), ("/api/v1/audit/verify/", point.api_ms),
                              (REFERENCE, point.reference_ms)):
            t0 = time.perf_counter()
            _get(client, path)
            samples.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    full = audit_chain_verify()
    point.full_s = time.perf_counter() - t0
    if not full.ok:
        raise RuntimeError(f"the full check failed: {full}")


_IDS: dict[str, int] = {}


def _ids() -> tuple[int, int]:
    return _IDS["team"], _IDS["user"]


def run(size: str = "full", rounds: int | None = None, out=None) -> Result:
    """Seed and measure on the current database, which must hold no audit events yet."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from controlplane.accounts.models import Membership, Role, Team
    from controlplane.audit.models import AuditEvent

    out = out or sys.stdout
    spec = SIZES[size]
    rounds = spec.rounds if rounds is None else rounds
    if AuditEvent.objects.exists():
        raise RuntimeError("the audit badge benchmark needs a database without audit events")
    user = get_user_model()(username="bench-viewer")
    user.set_unusable_password()
    user.save()
    team = Team.objects.create(slug="bench", display_name="Bench")
    Membership.objects.create(user=user, team=team, role=Role.VIEWER)
    _IDS.update(team=team.pk, user=user.pk)
    client = Client()
    client.force_login(user)
    for path in ("/audit/chain/", "/api/v1/audit/verify/"):  # warm-up on the empty chain: imports, templates
        _get(client, path)

    points = []
    for events in spec.chains:
        point = Point(events=events)
        point.seed_s = seed(events - AuditEvent.objects.count(), *_ids())
        measure_point(client, point, rounds)
        points.append(point)
        print(f"  {events:>9,} events: badge median {point.badge_median:.1f} ms ({point.checked} re-hashed), "
              f"seeded in {point.seed_s:.1f} s, checkpoint caught up in {point.extend_s:.1f} s, full check {point.full_s:.1f} s",
              file=out, flush=True)

    final = _final(points)
    _report(out, size, rounds, connection.vendor, points, final)
    return Result(size=size, points=points, final=final)


def _label(events: int) -> str:
    return f"{events // 1_000_000}m" if events % 1_000_000 == 0 else f"{events // 1000}k" if events % 1000 == 0 else str(events)


def _final(points: list[Point]) -> dict[str, str]:
    small, large = points[0], points[-1]
    ratio = large.badge_median / small.badge_median
    return {
        f"audit_badge_ms_{_label(small.events)}": f"{small.badge_median:.1f} (goal: none, the reference)",
        f"audit_badge_ms_{_label(large.events)}": f"{large.badge_median:.1f} (goal: none, compared below)",
        "audit_badge_ratio": f"{ratio:.2f}x (goal: none; {_label(large.events)} over {_label(small.events)} events, medians)",
        "audit_badge_ratio_vs_reference": f"{large.badge_over_reference / small.badge_over_reference:.2f}x (goal: <= {GOAL_RATIO}x; "
                                          f"the same, each badge median over the median of {REFERENCE} timed beside it)",
        "audit_badge_ratio_fastest": f"{min(large.badge_ms) / min(small.badge_ms):.2f}x (goal: none; the same on the fastest "
                                     "request of each, less exposed to a busy machine)",
        "audit_badge_rehashed_growth": f"{large.checked - small.checked} (goal: 0)",
        "audit_badge_query_growth": f"{large.queries - small.queries} (goal: 0)",
        "audit_badge_worst_ms": f"{max(p.worst_ms for p in points):.1f} (goal: none; checkpoint behind by the whole growth, "
                                f"bounded at {max(p.worst_checked for p in points)} events re-hashed)",
        f"audit_full_check_s_{_label(large.events)}": f"{large.full_s:.1f} (goal: none; what each badge request cost before "
                                                      "checkpoints, now a worker's job)",
    }


def _report(out, size, rounds, vendor, points, final) -> None:
    print(f"Audit chain badge, size {size}, {rounds} timed requests per size, in process (django.test.Client, session of a "
          f"viewer), database {vendor}, {os.cpu_count()} cores, {TAIL} events past the checkpoint", file=out)
    print(f"{'events':>9}  {'badge med':>9} {'p95':>7} {'min-max':>11}  {'api med':>7} {'p95':>7}  {'ref med':>7} {'x ref':>5}"
          f"  {'re-hashed':>9} {'queries':>7}"
          f"  {'worst ms':>8}  {'catch-up s':>10}  {'full check s':>12}", file=out)
    for p in points:
        spread = f"{min(p.badge_ms):.1f}-{max(p.badge_ms):.1f}"
        print(f"{p.events:>9}  {p.badge_median:9.1f} {percentile(p.badge_ms, 95):7.1f} {spread:>11}  "
              f"{statistics.median(p.api_ms):7.1f} {percentile(p.api_ms, 95):7.1f}  {statistics.median(p.reference_ms):7.1f} "
              f"{p.badge_over_reference:5.2f}  {p.checked:>9} {p.queries:>7}"
              f"  {p.worst_ms:8.1f}  {p.extend_s:10.1f}  {p.full_s:12.1f}", file=out)
    print(f"times in ms unless marked s; badge = GET /audit/chain/, api = GET /api/v1/audit/verify/, ref = GET {REFERENCE}, "
          "x ref = badge median / ref median; worst = the badge with the "
          "checkpoint behind by the whole growth (one request); catch-up = the periodic task extending the checkpoint", file=out)
    for name, value in final.items():
        print(f"{name}: {value}", file=out)
    out.flush()


def main(size: str = "full", rounds: int | None = None) -> int:
    return run_in_own_database(run, size=size, rounds=rounds)


if __name__ == "__main__":
    sys.exit(main(*(sys.argv[1:2] or ["full"])))
