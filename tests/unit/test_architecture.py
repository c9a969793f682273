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


def test_controlplane_never_imports_workers():
    """Tasks import services, never the other way round: domain code queues tasks by name."""
    offenders = sorted(
        str(path.relative_to(ROOT))
        for path in ROOT.joinpath("controlplane").rglob("*.py")
        if any(name == "workers" or name.startswith("workers.") for name in _imports(path))
    )
    assert offenders == []


def test_tasks_are_queued_only_through_the_one_helper():
    """common.tasks.enqueue sends after commit and logs a broker failure; nothing else sends."""
    offenders = []
    for path in ROOT.joinpath("controlplane").rglob("*.py"):
        if path.relative_to(ROOT).as_posix() == "controlplane/common/tasks.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("send_task", "delay", "apply_async"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.attr}")
    assert offenders == []


def _enqueued_names() -> dict[str, list[str]]:
    """Every task name passed to enqueue() in controlplane/, with where; a name that is not a
    string constant is reported as such, since no test could check it."""
    found: dict[str, list[str]] = {}
    for path in ROOT.joinpath("controlplane").rglob("*.py"):
        tree = ast.parse(path.read_text())
        constants = {  # NAME = "task.name" at module level may be passed instead of the literal
            target.id: node.value.value
            for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets if isinstance(target, ast.Name) and isinstance(node.value.value, str)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called != "enqueue":
                continue
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                name = first.value
            else:
                name = constants.get(first.id, "<not a constant>") if isinstance(first, ast.Name) else "<not a constant>"
            found.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_enqueued_name_is_a_registered_task():
    from controlplane.celery import app

    app.loader.import_default_modules()  # the worker's autodiscovery: app.conf.imports
    enqueued = _enqueued_names()
    assert {"placements.apply_placement", "placements.unload_placement", "fleet.probe_server"} <= set(enqueued)
    unknown = {name: where for name, where in enqueued.items() if name not in app.tasks}
    assert unknown == {}


def test_every_scheduled_name_is_a_registered_task():
    from django.conf import settings

    from controlplane.celery import app

    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "placements.sample_live" in scheduled
    assert sorted(scheduled - set(app.tasks)) == []


_HTTP_MODULES = ("urllib.request", "urllib3", "http.client", "requests", "httpx", "aiohttp", "socket", "geventhttpclient")


def _speaks_http(names: set[str]) -> bool:
    return any(name == m or name.startswith(f"{m}.") for name in names for m in _HTTP_MODULES)


def test_only_the_prometheus_client_talks_to_prometheus():
    """Prometheus's HTTP API is spoken by controlplane/metrics/client.py alone: no other module
    names its query paths, no other module of the metrics app opens HTTP connections, and only
    the metrics app and services import the client (as with the Triton client)."""
    client = ROOT / "controlplane" / "metrics" / "client.py"
    paths = [*ROOT.joinpath("controlplane").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py")]
    naming_the_api, http_in_metrics, importers = [], [], []
    for path in paths:
        if path == client or "devstack" in path.parts:  # devstack runs Prometheus for the demo and tests
            continue
        rel = str(path.relative_to(ROOT))
        source = path.read_text()
        if "/api/v1/query" in source:
            naming_the_api.append(rel)
        names = _imports(path)
        in_metrics = path.parent.name == "metrics" and path.parent.parent.name == "controlplane"
        if in_metrics and _speaks_http(names):
            http_in_metrics.append(rel)
        if any(name == "controlplane.metrics.client" or name.startswith("controlplane.metrics.client.") for name in names):
            is_service = path.name == "services.py" or path.parent.name == "services"
            if not in_metrics and not is_service:
                importers.append(rel)
    assert naming_the_api == []
    assert http_in_metrics == []
    assert importers == []
    assert "/api/v1/query_range" in client.read_text() and _speaks_http(_imports(client))
