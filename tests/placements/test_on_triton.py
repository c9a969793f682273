"""Placements against real tritonserver processes (S3 repository on moto's server).

Tasks are called as functions here (one test runs them on a real Celery worker instead). Shared
fleet servers are left clean: whatever a test loaded is unloaded and waited for.
"""
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.devstack.testmodels import python_model_files
from controlplane.fleet.models import Pool, Server
from controlplane.fleet.triton_client import TritonClient
from controlplane.placements import drift, services
from controlplane.placements.models import Placement, PlacementTarget, TargetState
from controlplane.registry.services import model_create, version_register
from tests.conftest import TENSORS_IN, TENSORS_OUT
from tests.placements.conftest import events, make_config, states
from workers.placements import apply_placement, reconcile_fleet, unload_placement

pytestmark = pytest.mark.integration

# Not the shared fixture's fraud-scorer: Triton keeps "UNAVAILABLE unloaded" rows for every model
# it ever loaded (while the name is in the repository), and other tests expect a clean index for
# that name on the shared fleet.
NAME = "vision.placer"


def create_placer(team, deployer):
    return model_create(actor=Actor(user=deployer, source="api"), team=team, name="placer", backend="python",
                        max_batch_size=8, inputs=TENSORS_IN, outputs=TENSORS_OUT)


@pytest.fixture
def model(team, deployer):
    return create_placer(team, deployer)


def model_source(version: int, *, init: str = "", latency_ms: float = 0) -> bytes:
    """The standard test model, with extra lines at the top of initialize()."""
    source = python_model_files(version=version, latency_ms=latency_ms)["model.py"].decode()
    if init:
        hook = "    def initialize(self, args):\n"
        assert hook in source
        source = source.replace(hook, hook + "".join(f"        {line}\n" for line in init.splitlines()))
    return source.encode()


FAILS_ON_MARKED_NODE = "import os\nif os.path.exists('fail-init'):\n    raise RuntimeError('node broken: fail-init marker present')"


def register(actor, model, version, source=None):
    source = source or model_source(version, latency_ms=20)
    registered, _ = version_register(actor=actor, model=model, version=version, contents={"model.py": source})
    return registered


def index_rows(url, name=NAME):
    return [r for r in TritonClient(url).index() if r["name"] == name]


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def unload_and_wait(url, name=NAME):
    client = TritonClient(url)
    try:
        client.unload(name)
        wait_for(lambda: not drift.is_loaded(index_rows(url, name)), what=f"{name} to unload")
    except Exception:  # noqa: BLE001 - cleanup of a server that may be gone
        pass


def effective_config(url, name=NAME):
    return TritonClient(url).model_config(name)


@pytest.fixture
def actor(deployer):
    return Actor(user=deployer, source="api")


@pytest.fixture
def fleet(db, triton_fleet):
    """The two shared servers registered, and left without our model afterwards."""
    pool = Pool.objects.get_or_create(name="cpu")[0]
    servers = [Server.objects.create(name=f"fleet-{i}", pool=pool, http_url=t.http_url, metrics_url=t.metrics_url)
               for i, t in enumerate(triton_fleet)]
    yield servers
    with ThreadPoolExecutor(max_workers=4) as pool_:
        list(pool_.map(lambda args: unload_and_wait(*args),
                       [(s.http_url, n) for s in servers for n in (NAME, "vision.other")]))


@pytest.fixture
def disposable(db, disposable_triton):
    pool = Pool.objects.get_or_create(name="cpu")[0]
    return Server.objects.create(name="disposable", pool=pool, http_url=disposable_triton.http_url)


def infer_concurrently(url, count):
    """`count` requests at once, so that Triton's dynamic batcher can batch them."""
    client = triton_http.InferenceServerClient(url.removeprefix("http://"), concurrency=count)
    data = np.ones((1, 4), dtype=np.float32)
    handles = []
    for _ in range(count):
        tensor = triton_http.InferInput("INPUT0", data.shape, "FP32")
        tensor.set_data_from_numpy(data)
        handles.append(client.async_infer(NAME, [tensor]))
    results = [h.get_result() for h in handles]
    client.close()
    assert all(r.as_numpy("OUTPUT0").tolist() == [[2.0] * 4] for r in results)


