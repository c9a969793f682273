"""`switchyard deploy --wait` and `status --wait` against a live server, the deployment moved by the
worker's own transition function in a thread while the CLI polls: one line per state change, and
the exit code of the end state (0 succeeded, 2 rolled back, 3 failed or timed out)."""
import json
import re
import time

import pytest

from controlplane.deployments.machine import Event
from controlplane.deployments.models import Deployment, DeploymentTransition
from tests.cli.conftest import ENDPOINT, Driver, step, to_analyzing

pytestmark = pytest.mark.django_db(transaction=True)

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def state_lines(stdout: str, deployment_id: int) -> list[str]:
    return [line for line in stdout.splitlines() if re.match(rf"{TS} deployment {deployment_id} ", line)]


def states_of(lines: list[str]) -> list[str]:
    return [line.split()[3] for line in lines]


def history(d_id: int) -> list[str]:
    return list(DeploymentTransition.objects.filter(deployment_id=d_id).order_by("id").values_list("to_state", flat=True))


def test_deploy_wait_succeeds_with_one_line_per_state_change(start, endpoint):
    def script(d):
        d = to_analyzing(d, pause=0.3)
        time.sleep(0.3)
        d = step(d, Event.PASS, step_index=1, traffic_percent=50)
        for _ in range(2):
            time.sleep(0.3)
            d = step(d, Event.OK)
        time.sleep(0.3)
        d = step(d, Event.LAST_PASS, traffic_percent=100)
        time.sleep(0.3)
        step(d, Event.OK)

    p = start("deploy", ENDPOINT, "--version", "2", "--steps", "10:0,50:0", "--reason", "build 7", "--wait",
              "--timeout", "60")
    driver = Driver(script)
    driver.start()
    out, err = p.communicate(timeout=90)
    driver.finish()
    assert p.returncode == 0, out + err
    d = Deployment.objects.get()
    lines = state_lines(out, d.pk)
    assert states_of(lines) == history(d.pk) == [
        "pending", "validating", "provisioning", "verifying", "shifting", "baking", "analyzing",
        "shifting", "baking", "analyzing", "promoting", "succeeded"]
    assert re.fullmatch(rf"{TS} deployment {d.pk} shifting  10% to green  \(step 1/2\)", lines[4]), lines[4]
    assert re.fullmatch(rf"{TS} deployment {d.pk} analyzing  50% to green  \(step 2/2\)", lines[9]), lines[9]
    assert re.fullmatch(rf"{TS} deployment {d.pk} promoting  100% to green", lines[10]), lines[10]
    assert out.splitlines()[0].startswith(f"deployment {d.pk} created: vision.fraud-scorer v1 → v2, steps")
    assert out.splitlines()[-1] == f"deployment {d.pk} succeeded: vision.fraud-scorer serves v2"
    # the request said it came from the CLI, and the audit log says so
    created = DeploymentTransition.objects.get(deployment=d, event="create")
    assert (created.source, created.reason, d.reason, d.strategy) == ("cli", "build 7", "build 7", "steps")
    assert d.steps == [{"percent": 10, "bake_s": 0}, {"percent": 50, "bake_s": 0}]


def test_deploy_wait_rolled_back_by_a_breach_exits_2(start, endpoint):
    def script(d):
        d = to_analyzing(d, pause=0.2)
        time.sleep(0.3)
        d = step(d, Event.BREACH, reason="gate breached 2 times in a row: error_ratio fail (0.2 > 0.01)")
        time.sleep(0.3)
        step(d, Event.OK, reason="traffic back on blue; green unloaded")

    p = start("deploy", ENDPOINT, "--version", "2", "--max-error-ratio", "0.01", "--wait")
    driver = Driver(script)
    driver.start()
    out, err = p.communicate(timeout=90)
    driver.finish()
    assert p.returncode == 2, out + err
    d = Deployment.objects.get()
    assert d.gates["max_error_ratio"] == 0.01 and d.state == "rolled_back" and d.cause == "breach"
    lines = state_lines(out, d.pk)
    assert states_of(lines)[-2:] == ["rolling_back", "rolled_back"]
    assert lines[-2].endswith("  0% to green  gate breached 2 times in a row: error_ratio fail (0.2 > 0.01)")
    assert out.splitlines()[-1] == f"deployment {d.pk} rolled back (cause: breach): vision.fraud-scorer serves v1"


@pytest.mark.parametrize("end", ["failed", "rollback_failed"])
def test_deploy_wait_that_fails_exits_3(start, endpoint, end):
    def script(d):
        time.sleep(0.3)
        d = step(d, Event.BEGIN)
        time.sleep(0.3)
        d = step(d, Event.ERROR, reason="green failed to load on cpu-1: out of memory")
        time.sleep(0.3)
        step(d, Event.OK if end == "failed" else Event.ERROR, reason="could not unload green")

    p = start("deploy", ENDPOINT, "--label", "canary", "--wait", "--timeout", "60")
    driver = Driver(script)
    driver.start()
    out, err = p.communicate(timeout=90)
    driver.finish()
    assert p.returncode == 3, out + err
    d = Deployment.objects.get()
    assert d.state == end and d.green_version.version == 3 and d.target_label == "canary"
    assert states_of(state_lines(out, d.pk)) == ["pending", "validating", "rolling_back", end]
    assert "green failed to load on cpu-1: out of memory" in out


