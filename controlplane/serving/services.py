"""Writes to serving configs. Each new revision writes its audit event in the same transaction.

Revisions are immutable and numbered 1, 2, ... per model. The number is taken under a row lock
on the model, so two concurrent saves get consecutive numbers instead of an IntegrityError.
"""
from django.core.exceptions import ValidationError
from django.db import transaction

from controlplane.accounts.access import authorize
from controlplane.accounts.models import Role
from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record
from controlplane.registry.models import Model
from controlplane.serving import selectors
from controlplane.serving.models import ServingConfig
from controlplane.serving.validation import spec_errors, validate_spec

MAX_REASON = 2000


def serving_config_save(*, actor: Actor, model: Model, spec, reason: str) -> ServingConfig:
    """Validate ``spec`` and store it as the model's next revision. A reason is required: a config
    change alters how every server runs the model, so the audit log says why, as for a rollback.

    Team admins only ("team admin: manages the team's serving configs"). When the normalised
    spec equals the current revision's, nothing is written and the current revision is returned:
    the result's ``created`` attribute says which happened, so that a retried save is harmless.
    Validation errors are keyed ``spec.<field path>`` (``spec.instance_group[0].count``).
    """
    authorize(actor, model.team, Role.ADMIN)
    errors = {}  # the reason's and the spec's problems together, so one round trip shows both
    try:
        reason = _reason(reason)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        normalised = validate_spec(spec, model=model)
    except ValidationError as exc:
        errors.update(spec_errors(exc))
    if errors:
        raise ValidationError(errors)
    return _write_revision(actor=actor, model=model, spec=normalised, reason=reason, action="serving_config.save")


def serving_config_rollback(*, actor: Actor, model: Model, revision: int, reason: str) -> ServingConfig:
    """Write a new revision equal to an old one (history only grows). A reason is required.

    The old spec is validated again, in case the rules have tightened since it was saved. If it
    equals the current revision, nothing is written (``created`` is False).
    """
    authorize(actor, model.team, Role.ADMIN)
    reason = _reason(reason)
    target = model.serving_configs.filter(revision=revision).first() if _is_revision(revision) else None
    if target is None:
        raise ValidationError({"revision": f"Model {model} has no serving config revision {revision!r}."})
    try:
        normalised = validate_spec(target.spec, model=model)
    except ValidationError as exc:
        raise ValidationError({"revision": f"Revision {revision} no longer passes validation: "
                               + "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())}) from None
    return _write_revision(actor=actor, model=model, spec=normalised, reason=reason, action="serving_config.rollback",
                           restored=revision)


def _write_revision(*, actor, model, spec, reason, action, restored=None) -> ServingConfig:
    with transaction.atomic():
        Model.objects.select_for_update().only("pk").get(pk=model.pk)
        current = selectors.serving_config_current(model)
        if current is not None and current.spec == spec:
            current.created = False
            return current
        config = ServingConfig.objects.create(
            model=model,
            revision=(current.revision if current else 0) + 1,
            spec=spec,
            reason=reason,
            created_by=actor.user if getattr(actor.user, "is_authenticated", False) else None,
        )
        after = {"revision": config.revision, "spec": spec}
        if restored is not None:
            after["restored_revision"] = restored
        audit_record(
            actor=actor,
            action=action,
            obj=config,
            team=model.team,
            before={"revision": current.revision, "spec": current.spec} if current else None,
            after=after,
            reason=reason,
        )
    config.created = True
    return config


def _reason(reason) -> str:
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise ValidationError({"reason": "The reason must be text."})
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why you change the config; it goes into the audit log."})
    if len(reason) > MAX_REASON:
        raise ValidationError({"reason": f"Keep the reason under {MAX_REASON} characters."})
    return reason


def _is_revision(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
