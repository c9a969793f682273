"""Refusals exit 4 (the server's 4xx, with its detail and fields), accepted actions exit 0, and
--json output parses: against a live server with a team token."""
import json
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.audit.models import AuditEvent
from controlplane.deployments.machine import Event
from controlplane.deployments.models import Deployment
from controlplane.placements.models import Placement
from controlplane.registry.models import VersionLabel
from tests.cli.conftest import ENDPOINT, step, to_analyzing

pytestmark = pytest.mark.django_db(transaction=True)


def deploy(run, *extra) -> Deployment:
    r = run("deploy", ENDPOINT, *extra, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return Deployment.objects.get(pk=json.loads(r.stdout)["id"])


def test_a_second_deployment_to_the_endpoint_is_refused_naming_the_first(run, endpoint):
    r = run("deploy", ENDPOINT, "--version", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    first = Deployment.objects.get()
    assert r.stdout.splitlines() == [
        f"deployment {first.pk} created: vision.fraud-scorer v1 → v2, canary (10% for 60 s); pending",
        f"follow it: switchyard status {first.pk} --wait",
    ]
    r = run("deploy", ENDPOINT, "--version", "3", "--wait")
    assert r.returncode == 4, r.stdout + r.stderr
    assert r.stdout == ""
    assert f"refused (409 conflict): endpoint: The endpoint already has an active deployment: deployment {first.pk} (pending)" \
        in r.stderr
    r = run("deploy", ENDPOINT, "--version", "3", "--json")
    assert r.returncode == 4
    error = json.loads(r.stdout)
    assert error["status"] == 409 and error["exit"] == 4
    assert f"deployment {first.pk} (pending)" in error["fields"]["endpoint"][0] and "409 conflict" in error["error"]
    assert Deployment.objects.count() == 1


def test_bad_input_is_refused_with_the_field(run, endpoint):
    r = run("deploy", ENDPOINT, "--version", "2", "--canary-percent", "150", "--json")
    assert r.returncode == 4, r.stdout + r.stderr
    error = json.loads(r.stdout)
    assert error["status"] == 400 and list(error["fields"]) == ["canary_percent"]
    r = run("deploy", ENDPOINT, "--version", "9")
    assert r.returncode == 4 and "version: fraud-scorer has no version 9." in r.stderr, r.stderr
    r = run("deploy", "vision.nope", "--version", "2", "--start-at", "yesterday")
    assert r.returncode == 4 and "start_at" in r.stderr
    r = run("status", "999", "--json")
    assert r.returncode == 4 and json.loads(r.stdout)["status"] == 404
    assert not Deployment.objects.exists()


def test_deploy_sends_only_what_was_given(run, endpoint):
    r = run("deploy", ENDPOINT, "--version", "2", "--steps", "10:30,50:60,100:0", "--max-p99-ratio", "1.2",
            "--min-requests", "20", "--interval", "5", "--window", "30", "--failures-to-breach", "3", "--no-guard",
            "--deadline", "3600", "--rollback-window", "0", "--reason", "nightly", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(r.stdout)
    assert d["strategy"] == "steps" and d["steps"] == [{"percent": 10, "bake_s": 30}, {"percent": 50, "bake_s": 60},
                                                         {"percent": 100, "bake_s": 0}]
    assert d["gates"] == {"max_error_ratio": 0.05, "max_p99_ms": None, "max_p99_ratio": 1.2, "custom": [],
                          "min_requests": 20, "interval_s": 5, "window_s": 30, "failures_to_breach": 3, "guard": False}
    assert d["rollback_window_s"] == 0 and d["deadline_at"] and d["reason"] == "nightly"
    assert d["approval_required"] is False and d["placement"] == "same_servers"


def test_plan_starts_nothing(run, endpoint):
    r = run("deploy", ENDPOINT, "--version", "2", "--strategy", "linear", "--step-percent", "25", "--bake", "30",
            "--plan")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "plan: vision.fraud-scorer v1 → v2 on cpu-1, cpu-2"
    assert [line.split()[1] for line in lines if line.startswith("  step ")] == ["1", "2", "3"]
    assert lines[-1].startswith("projected 123 s to promotion; GPU devices: 0 held now"), lines[-1]
    r = run("deploy", ENDPOINT, "--version", "2", "--plan", "--json")
    plan = json.loads(r.stdout)
    assert r.returncode == 0 and plan["green_version"] == 2 and plan["plan"]["over_quota"] is False
    assert not Deployment.objects.exists()


def test_actions_exit_0_when_accepted_and_4_when_the_state_does_not_allow_them(run, endpoint):
    d = to_analyzing(deploy(run, "--version", "2"))
    r = run("approve", str(d.pk))
    assert r.returncode == 4, r.stdout + r.stderr
    assert "refused (409 conflict): state: A deployment that is analyzing cannot be approved" in r.stderr
    r = run("promote", str(d.pk), "--reason", "looks good", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    promoted = json.loads(r.stdout)
    assert (promoted["state"], promoted["traffic_percent"]) == ("promoting", 100)
    assert promoted["history"][-1]["reason"] == "looks good" and promoted["history"][-1]["source"] == "cli"
    assert VersionLabel.objects.get(model=d.model, name="stable").version.version == 2
    r = run("promote", str(d.pk), "--json")
    assert r.returncode == 4 and json.loads(r.stdout)["fields"] == {
        "state": ["A deployment that is promoting cannot be promoted (only while green takes traffic)."]}
    d = step(Deployment.objects.get(pk=d.pk), Event.OK)  # promoting -> succeeded
    r = run("rollback", str(d.pk), "--reason", "p99 doubled")  # the fast rollback, within the window
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == f"deployment {d.pk}: rollback accepted; now rolling_back  0% to green"
    assert VersionLabel.objects.get(model=d.model, name="stable").version.version == 1
    r = run("abort", str(d.pk))
    assert r.returncode == 4 and "rolling back cannot be aborted" in r.stderr, r.stderr
    d = step(Deployment.objects.get(pk=d.pk), Event.OK)
    assert d.state == "rolled_back"
    r = run("status", str(d.pk))
    assert r.returncode == 0 and "  state:    rolled_back" in r.stdout and "  cause:    rollback" in r.stdout, r.stdout
    r = run("status", str(d.pk), "--wait")  # already over: exits with its outcome at once
    assert r.returncode == 2, r.stdout + r.stderr

    # approve: accepted while awaiting approval
    d = to_analyzing(deploy(run, "--version", "2", "--approval"))
    d = step(d, Event.HOLD)
    r = run("approve", str(d.pk), "--reason", "ok by oncall")
    assert r.returncode == 0, r.stdout + r.stderr
    assert Deployment.objects.get(pk=d.pk).state == "promoting"
    step(Deployment.objects.get(pk=d.pk), Event.OK)
    Placement.objects.update(versions=[1, 2])  # as the worker leaves it: green loaded beside blue; v2 is blue now

    # resume a paused one, retry a failed one, abort a running one
    d = to_analyzing(deploy(run, "--version", "3"))
    d = step(d, Event.NO_DATA)
    assert run("resume", str(d.pk)).returncode == 0
    assert run("resume", str(d.pk)).returncode == 4
    assert run("retry", str(d.pk)).returncode == 4
    assert run("abort", str(d.pk), "--reason", "enough").returncode == 0
    d = step(Deployment.objects.get(pk=d.pk), Event.OK)
    assert d.state == "aborted" and d.cause == "abort"
    d = step(step(step(deploy(run, "--version", "3"), Event.BEGIN), Event.ERROR), Event.OK)
    assert d.state == "failed"
    r = run("retry", str(d.pk), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["state"] == "pending", r.stdout
    assert AuditEvent.objects.filter(action="deployment.retry", source="cli").count() == 1


def test_cancel_a_scheduled_deployment(run, endpoint):
    later = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    d = deploy(run, "--version", "2", "--start-at", later)
    assert d.state == "scheduled"
    r = run("cancel", str(d.pk), "--reason", "freeze")
    assert r.returncode == 0 and "cancel accepted; now cancelled" in r.stdout, r.stdout + r.stderr
    r = run("cancel", str(d.pk))
    assert r.returncode == 4
    assert run("status", str(d.pk), "--wait").returncode == 2


def test_a_bad_token_is_a_refusal(run, cli_env):
    r = run("status", "1", "--json", env={**cli_env, "SWITCHYARD_TOKEN": "sy_nope_nope"})
    assert r.returncode == 4, r.stdout + r.stderr
    assert json.loads(r.stdout)["status"] == 401
