"""The README's upload recipe, run as written (tar and curl) against a live server (issue 7, item 7)."""
import re
import subprocess
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor
from tests.fleet_fixtures import TEST_BUCKET

README = Path(__file__).resolve().parents[2] / "README.md"


def _recipe() -> list[str]:
    """The README's `tar czf ...` line and the `curl ... -F archive=@...` line after it."""
    lines = README.read_text().splitlines()
    tar = next(i for i, line in enumerate(lines) if line.startswith("tar czf "))
    curl = next(line for line in lines[tar:] if line.startswith("curl ") and "archive=@" in line)
    return [lines[tar], curl]


def test_the_readme_tar_and_curl_recipe_registers_a_version(live_server, deployer, model, s3, tmp_path):
    tar_line, curl_line = _recipe()
    build = tmp_path / re.search(r"-C (\S+)", tar_line).group(1)
    (build / "labels").mkdir(parents=True)
    (build / "model.py").write_bytes(b"print('v3')")
    (build / "labels" / "classes.txt").write_bytes(b"cat\ndog\n")
    _, secret = token_create(actor=Actor(user=deployer, source="api"), user=deployer, name="ci", scopes=["deploy"],
                             expires_at=timezone.now() + timedelta(days=1))
    curl_line = re.sub(r"/models/\d+/", f"/models/{model.pk}/", curl_line)
    env = {"API": f"{live_server.url}/api/v1", "AUTH": f"Authorization: Bearer {secret}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(["bash", "-euc", f"{tar_line}\n{curl_line}"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout
    assert '"version":3' in result.stdout.replace(" ", "")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="repo/vision.fraud-scorer/3/")["Contents"])
    assert keys == ["repo/vision.fraud-scorer/3/labels/classes.txt", "repo/vision.fraud-scorer/3/model.py"]
