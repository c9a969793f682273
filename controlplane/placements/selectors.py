from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from controlplane.accounts.selectors import visible_teams
from controlplane.fleet.models import Server
from controlplane.placements.models import Placement, PlacementTarget, ReconcileRun
from controlplane.registry.models import Model
from controlplane.serving.models import ServingConfig


def _targets() -> QuerySet[PlacementTarget]:
    return PlacementTarget.objects.select_related("server").order_by("server_name", "id")


def placements_visible(user) -> QuerySet[Placement]:
    """Placements of the caller's teams, each with its targets, in a constant number of queries."""
    return (
        Placement.objects.filter(model__team__in=visible_teams(user))
        .select_related("model__team", "config", "created_by")
        .prefetch_related(Prefetch("targets", queryset=_targets()))
        .order_by("-id")
    )


def placement_get(user, pk) -> Placement:
    """404 for placements of other teams, exactly as for missing ones."""
    return get_object_or_404(placements_visible(user), pk=pk)


def placements_of_model(model: Model) -> QuerySet[Placement]:
    """The model's active placements, newest first."""
    return (
        Placement.objects.filter(model=model, removed_at__isnull=True)
        .select_related("model__team", "config", "created_by")
        .prefetch_related(Prefetch("targets", queryset=_targets().exclude(state="removed")))
        .order_by("-id")
    )


def placements_removed_of_model(model: Model, limit: int = 5) -> list[Placement]:
    return list(Placement.objects.filter(model=model, removed_at__isnull=False).select_related("config").order_by("-removed_at")[:limit])


def reconcile_last() -> ReconcileRun | None:
    return ReconcileRun.objects.order_by("-id").first()


def extras_of_model(run: ReconcileRun | None, model: Model) -> list[dict]:
    """Servers where the last reconcile found this model loaded without a placement wanting it."""
    if run is None:
        return []
    return [e for e in run.report.get("extra", []) if e.get("model") == model.triton_name]


def target_summary(targets) -> dict[str, int]:
    counts: dict[str, int] = {}
    for target in targets:
        counts[target.state] = counts.get(target.state, 0) + 1
    return counts


# What a placement request names, resolved once for the API and the UI form.

def servers_named(names: list[str]) -> list[Server]:
    """Unknown names become unsaved servers, which placement_create reports after its permission
    check, so an outsider learns nothing about the fleet from the error."""
    found = {s.name: s for s in Server.objects.filter(name__in=names)}
    return [found.get(n) or Server(name=n) for n in names]


def config_of_model(model: Model, revision: int | None) -> ServingConfig | None:
    """The model's config revision ``revision``; None (no revision asked) means the current one."""
    if revision is None:
        return None
    config = ServingConfig.objects.filter(model=model, revision=revision).first()
    if config is None:
        raise ValidationError({"config_revision": f"{model.name} has no config revision {revision}."})
    return config
