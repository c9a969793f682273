"""`make demo` seeds through the real services; run that seed on real parts so the demo cannot rot."""
import io

import pytest
from django.core.management import call_command

from controlplane.audit.selectors import audit_chain_verify
from controlplane.fleet.models import Server, ServerStatus
from controlplane.placements.models import PlacementTarget
from controlplane.registry.models import ModelVersion, VersionLabel

pytestmark = pytest.mark.integration


def test_seed_demo_loads_a_placement_on_a_real_triton(db, s3, disposable_triton):
    t = disposable_triton
    out = io.StringIO()
    call_command("seed_demo", "--servers", f"triton-1={t.http_url}|{t.grpc_url}|{t.metrics_url}", "--password", "pw", stdout=out)
    assert "1 placement" in out.getvalue()
    assert ModelVersion.objects.count() == 5
    assert dict(VersionLabel.objects.values_list("name", "version__version")) == {"stable": 2, "canary": 3}
    target = PlacementTarget.objects.get()
    assert (target.server_name, target.state) == ("triton-1", "ready")
    server = Server.objects.get(name="triton-1")
    assert server.status == ServerStatus.UP
    loaded = {(e["name"], e["version"], e["state"]) for e in server.repository_index}
    assert ("vision.fraud-scorer", "2", "READY") in loaded
    assert audit_chain_verify().ok
