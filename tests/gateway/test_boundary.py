"""The gateway is its own process kind: nothing in gateway/ may pull in Django or the control
plane. The routing table (gateway/table.py) is the only contract between the two."""
import json
import re
import subprocess
import sys
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
FORBIDDEN = re.compile(r"^\s*(?:import\s+(?:django|controlplane)\b|from\s+(?:django|controlplane)\b)", re.MULTILINE)


def gateway_modules() -> list[str]:
    return sorted(f"gateway.{p.stem}" for p in GATEWAY.glob("*.py") if p.stem not in ("__init__", "__main__"))


def test_importing_every_gateway_module_loads_neither_django_nor_the_control_plane():
    modules = gateway_modules()
    assert {"gateway.server", "gateway.proxy", "gateway.upstream", "gateway.table"} <= set(modules)
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'controlplane'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, cwd=GATEWAY.parent, capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(GATEWAY.parent)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_no_gateway_source_imports_django_or_the_control_plane():
    offenders = [str(p.name) for p in GATEWAY.rglob("*.py") if FORBIDDEN.search(p.read_text())]
    assert offenders == []
    assert FORBIDDEN.search("x = 1\nfrom controlplane.endpoints import models\n")  # the pattern bites
    assert FORBIDDEN.search("    import django.conf\n")