def test_apply_loads_on_two_servers_with_our_config_and_remove_unloads(s3, actor, model, fleet):
    register(actor, model, 1)
    make_config(model, 1, {"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_microseconds": 50000}})
    placement, _ = services.placement_create(actor=actor, model=model, versions=[1], servers=fleet)

    started = time.monotonic()
    assert apply_placement(placement.pk) == {"ready": 2}
    elapsed = time.monotonic() - started
    targets = list(placement.targets.all())
    assert [t.state for t in targets] == ["ready", "ready"]
    assert all(0 < t.load_seconds < elapsed for t in targets)
    assert elapsed < 1.6 * max(t.load_seconds for t in targets) + 1  # in parallel, not one after the other
    for server in fleet:
        effective = effective_config(server.http_url)
        assert drift.config_differences(placement.rendered_config, effective) == []
        assert effective["version_policy"] == {"specific": {"versions": [1]}}
        assert int(effective["dynamic_batching"]["max_queue_delay_microseconds"]) == 50000
        assert TritonClient(server.http_url).model_ready(NAME, 1)
    ready = events("placement.target.ready")
    assert len(ready) == 2 and {e.source for e in ready} == {"worker"}
    assert apply_placement(placement.pk) == {}  # a second delivery finds nothing to do

    # Batching insight: the periodic sampler takes a first sample, then 24 requests arrive at once.
    placement = Placement.objects.get(pk=targets[0].placement_id)
    assert services.placement_live(placement) == {}  # no sample yet, and no call to Triton
    assert services.placements_sample() == {"servers": 2, "targets": 2, "unreachable": 0}
    first = services.placement_live(placement)[targets[0].pk]
    assert [(r["version"], r["state"]) for r in first.states] == [("1", "READY")]
    assert first.insight.requests_per_second is None and first.insight.batch_size is None  # one sample: no window
    infer_concurrently(fleet[0].http_url, 24)
    stats = TritonClient(fleet[0].http_url).stats(NAME)[0]
    services.placements_sample()
    live = services.placement_live(placement)[targets[0].pk].insight
    assert live.basis == "window" and live.requests == 24
    assert live.batch_size == pytest.approx(24 / stats["execution_count"]) and live.batch_size > 1
    assert 0 < live.queue_share < 1 and live.requests_per_second > 0
    untouched = services.placement_live(placement)[targets[1].pk].insight
    assert untouched.batch_size is None

    services.placement_remove(actor=actor, placement=placement)
    assert unload_placement(placement.pk) == {"removed": 2}
    for server in fleet:
        assert not drift.is_loaded(index_rows(server.http_url))
    assert states(placement) == {"fleet-0": "removed", "fleet-1": "removed"}
    assert {e.source for e in events("placement.target.removed")} == {"worker"}


def test_a_failing_server_shows_tritons_text_and_retry_after_the_fix_works(s3, actor, model, fleet, disposable, disposable_triton):
    register(actor, model, 1, model_source(1, init=FAILS_ON_MARKED_NODE))
    marker = Path(disposable_triton.log_path).parent / "fail-init"  # tritonserver's working directory
    marker.write_text("broken on purpose")
    placement, _ = services.placement_create(actor=actor, model=model, versions=[1], servers=[fleet[0], disposable])

    assert apply_placement(placement.pk) == {"ready": 1, "failed": 1}
    ok, bad = placement.targets.get(server_name="fleet-0"), placement.targets.get(server_name="disposable")
    assert ok.state == TargetState.READY and ok.error == ""
    assert bad.state == TargetState.FAILED
    assert "RuntimeError: node broken: fail-init marker present" in bad.error and "load failed for model" in bad.error
    failed = events("placement.target.failed")[0]
    assert failed.object_id == str(bad.pk) and "node broken" in failed.after["error"]

    marker.unlink()
    moved = services.placement_retry(actor=actor, placement=placement)
    assert [t.server_name for t in moved] == ["disposable"]
    assert apply_placement(placement.pk) == {"ready": 1}
    assert states(placement) == {"fleet-0": "ready", "disposable": "ready"}
    assert len(events("placement.target.load", object_id=str(ok.pk))) == 1  # the healthy server was not reloaded
    assert TritonClient(disposable.http_url).model_ready(NAME, 1)


