"""No race can exceed a quota: many reservations at once, each from its own thread and connection.

What is held is a number of distinct devices, (server, GPU index): the races here reserve new
devices, shared devices and a mix, and the team never holds more devices than its quota.

The canary test runs the same race against a deliberately unlocked check-then-insert, with a
barrier so that every thread reads before any writes, and shows that the same assertions catch
the oversubscription. So the locked service's success is not luck.
"""
import threading
import time
from collections import Counter

import pytest
from django.db import connection, transaction

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.fleet.models import Server
from controlplane.quotas.models import GpuQuota, Reservation, ReservationKind
from controlplane.quotas.selectors import team_devices_held
from controlplane.quotas.services import QuotaExceeded, quota_release, quota_reserve, quota_set
from tests.quotas.conftest import make_version

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only():
    """Row locks are what these tests prove; SQLite has none, so refuse to run there rather than pass."""
    from django.db import connection

    assert connection.vendor == "postgresql", "the quota race tests need PostgreSQL: run them with `make test`"

THREADS = 24
EACH = 2  # new devices per request
LIMIT = 15  # room for 7 requests of 2; the 8th would hold 16


def held(team) -> int:
    return len(team_devices_held(team))


@pytest.fixture
def servers(server):
    """One 8-GPU server per thread (gpu-1 is the first), so that each thread reserves new devices."""
    more = [Server(name=f"gpu-{i + 1}", pool=server.pool, http_url=server.http_url, gpu_count=8) for i in range(1, THREADS)]
    return [server, *Server.objects.bulk_create(more)]


def race(attempt, n=THREADS, *, before_start=None):
    """Run ``attempt(i)`` in n threads at once. Returns Counter of outcomes and a list of errors."""
    start = threading.Barrier(n + 1)
    outcomes: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i):
        try:
            start.wait(timeout=30)
            result = attempt(i)
        except QuotaExceeded:
            result = "exceeded"
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            with lock:
                errors.append(exc)
            result = "error"
        finally:
            connection.close()  # each thread had its own connection
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    try:
        if before_start is not None:
            before_start(start)
        else:
            start.wait(timeout=30)
    finally:
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return Counter(outcomes), errors


def assert_quota_held(team, outcomes, errors, *, limit=LIMIT, each=EACH, n=THREADS):
    """Exactly as many succeed as fit, the rest are refused, and held never exceeds the limit."""
    assert errors == []
    fit = limit // each
    assert held(team) <= limit, f"held {held(team)} of {limit}"
    assert outcomes == Counter({"ok": fit, "exceeded": n - fit}), outcomes
    assert held(team) == fit * each
    assert Reservation.objects.filter(team=team).count() == fit


def waiting_on_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else the view is frozen for the transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.fixture
def locked_attempt(team, deployer, version, servers):
    actor = Actor(user=deployer, source="api")

    def attempt(i):
        quota_reserve(actor=actor, team=team, kind=ReservationKind.PLACEMENT, version=version, server=servers[i],
                      devices=list(range(EACH)), holder=f"placement {i}")
        return "ok"

    return attempt


def test_concurrent_reservations_never_exceed_the_quota(team, as_admin, locked_attempt):
    quota_set(actor=as_admin, team=team, gpus=LIMIT)
    t0 = time.monotonic()
    outcomes, errors = race(locked_attempt)
    assert_quota_held(team, outcomes, errors)
    assert AuditEvent.objects.filter(action="quota.reserve").count() == LIMIT // EACH  # refusals write nothing
    assert time.monotonic() - t0 < 30


def test_all_requests_queue_on_the_quota_row_lock(team, as_admin, locked_attempt):
    """Hold the team's quota row locked until every thread is blocked on it, then let go: the
    reservations all contend at the same moment, and still only those that fit get through."""
    quota_set(actor=as_admin, team=team, gpus=LIMIT)

    def hold_the_lock_until_all_wait(start):
        with transaction.atomic():
            GpuQuota.objects.select_for_update().get(team=team)
            start.wait(timeout=30)
            deadline = time.monotonic() + 30
            while waiting_on_locks() < THREADS and time.monotonic() < deadline:
                time.sleep(0.02)
            assert waiting_on_locks() == THREADS  # every request is inside quota_reserve, waiting
        connection.close()

    outcomes, errors = race(locked_attempt, before_start=hold_the_lock_until_all_wait)
    assert_quota_held(team, outcomes, errors)


def test_concurrent_first_use_of_a_team_without_a_quota_row(team, deployer, version, server):
    """No GpuQuota row yet (quota 0): the lazy inserts race too, and must neither fail nor leak."""
    actor = Actor(user=deployer, source="api")

    def attempt(i):
        quota_reserve(actor=actor, team=team, kind=ReservationKind.PLACEMENT, version=version, server=server,
                      devices=[i % server.gpu_count])
        return "ok"

    outcomes, errors = race(attempt)
    assert errors == []
    assert outcomes == Counter({"exceeded": THREADS})
    assert not GpuQuota.objects.filter(team=team).exists() and held(team) == 0  # refusals roll everything back


