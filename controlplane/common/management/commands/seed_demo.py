"""Seed the demo: a platform admin, two teams, models with versions in S3, a pool, servers and an
endpoint that the demo's gateway serves."""
from datetime import timedelta
from pathlib import Path

from django.core.management.base import BaseCommand
from django.utils import timezone

from controlplane.accounts.models import Role, Scope
from controlplane.accounts.services import (
    membership_set,
    team_create,
    token_create,
    user_create,
)
from controlplane.audit.context import Actor
from controlplane.devstack.testmodels import (
    TEST_MODEL_INPUTS,
    TEST_MODEL_OUTPUTS,
    python_model_files,
)
from controlplane.endpoints.models import Access, EndpointKind
from controlplane.endpoints.services import endpoint_create
from controlplane.fleet.services import fleet_probe, pool_create, server_register
from controlplane.metrics.config import write_files
from controlplane.placements.services import placement_apply, placement_create
from controlplane.quotas.services import quota_set
from controlplane.registry.labels import label_set
from controlplane.registry.services import model_create, version_register
from controlplane.serving.services import serving_config_save

IO = {"inputs": TEST_MODEL_INPUTS, "outputs": TEST_MODEL_OUTPUTS}
# fraud-scorer's versions and their test-model knobs. v2 serves (label stable); v3 is a good,
# faster green (label canary) whose latency charts differ from v2's; v4 is deliberately bad: it
# fails every second request (its first, the warm-up, passes), so a rollout to it is rolled back
# on its own while the demo watches.
FRAUD_VERSIONS = {
    1: {"latency_ms": 8},
    2: {"latency_ms": 6},
    3: {"latency_ms": 2},
    4: {"latency_ms": 6, "failure_rate": 0.5, "failure_mode": "error_response"},
}


class Command(BaseCommand):
    help = "Seed demo data (used by `make demo`)."

    def add_arguments(self, parser):
        parser.add_argument("--servers", default="", help="name=http_url|grpc|metrics, comma-separated")
        parser.add_argument("--password", required=True)
        parser.add_argument("--prometheus-token-file", default="",
                            help="write a read token of the admin here, for the demo's Prometheus (discovery)")

    def handle(self, *args, servers: str, password: str, prometheus_token_file: str = "", **options):
        system = Actor.system()
        admin = user_create(actor=system, username="admin", password=password, is_staff=True, is_superuser=True)
        actor = Actor(user=admin, source="system")
        vision = team_create(actor=actor, slug="vision", display_name="Vision")
        speech = team_create(actor=actor, slug="speech", display_name="Speech")
        for team in (vision, speech):
            membership_set(actor=actor, team=team, user=admin, role=Role.ADMIN)

        fraud = model_create(actor=actor, team=vision, name="fraud-scorer", backend="python", max_batch_size=8,
                             description="Scores card transactions. Demo model: a numpy-only Python backend.", **IO)
        for number, knobs in FRAUD_VERSIONS.items():
            version_register(actor=actor, model=fraud, version=number, contents=python_model_files(version=number, **knobs),
                             metadata=dict(knobs))
        label_set(actor=actor, model=fraud, name="stable", version=2, reason="demo: the version in production")
        label_set(actor=actor, model=fraud, name="canary", version=3, reason="demo: trying the faster v3")
        ranker = model_create(actor=actor, team=vision, name="image-ranker", backend="python", max_batch_size=16, **IO)
        version_register(actor=actor, model=ranker, version=1, contents=python_model_files(version=1, latency_ms=10))
        asr = model_create(actor=actor, team=speech, name="asr-small", backend="python", max_batch_size=4, **IO)
        version_register(actor=actor, model=asr, version=1, contents=python_model_files(version=1, latency_ms=20))

        quota_set(actor=actor, team=vision, gpus=8, reason="demo")
        quota_set(actor=actor, team=speech, gpus=4, reason="demo")
        pool = pool_create(actor=actor, name="cpu-local", description="tritonservers started by make demo")
        registered = []
        for spec in filter(None, servers.split(",")):
            name, urls = spec.split("=", 1)
            http_url, grpc_url, metrics_url = urls.split("|")
            registered.append(server_register(actor=actor, name=name, pool=pool, http_url=http_url, grpc_url=grpc_url,
                                              metrics_url=metrics_url, labels={"zone": "local"}))
        if registered:
            # Load the stable version where the demo can see it: batching on, two CPU instances.
            config = serving_config_save(
                actor=actor, model=fraud, reason="demo: batch up to 8 with a 2 ms window",
                spec={"dynamic_batching": {"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 2000},
                      "instance_group": [{"kind": "KIND_CPU", "count": 2}]},
            )
            placement, _ = placement_create(actor=actor, model=fraud, versions=[2], config=config,
                                            servers=registered[:2])
            placement_apply(placement_id=placement.pk, actor=system)
        # What clients call through the gateway: open, so the README's one-liner needs no token.
        endpoint_create(actor=actor, team=vision, name="fraud-scorer", model=fraud, kind=EndpointKind.LABEL,
                        label="stable", access=Access.OPEN, sticky_header="X-User-Id",
                        description="Demo: follows the stable label; open to the local network.")
        if prometheus_token_file:
            _, secret = token_create(actor=actor, user=admin, name="demo-prometheus", scopes=[Scope.READ],
                                     expires_at=timezone.now() + timedelta(days=30))
            write_files(Path(prometheus_token_file).parent, {}, token=secret, credentials_file=Path(prometheus_token_file).name)
        counts = fleet_probe(actor=system)
        self.stdout.write(f"seeded 2 teams, 3 models, 6 versions, 1 placement, 1 endpoint; fleet: {counts}")
