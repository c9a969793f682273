from django.db.models import CharField, Count, Max, Q, QuerySet
from django.db.models.functions import Cast
from django.shortcuts import get_object_or_404

from controlplane.accounts.selectors import visible_teams
from controlplane.audit.models import AuditEvent
from controlplane.registry.models import Model, ModelVersion, VersionStatus

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
    """The model's own events and those of its versions, newest first, in one query."""
    version_ids = ModelVersion.objects.filter(model=model).annotate(sid=Cast("id", CharField())).values("sid")
    return AuditEvent.objects.filter(
        Q(object_type=Model._meta.label_lower, object_id=str(model.pk))
        | Q(object_type=ModelVersion._meta.label_lower, object_id__in=version_ids)
    ).order_by("-id")
