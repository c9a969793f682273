"""Layering rules from the design notes, checked on the source."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_only_services_and_tasks_import_the_triton_client():
    offenders = []
    for path in [*ROOT.joinpath("controlplane").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py")]:
        if path.name == "triton_client.py" or "devstack" in path.parts:
            continue
        if any("triton_client" in name or name.startswith("tritonclient") for name in _imports(path)):
            is_service = path.name == "services.py" or path.parent.name == "services"
            if not is_service and "workers" not in path.parts:
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_views_and_serializers_do_not_write_models_directly():
    """Writes go through services, which audit them."""
    for path in ROOT.joinpath("controlplane").rglob("*.py"):
        if path.name not in ("views.py", "api.py"):
            continue
        source = path.read_text()
        for call in (".objects.create(", ".save(", ".delete(", ".objects.update(", "bulk_create("):
            assert call not in source, f"{path.relative_to(ROOT)} writes with {call}"


def test_services_may_be_a_package_of_seams():
    """A services/ package counts as services: its modules may talk to Triton, no others may."""
    package = ROOT / "controlplane" / "placements" / "services"
    assert (package / "__init__.py").is_file() and not (ROOT / "controlplane" / "placements" / "services.py").exists()
    talking = sorted(p.name for p in package.glob("*.py") if any("triton_client" in n for n in _imports(p)))
    assert talking == ["execution.py", "live.py", "reconciler.py"]