def test_reconciler_restores_a_restarted_server_with_our_config_as_the_system(s3, actor, model, disposable, disposable_triton):
    """The required one: Triton forgets overrides when it restarts; the reconciler puts them back."""
    register(actor, model, 1)
    make_config(model, 1, {"max_batch_size": 4, "dynamic_batching": {"max_queue_delay_microseconds": 1000}})
    placement, _ = services.placement_create(actor=actor, model=model, versions=[1], servers=[disposable])
    assert apply_placement(placement.pk) == {"ready": 1}
    target = placement.targets.get()

    disposable_triton.stop()
    disposable_triton.start()  # same ports, nothing loaded (explicit mode)
    assert not drift.is_loaded(index_rows(disposable.http_url))

    report = reconcile_fleet()
    assert [(r["server"], r["drift"], r["result"]) for r in report["reapplied"]] == [("disposable", "missing", "ready")]
    effective = effective_config(disposable.http_url)
    assert drift.config_differences(placement.rendered_config, effective) == []
    assert effective["max_batch_size"] == 4 and int(effective["dynamic_batching"]["max_queue_delay_microseconds"]) == 1000
    assert TritonClient(disposable.http_url).model_ready(NAME, 1)
    target.refresh_from_db()
    assert (target.state, target.drift, target.error) == ("ready", "", "")

    mine = AuditEvent.objects.filter(object_type="placements.placementtarget", object_id=str(target.pk))
    reapply = mine.get(action="placement.target.reapply")
    assert (reapply.source, reapply.actor_user_id, reapply.actor_name) == ("system", None, "system")
    assert reapply.before == {"state": "ready"} and reapply.reason.startswith("missing")
    restored = mine.filter(action="placement.target.ready").order_by("-id").first()
    assert restored.source == "system" and restored.id > reapply.id
    assert mine.get(action="placement.target.drift").after["drift"] == "missing"

    again = reconcile_fleet()
    assert again["reapplied"] == [] and again["drift"] == []


def test_reconciler_repairs_wrong_version_and_config_and_reports_extras(s3, actor, model, fleet):
    register(actor, model, 1)
    register(actor, model, 2)
    other = model_create(actor=actor, team=model.team, name="other", backend="python", max_batch_size=8,
                         inputs=TENSORS_IN, outputs=TENSORS_OUT)
    register(actor, other, 1)
    server = fleet[1]
    placement, _ = services.placement_create(actor=actor, model=model, versions=[1], servers=[server])
    assert apply_placement(placement.pk) == {"ready": 1}
    triton = TritonClient(server.http_url)
    settled = lambda: not drift.is_busy(index_rows(server.http_url))  # noqa: E731

    # Someone loads v2 over ours.
    triton.load(NAME, config=placement.rendered_config | {"version_policy": {"specific": {"versions": [2]}}})
    wait_for(settled, what="v1 to finish unloading")
    # ... and, meanwhile, a model no placement wants.
    triton.load("vision.other", config={**placement.rendered_config, "name": "vision.other"})
    report = reconcile_fleet()
    assert [(d["drift"], d["detail"].split(";")[0]) for d in report["drift"]] == [("wrong_version", "READY v2, wanted v1")]
    assert [r["result"] for r in report["reapplied"]] == ["ready"]
    assert report["extra"] == [{"server": "fleet-1", "model": "vision.other", "versions": "v1 READY"}]
    wait_for(settled, what="v2 to finish unloading")
    assert drift.versions_in(index_rows(server.http_url), "READY") == {1}
    assert triton.model_ready("vision.other")  # reported, not unloaded

    # Someone reloads ours with another batch size.
    triton.load(NAME, config=placement.rendered_config | {"max_batch_size": 4})
    report = reconcile_fleet()
    assert [(d["drift"], d["detail"]) for d in report["drift"]] == [("wrong_config", "max_batch_size: ours 8, server has 4")]
    assert effective_config(server.http_url)["max_batch_size"] == 8
    kinds = [e.after["drift"] for e in events("placement.target.drift")]
    assert kinds == ["wrong_version", "wrong_config"]
    assert {e.source for e in events("placement.target.reapply")} == {"system"}
    assert PlacementTarget.objects.get(placement=placement).state == TargetState.READY