def test_concurrent_quota_sets_are_serialized_with_a_true_before(team, platform_admin):
    """Every admin's change is audited with the value it really replaced: the events form one chain."""
    actor = Actor(user=platform_admin, source="api")

    def attempt(i):
        quota_set(actor=actor, team=team, gpus=i + 1)
        return "ok"

    outcomes, errors = race(attempt)
    assert errors == [] and outcomes == Counter({"ok": THREADS})
    assert GpuQuota.objects.filter(team=team).count() == 1
    chain = list(AuditEvent.objects.filter(action="quota.set").order_by("id").values_list("before", "after"))
    assert len(chain) == THREADS
    assert chain[0][0] == {"gpus": 0}
    assert all(before == previous_after for (_, previous_after), (before, _) in zip(chain, chain[1:]))
    assert GpuQuota.objects.get(team=team).gpus == chain[-1][1]["gpus"]


def test_reserving_and_releasing_at_once_never_exceeds_the_quota(team, as_admin, deployer, version, servers):
    """Threads reserve and release in loops while a sampler watches what is held."""
    limit, rounds = 10, 4
    quota_set(actor=as_admin, team=team, gpus=limit)
    actor = Actor(user=deployer, source="api")
    samples: list[int] = []
    stop = threading.Event()

    def sample():
        try:
            while not stop.is_set():
                samples.append(held(team))
        finally:
            connection.close()

    def attempt(i):
        kept = 0
        for _ in range(rounds):
            try:
                reservation = quota_reserve(actor=actor, team=team, kind=ReservationKind.PLACEMENT, version=version,
                                            server=servers[i], devices=[0, 1, 2])
            except QuotaExceeded:
                continue
            kept += 1
            quota_release(actor=actor, reservation=reservation)
        return f"kept {kept}"

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        outcomes, errors = race(attempt)
    finally:
        stop.set()
        sampler.join()
    assert errors == []
    assert len(samples) > 10
    assert max(samples) <= limit, max(samples)
    assert held(team) == 0
    successes = sum(int(outcome.split()[1]) for outcome in outcomes.elements())
    assert successes >= 3  # reservations did get through, and were released
    assert AuditEvent.objects.filter(action="quota.release").count() == successes


def test_concurrent_reservations_of_the_same_devices_all_pass_and_count_once(team, as_admin, deployer, model, server):
    """Every thread reserves GPUs 0 and 1 of gpu-1 (a same-servers green, many times over) with a
    quota of exactly 2: none is refused, and the team holds 2."""
    quota_set(actor=as_admin, team=team, gpus=2)
    actor = Actor(user=deployer, source="api")
    versions = [make_version(model, 10 + i) for i in range(THREADS)]

    def attempt(i):
        quota_reserve(actor=actor, team=team, kind=ReservationKind.PLACEMENT, version=versions[i], server=server,
                      devices=[0, 1])
        return "ok"

    outcomes, errors = race(attempt)
    assert errors == [] and outcomes == Counter({"ok": THREADS})
    assert held(team) == 2 and Reservation.objects.filter(team=team).count() == THREADS


def test_shared_and_new_devices_racing_never_exceed_the_quota(team, as_admin, deployer, version, servers):
    """Each thread asks for the same 4 GPUs of gpu-1 plus GPU 0 of its own server: the first to get
    the lock adds 5 devices, each later one 1, so with a quota of 10 exactly 6 get through."""
    limit = 10
    quota_set(actor=as_admin, team=team, gpus=limit)
    actor = Actor(user=deployer, source="api")
    shared = Server.objects.create(name="gpu-shared", pool=servers[0].pool, http_url=servers[0].http_url, gpu_count=4)

    def attempt(i):
        with transaction.atomic():  # both reservations or neither, as a placement on two servers does
            quota_reserve(actor=actor, team=team, kind=ReservationKind.PLACEMENT, version=version, server=shared,
                          devices=[0, 1, 2, 3])
            quota_reserve(actor=actor, team=team, kind=ReservationKind.PLACEMENT, version=version, server=servers[i],
                          devices=[0])
        return "ok"

    outcomes, errors = race(attempt)
    assert errors == []
    assert outcomes == Counter({"ok": 6, "exceeded": THREADS - 6}), outcomes
    assert held(team) == limit
    assert Reservation.objects.filter(team=team).count() == 12


# The canary: the same race against a check without a lock ------------------------------------

def unlocked_reserve(team, version, server, devices, barrier):
    """What healthchecks does: read, check, insert, with no lock. The barrier makes every
    thread read before any thread writes, as an unlucky schedule would."""
    with transaction.atomic():
        limit = GpuQuota.objects.get(team=team).gpus
        current = team_devices_held(team)
        barrier.wait(timeout=30)
        new = {(server.pk, d) for d in devices} - current
        if len(current) + len(new) > limit:
            raise QuotaExceeded(team=team, limit=limit, held=len(current), needed=len(new), subject="canary")
        Reservation.objects.create(team=team, gpus=len(devices), devices=devices, kind=ReservationKind.PLACEMENT,
                                   version=version, server=server)
    return "ok"


def test_the_race_catches_an_unlocked_check(team, as_admin, version, servers):
    quota_set(actor=as_admin, team=team, gpus=LIMIT)
    read_all = threading.Barrier(THREADS)
    outcomes, errors = race(lambda i: unlocked_reserve(team, version, servers[i], list(range(EACH)), read_all))
    assert errors == []
    assert held(team) > LIMIT  # oversubscribed: every thread saw 0 held
    with pytest.raises(AssertionError):
        assert_quota_held(team, outcomes, errors)