def test_deploy_wait_timeout_exits_3_and_leaves_the_deployment_going(run, endpoint):
    began = time.monotonic()
    r = run("deploy", ENDPOINT, "--version", "2", "--wait", "--timeout", "2")
    took = time.monotonic() - began
    assert r.returncode == 3, r.stdout + r.stderr
    d = Deployment.objects.get()
    assert d.state == "pending"
    assert f"timed out after 2 s: deployment {d.pk} is still pending" in r.stderr
    assert took < 15, took  # 2 s of waiting, plus starting Python and the request


def test_a_paused_deployment_keeps_waiting_and_says_why_once(start, endpoint):
    why = "no data: 12 requests in 60 s, fewer than the minimum of 50"

    def script(d):
        d = to_analyzing(d, pause=0.1)
        d = step(d, Event.NO_DATA, reason=why, status_text=why)
        time.sleep(2.5)  # several polls while paused
        d = step(d, Event.RESUME, reason="traffic is back")
        time.sleep(0.2)
        d = step(d, Event.LAST_PASS, traffic_percent=100)
        step(d, Event.OK)

    p = start("deploy", ENDPOINT, "--version", "2", "--wait")
    driver = Driver(script)
    driver.start()
    out, err = p.communicate(timeout=90)
    driver.finish()
    assert p.returncode == 0, out + err
    d = Deployment.objects.get()
    paused = [line for line in state_lines(out, d.pk) if " paused " in line]
    assert len(paused) == 1 and paused[0].endswith(f"paused  10% to green  (step 1/1)  {why}"), paused
    assert err.count("waits for a person") == 1, err
    assert states_of(state_lines(out, d.pk))[-4:] == ["paused", "analyzing", "promoting", "succeeded"]


def test_status_wait_json_lines_end_with_the_deployment(run, start, endpoint):
    r = run("deploy", ENDPOINT, "--version", "2", "--approval", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    created = json.loads(r.stdout)
    assert created["state"] == "pending" and created["approval_required"] is True
    d_id = created["id"]

    def script(d):
        d = to_analyzing(d, pause=0.2)
        d = step(d, Event.HOLD, reason="every step passed; waiting for approval")
        time.sleep(1.5)
        d = step(d, Event.APPROVE, traffic_percent=100, reason="approved by the release manager")
        time.sleep(0.2)
        step(d, Event.OK)

    p = start("status", str(d_id), "--wait", "--json")
    driver = Driver(script, d_id)
    driver.start()
    out, err = p.communicate(timeout=90)
    driver.finish()
    assert p.returncode == 0, out + err
    objects = [json.loads(line) for line in out.splitlines()]
    transitions, final = objects[:-1], objects[-1]
    assert all(o["type"] == "transition" and o["deployment"] == d_id for o in transitions)
    assert final["id"] == d_id and final["state"] == "succeeded" and final["traffic_percent"] == 100
    # status --wait starts from the state it finds, then one object per change
    assert transitions[0]["state"] in ("pending", "validating")
    assert [o["state"] for o in transitions][-4:] == ["analyzing", "awaiting_approval", "promoting", "succeeded"]
    held = next(o for o in transitions if o["state"] == "awaiting_approval")
    assert held["traffic_percent"] == 10 and held["step"] == 1 and held["steps"] == 1
    assert held["reason"] == "every step passed; waiting for approval" and re.fullmatch(TS, held["at"])
    approve = next(o for o in transitions if o["state"] == "promoting")
    assert (approve["event"], approve["reason"], approve["traffic_percent"]) == (
        "approve", "approved by the release manager", 100)


def test_status_wait_on_an_aborted_deployment_exits_2(run, start, endpoint):
    created = json.loads(run("deploy", ENDPOINT, "--version", "2", "--json").stdout)

    def script(d):
        d = step(d, Event.BEGIN)
        d = step(d, Event.OK)
        time.sleep(1.2)
        # a person aborts through the CLI while `status --wait` follows it
        r = run("abort", str(d.pk), "--reason", "wrong build")
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.strip() == f"deployment {d.pk}: abort accepted; now rolling_back  0% to green"
        d.refresh_from_db()
        time.sleep(0.5)
        step(d, Event.OK)

    p = start("status", str(created["id"]), "--wait")
    driver = Driver(script, created["id"])
    driver.start()
    out, err = p.communicate(timeout=90)
    driver.finish()
    assert p.returncode == 2, out + err
    lines = state_lines(out, created["id"])
    assert states_of(lines)[-2:] == ["rolling_back", "aborted"]
    assert lines[-2].endswith("  0% to green  abort by svc.vision: wrong build"), lines[-2]
    assert out.splitlines()[-1] == f"deployment {created['id']} aborted (cause: abort): vision.fraud-scorer serves v1"
