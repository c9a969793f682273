"""Chart markers: a deployment's traffic shifts, pauses, promotion and rollback appear in the
series API's `markers` for its endpoint and its model, and for no other team's caller."""
import pytest

from controlplane.deployments.machine import Event, State
from tests.deployments.conftest import create, drive, step

pytestmark = pytest.mark.django_db

SERIES = "/api/v1/metrics/series/"


def _markers(client, scope):
    response = client.get(SERIES, {"series": "requests", "scope": scope, "range": "1h"})
    assert response.status_code == 200, response.json()
    return [m["text"] for m in response.json()["markers"]]


def test_shifts_pauses_and_rollbacks_are_markers_of_the_endpoint_and_the_model(
        as_deployer, label_endpoint, model, tokens, deployer, outsider, settings):
    settings.SWITCHYARD_PROMETHEUS_URL = ""  # markers come from the database, charts or not
    d = drive(create(as_deployer, bake_s=1), State.ANALYZING)
    d = step(d, Event.NO_DATA)
    d = step(d, Event.RESUME)
    step(d, Event.ROLLBACK)
    client = tokens(deployer, ["read"])
    expected = [f"#{d.pk}: 10% to v2", f"#{d.pk}: paused", f"#{d.pk}: rolling back"]
    assert _markers(client, f"endpoint:{label_endpoint.pk}") == expected
    assert _markers(client, f"model:{model.pk}") == expected
    assert _markers(client, "fleet") == []
    # Another team's caller gets the same 404 as for a missing endpoint: no markers leak.
    response = tokens(outsider, ["read"]).get(SERIES, {"series": "requests", "scope": f"endpoint:{label_endpoint.pk}",
                                                       "range": "1h"})
    assert response.status_code == 404
