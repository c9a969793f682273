from django.db.models import CharField, Count, Max, Q, QuerySet
from django.db.models.functions import Cast
from django.http import Http404
from django.shortcuts import get_object_or_404

from controlplane.accounts.selectors import visible_teams
from controlplane.audit.models import AuditEvent
from controlplane.registry.models import LabelMove, Model, ModelVersion, VersionLabel, VersionStatus

_READY = Q(versions__status=VersionStatus.READY)


def models_visible(user) -> QuerySet[Model]:
    return (
        Model.objects.filter(team__in=visible_teams(user))
        .select_related("team")
        .annotate(version_count=Count("versions", filter=_READY), latest_version=Max("versions__version", filter=_READY))
        .order_by("team__slug", "name")
    )


def model_get(user, pk) -> Model:
    """404 for models of other teams, exactly as for missing ones."""
    return get_object_or_404(models_visible(user), pk=pk)


def versions_of(model: Model) -> QuerySet[ModelVersion]:
    return model.versions.filter(status=VersionStatus.READY).select_related("created_by").order_by("-version")


def version_get(model: Model, number) -> ModelVersion:
    return get_object_or_404(versions_of(model), version=number)


def model_history(model: Model) -> QuerySet[AuditEvent]:
    """Events of the model and of what hangs off it (versions, labels, serving configs, placements),
    newest first, in one query."""
    from controlplane.placements.models import Placement, PlacementTarget
    from controlplane.serving.models import ServingConfig

    def ids(queryset):
        return queryset.annotate(sid=Cast("id", CharField())).values("sid")

    def of(model_class, queryset):
        return Q(object_type=model_class._meta.label_lower, object_id__in=ids(queryset))

    return AuditEvent.objects.filter(
        Q(object_type=Model._meta.label_lower, object_id=str(model.pk))
        | of(ModelVersion, ModelVersion.objects.filter(model=model))
        | of(ServingConfig, ServingConfig.objects.filter(model=model))
        | of(Placement, Placement.objects.filter(model=model))
        | of(PlacementTarget, PlacementTarget.objects.filter(model=model))
        # labels by name, so deleted labels keep their history
        | Q(object_type=VersionLabel._meta.label_lower, object_repr__startswith=f"{model}@")
    ).order_by("-id")


def labels_of(model: Model) -> list[dict]:
    """Stored labels plus the computed ``latest``, each as {name, version (ModelVersion), computed}."""
    labels = [
        {"name": label.name, "version": label.version, "computed": False, "updated_at": label.updated_at}
        for label in VersionLabel.objects.filter(model=model).select_related("version").order_by("name")
    ]
    latest = versions_of(model).first()
    if latest is not None:
        labels.append({"name": "latest", "version": latest, "computed": True, "updated_at": latest.created_at})
    return labels


def label_resolve(model: Model, name: str) -> ModelVersion:
    """The version a label points at; 404 when there is no such label."""
    if name == "latest":
        version = versions_of(model).first()
        if version is None:
            raise Http404(f"{model} has no ready version yet.")
        return version
    label = get_object_or_404(VersionLabel.objects.select_related("version"), model=model, name=name)
    return label.version


def label_history(model: Model, name: str | None = None) -> QuerySet[LabelMove]:
    moves = LabelMove.objects.filter(model=model).select_related("from_version", "to_version").order_by("-id")
    return moves.filter(label=name) if name else moves
