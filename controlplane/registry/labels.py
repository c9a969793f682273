"""Version labels: create, move and delete, with history. ``latest`` is computed, never stored."""
import re

from django.core.exceptions import ValidationError
from django.db import transaction

from controlplane.accounts.access import authorize
from controlplane.accounts.models import Role
from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record
from controlplane.common.errors import Conflict
from controlplane.endpoints.publication import request_publish
from controlplane.registry.models import (
    LABEL_NAME_RE,
    RESERVED_LABELS,
    LabelMove,
    Model,
    ModelVersion,
    VersionLabel,
    VersionStatus,
)

MAX_REASON = 1000
_UNSET = object()


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not re.match(LABEL_NAME_RE, name):
        raise ValidationError({"name": "A label is 1-31 characters: a lowercase letter, then lowercase letters, digits or '-'."})
    if name in RESERVED_LABELS:
        raise ValidationError({"name": f"{name!r} is reserved: it always means the highest ready version."})
    return name


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why: moving a label is a release."})
    if len(reason) > MAX_REASON:
        raise ValidationError({"reason": f"Keep the reason under {MAX_REASON} characters."})
    return reason


def _ready_version(model: Model, number) -> ModelVersion:
    if isinstance(number, bool) or not isinstance(number, int):
        raise ValidationError({"version": "Give the version number as an integer."})
    version = ModelVersion.objects.filter(model=model, version=number, status=VersionStatus.READY).first()
    if version is None:
        raise ValidationError({"version": f"{model} has no registered, validated version {number}."})
    return version


def _record(actor, model, name, old: ModelVersion | None, new: ModelVersion | None, reason: str, action: str, obj):
    LabelMove.objects.create(
        model=model, label=name, from_version=old, to_version=new, actor_user=actor.user, actor_name=actor.name,
        source=actor.source, reason=reason,
    )
    audit_record(
        actor=actor,
        action=action,
        obj=obj,
        team=model.team,
        before={"label": name, "version": old.version} if old else None,
        after={"label": name, "version": new.version} if new else None,
        reason=reason,
    )
    request_publish()  # a label-bound endpoint follows it, and every endpoint lists the labels


def label_set(*, actor: Actor, model: Model, name: str, version: int, reason: str, expected_version=_UNSET) -> tuple[VersionLabel, bool]:
    """Point ``name`` at ``version`` (creating the label if needed). Returns (label, changed).

    ``expected_version`` (a number, or None for "the label must not exist yet") makes the move
    conditional, so a release click or a CI step never silently overrides someone else's move.
    """
    authorize(actor, model.team, Role.DEPLOYER)
    name, reason = _check_name(name), _check_reason(reason)
    target = _ready_version(model, version)
    with transaction.atomic():
        Model.objects.select_for_update().filter(pk=model.pk).first()
        label = VersionLabel.objects.select_related("version").filter(model=model, name=name).first()
        current = label.version.version if label else None
        if expected_version is not _UNSET and expected_version != current:
            if expected_version is None:
                message = f"{name} already exists and points at v{current}; move it instead."
            elif current is None:
                message = f"{name} does not exist (any more); someone deleted it. Reload and try again."
            else:
                message = f"{name} points at v{current}, not v{expected_version}; someone moved it. Reload and try again."
            raise Conflict("expected_version", message)
        if label and label.version_id == target.pk:
            return label, False
        old = label.version if label else None
        if label is None:
            label = VersionLabel.objects.create(model=model, name=name, version=target)
        else:
            label.version = target
            label.save(update_fields=["version", "updated_at"])
        _record(actor, model, name, old, target, reason, "label.move" if old else "label.create", label)
    return label, True


def label_delete(*, actor: Actor, model: Model, name: str, reason: str) -> None:
    authorize(actor, model.team, Role.DEPLOYER)
    reason = _check_reason(reason)
    with transaction.atomic():
        Model.objects.select_for_update().filter(pk=model.pk).first()
        label = VersionLabel.objects.select_related("version").filter(model=model, name=name).first()
        if label is None:
            raise ValidationError({"name": f"{model} has no label {name!r}."})
        _record(actor, model, name, label.version, None, reason, "label.delete", label)
        label.delete()
