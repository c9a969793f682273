"""The README's CI job (section "CLI for CI"), run as written with bash against a live server: it
uploads a version with curl, deploys it with `switchyard deploy --wait`, and acts on the exit code.
A thread moves the deployment as the worker would."""
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controlplane.audit.context import Actor
from controlplane.deployments import services
from controlplane.deployments.machine import Event
from controlplane.deployments.models import Deployment
from controlplane.registry.models import ModelVersion
from tests.cli.conftest import ENDPOINT, ROOT, Driver, step, to_analyzing

pytestmark = pytest.mark.django_db(transaction=True)


def ci_job() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## CLI for CI\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)


def wait_for_green_4(timeout=60.0) -> Deployment:
    stop = time.monotonic() + timeout
    while time.monotonic() < stop:
        d = Deployment.objects.filter(green_version__version=4).first()
        if d is not None:
            return d
        time.sleep(0.05)
    raise AssertionError("the job created no deployment of v4")


@pytest.mark.parametrize("outcome", ["succeeded", "rolled_back", "refused", "timed_out"])
def test_the_readme_ci_job(outcome, live_server, endpoint, token, s3, tmp_path, team_admin):
    build = tmp_path / "build" / "fraud-scorer" / "4"
    build.mkdir(parents=True)
    (build / "model.py").write_text("print('v4')\n")
    script = re.sub(r"^MODEL_ID=\d+", f"MODEL_ID={endpoint.model_id}", ci_job(), flags=re.MULTILINE)
    if outcome == "timed_out":  # nothing moves it: the job stops waiting, then aborts it
        script = script.replace("--timeout 4500", "--timeout 2")
    if outcome == "refused":  # another deployment holds the endpoint
        services.deployment_create(actor=Actor(user=team_admin, source="api"), data={"endpoint": ENDPOINT, "version": 2})

    def script_(d):
        d = to_analyzing(d, pause=0.2)
        if outcome == "succeeded":
            d = step(d, Event.LAST_PASS, traffic_percent=100)
        else:
            d = step(d, Event.BREACH, reason="gate breached 2 times in a row: error_ratio fail")
        step(d, Event.OK)

    driver = Driver(lambda _: script_(wait_for_green_4()))
    if outcome in ("succeeded", "rolled_back"):
        driver.start()
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "SWITCHYARD_URL": live_server.url,
           "SWITCHYARD_TOKEN": token, "BUILD_NUMBER": "4", "HOME": str(tmp_path)}
    r = subprocess.run(["bash", "-c", script], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    if outcome in ("succeeded", "rolled_back"):
        driver.finish()
    assert ModelVersion.objects.get(model=endpoint.model, version=4).status == "ready"
    if outcome == "succeeded":
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.splitlines()[-1] == "v4 is live on vision.fraud-scorer"
        assert Deployment.objects.get(green_version__version=4).reason == "CI build 4"
    elif outcome == "rolled_back":
        assert r.returncode == 2, r.stdout + r.stderr
        assert "v4 was rolled back" in r.stderr and " rolled_back" in r.stdout
    elif outcome == "timed_out":
        assert r.returncode == 3, r.stdout + r.stderr
        d = Deployment.objects.get(green_version__version=4)
        assert "timed out after 2 s" in r.stdout and f"deployment {d.pk} failed, or this job stopped waiting" in r.stderr
        assert (d.state, d.cause) == ("rolling_back", "abort")
        assert d.transitions.last().reason == "CI job 4 gave up"
    else:
        assert r.returncode == 4, r.stdout + r.stderr
        assert "Switchyard refused the deployment" in r.stderr and "already has an active deployment" in r.stdout