def test_a_load_that_hangs_is_marked_stuck_then_adopted_when_it_finishes(s3, actor, model, settings, disposable):
    settings.SWITCHYARD_PLACEMENT_LOAD_TIMEOUT_SECONDS = 1.0
    settings.SWITCHYARD_PLACEMENT_STUCK_SECONDS = 0.5
    register(actor, model, 1, model_source(1, init="import time\ntime.sleep(4)"))
    placement, _ = services.placement_create(actor=actor, model=model, versions=[1], servers=[disposable])

    assert apply_placement(placement.pk) == {"loading": 1}  # Triton keeps loading after we stop waiting
    target = placement.targets.get()
    assert target.state == TargetState.LOADING and "Still LOADING after 1 s" in target.error

    report = reconcile_fleet()
    assert [(s["server"], s["error"]) for s in report["stuck"]] == [("disposable", "v1 LOADING for more than 0.5 s.")]
    target.refresh_from_db()
    assert target.state == TargetState.STUCK and target.error == "v1 LOADING for more than 0.5 s."
    stuck = events("placement.target.stuck")
    assert len(stuck) == 1 and stuck[0].source == "system" and stuck[0].before == {"state": "loading"}

    wait_for(lambda: TritonClient(disposable.http_url).model_ready(NAME, 1), timeout=30, what="the slow load")
    report = reconcile_fleet()
    assert [a["server"] for a in report["adopted"]] == ["disposable"]
    target.refresh_from_db()
    assert (target.state, target.error) == ("ready", "")
    assert events("placement.target.ready")[-1].reason == "Triton reports it READY with our config"


def test_a_load_whose_worker_died_before_triton_had_it_is_taken_over_when_its_lease_runs_out(s3, actor, model, fleet):
    """A worker killed between committing its claim and sending the load leaves a LOADING target
    that Triton knows nothing about. While the claim's lease is renewed the reconciler waits (its
    worker may be queued behind other servers); once the lease runs out it loads at once, instead
    of after the stuck timeout (10 minutes by default)."""
    from controlplane.placements.services.state import claim

    register(actor, model, 1)
    placement, _ = services.placement_create(actor=actor, model=model, versions=[1], servers=[fleet[0]])
    target = placement.targets.get()
    assert claim(target, to=TargetState.LOADING, actor=actor, action="placement.target.load")  # ... and the worker dies
    target.refresh_from_db()
    assert target.lease_until > target.state_changed_at

    report = reconcile_fleet()
    assert report["reapplied"] == [] and states(placement) == {"fleet-0": "loading"}  # the lease still runs: wait
    assert not drift.is_loaded(index_rows(fleet[0].http_url))

    PlacementTarget.objects.filter(pk=target.pk).update(lease_until=target.state_changed_at)  # nobody renewed it
    report = reconcile_fleet()
    assert [(r["server"], r["detail"], r["result"]) for r in report["reapplied"]] == [
        ("fleet-0", "load never finished", "ready")]
    assert states(placement) == {"fleet-0": "ready"}
    reapplied = events("placement.target.reapply")
    assert [(e.source, e.reason) for e in reapplied] == [("system", "the load never finished (its worker stopped)")]


def test_a_worker_renews_its_lease_while_triton_loads_so_the_reconciler_leaves_a_slow_load_alone(
        transactional_db, s3, actor, model, fleet, monkeypatch):
    from controlplane.placements import conf

    monkeypatch.setattr(conf, "LEASE_S", 0.6)  # renewed every 0.2 s
    register(actor, model, 1, model_source(1, init="import time\ntime.sleep(3)"))
    placement, _ = services.placement_create(actor=actor, model=model, versions=[1], servers=[fleet[0]])
    with ThreadPoolExecutor(max_workers=1) as pool:
        applying = pool.submit(apply_placement, placement.pk)
        wait_for(lambda: drift.is_busy(index_rows(fleet[0].http_url)), what="Triton to start loading")
        time.sleep(1.5)  # well past the first lease
        target = placement.targets.get()
        assert target.state == TargetState.LOADING
        assert (target.lease_until - target.state_changed_at).total_seconds() > 1.5  # renewed since the claim
        report = reconcile_fleet()
        assert report["reapplied"] == [] and report["stuck"] == []
        assert applying.result(timeout=30) == {"ready": 1}
    assert states(placement) == {"fleet-0": "ready"}
    assert events("placement.target.reapply") == []
