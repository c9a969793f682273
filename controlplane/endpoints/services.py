"""Endpoint writes: create, update and delete, each authorized, validated in one place and
audited with before and after in the transaction that makes the change. The UI forms and the API
call these; neither checks a rule of its own.

Error keys name the API's fields: ``name``, ``label``, ``variants[1].weight``, ``shadow.version``,
``sticky.header``. A model or version of a team the caller cannot see is reported as missing.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from controlplane.accounts.access import authorize
from controlplane.accounts.models import Role, Team
from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record
from controlplane.common.errors import Conflict
from controlplane.common.validators import validate_dns_name
from controlplane.endpoints.models import (
    MAX_WEIGHT,
    Access,
    Endpoint,
    EndpointKind,
    EndpointVariant,
)
from controlplane.registry.models import (
    LABEL_NAME_RE,
    Model,
    ModelVersion,
    VersionLabel,
    VersionStatus,
)
from gateway.table import COOKIE_RE, HEADER_RE, VARIANT_RE

MAX_VARIANTS = 16
MAX_DESCRIPTION = 2000
LATEST = "latest"  # the computed label: the model's highest ready version
EDITABLE = {"name", "kind", "label", "variants", "access", "sticky_header", "sticky_cookie", "shadow", "description"}


@dataclass(frozen=True)
class VariantSpec:
    """One wanted variant of a pinned endpoint: a version number of the endpoint's model."""

    name: str
    version: int
    weight: int


@dataclass(frozen=True)
class ShadowSpec:
    """Mirror ``percent`` of the requests to ``version`` (a number); answers are only compared."""

    version: int
    percent: float
    rtol: float = 1e-5
    atol: float = 1e-6


@dataclass
class _Plan:
    """The validated state of an endpoint, ready to be written."""

    name: str
    kind: str
    label: str
    access: str
    sticky_header: str
    sticky_cookie: str
    description: str
    variants: list[tuple[str, ModelVersion, int]]
    shadow: ShadowSpec | None
    shadow_version: ModelVersion | None

    def snapshot(self, team: Team, model: Model) -> dict:
        return {
            "public_name": f"{team.slug}.{self.name}",
            "name": self.name,
            "model": str(model),
            "kind": self.kind,
            "label": self.label,
            "access": self.access,
            "sticky": sticky_dict(self.sticky_header, self.sticky_cookie),
            "variants": [{"name": n, "version": v.version, "weight": w} for n, v, w in self.variants],
            "shadow": None if self.shadow is None else {
                "version": self.shadow.version, "percent": self.shadow.percent,
                "rtol": self.shadow.rtol, "atol": self.shadow.atol,
            },
            "description": self.description,
        }


def sticky_dict(header: str, cookie: str) -> dict | None:
    if header:
        return {"header": header}
    if cookie:
        return {"cookie": cookie}
    return None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


class _Errors(dict):
    def add(self, field: str, message: str) -> None:
        self.setdefault(field, []).append(message)


def _check(*, team: Team, model: Model, name, kind, label, variants, access, sticky_header, sticky_cookie,
           shadow, description) -> _Plan:
    """Every rule of an endpoint, checked together so that one refusal lists every problem."""
    errors = _Errors()
    if model.team_id != team.pk:
        # Never say whose model it is: to this caller it does not exist.
        raise ValidationError({"model": f"No such model in team {team.slug}."})
    try:
        validate_dns_name(name)
    except ValidationError as exc:
        errors.add("name", exc.messages[0])
    if kind not in EndpointKind.values:
        errors.add("kind", f"Choose {' or '.join(EndpointKind.values)}.")
    if access not in Access.values:
        errors.add("access", f"Choose {' or '.join(Access.values)}.")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        errors.add("description", f"At most {MAX_DESCRIPTION} characters.")

    # Sticky key: one header or one cookie, each an HTTP token as the gateway's table requires.
    sticky_header, sticky_cookie = sticky_header or "", sticky_cookie or ""
    if sticky_header and not (isinstance(sticky_header, str) and HEADER_RE.match(sticky_header)):
        errors.add("sticky.header", "A header name: 1-64 letters, digits or !#$%&'*+.^_`|~- (such as X-User-Id).")
    if sticky_cookie and not (isinstance(sticky_cookie, str) and COOKIE_RE.match(sticky_cookie)):
        errors.add("sticky.cookie", "A cookie name: 1-64 letters, digits or !#$%&'*+.^_`|~- (such as uid).")
    if sticky_header and sticky_cookie:
        errors.add("sticky", "Hash a header or a cookie, not both.")

    serving: list[int] = []  # version numbers that take traffic, for the shadow check
    rows: list[tuple[str, ModelVersion, int]] = []
    label = label or ""
    variants = list(variants or [])
    if kind == EndpointKind.LABEL:
        if variants:
            errors.add("variants", "A label-bound endpoint has no variants of its own: it serves the version its label points at.")
        resolved = _label_version(model, label, errors)
        if resolved is not None:
            serving.append(resolved.version)
    elif kind == EndpointKind.PINNED:
        if label:
            errors.add("label", "A pinned endpoint follows no label; leave it empty, or make the endpoint label-bound.")
        rows = _check_variants(model, variants, errors)
        serving = [v.version for _, v, _ in rows]

    shadow_version = None
    if shadow is not None:
        shadow_version = _check_shadow(model, shadow, serving, errors)
    if errors:
        raise ValidationError(dict(errors))
    return _Plan(
        name=name, kind=kind, label=label, access=access, sticky_header=sticky_header, sticky_cookie=sticky_cookie,
        description=description, variants=rows, shadow=shadow, shadow_version=shadow_version,
    )


def _label_version(model: Model, label, errors: _Errors) -> ModelVersion | None:
    """The version a label points at now. A label-bound endpoint may only follow a label the model
    has: an endpoint that points at nothing from its first second is a typo, not a plan."""
    if not isinstance(label, str) or not label:
        errors.add("label", "Name the label this endpoint follows, such as stable.")
        return None
    if not re.match(LABEL_NAME_RE, label):
        errors.add("label", "A label is 1-31 characters: a lowercase letter, then lowercase letters, digits or '-'.")
        return None
    if label == LATEST:
        version = ModelVersion.objects.filter(model=model, status=VersionStatus.READY).order_by("-version").first()
        if version is None:
            errors.add("label", f"{model.name} has no ready version yet, so latest points at nothing.")
        return version
    found = VersionLabel.objects.filter(model=model, name=label).select_related("version").first()
    if found is None:
        errors.add("label", f"{model.name} has no label {label!r}; set it on the model page first.")
        return None
    return found.version


def _ready_versions(model: Model, numbers) -> dict[int, ModelVersion]:
    wanted = [n for n in numbers if _is_int(n)]
    return {v.version: v for v in ModelVersion.objects.filter(model=model, version__in=wanted, status=VersionStatus.READY)}


def _check_variants(model: Model, variants: list, errors: _Errors) -> list[tuple[str, ModelVersion, int]]:
    if not 1 <= len(variants) <= MAX_VARIANTS:
        errors.add("variants", f"A pinned endpoint has 1 to {MAX_VARIANTS} variants.")
        return []
    found = _ready_versions(model, [getattr(v, "version", None) for v in variants])
    rows, names, numbers, total = [], set(), set(), 0
    for i, variant in enumerate(variants):
        at = f"variants[{i}]"
        name, number, weight = variant.name, variant.version, variant.weight
        if not isinstance(name, str) or not VARIANT_RE.match(name):
            errors.add(f"{at}.name", "1-63 characters: a letter or digit, then letters, digits, '_', '.' or '-'.")
        elif name in names:
            errors.add(f"{at}.name", f"Two variants are named {name}.")
        names.add(name)
        version = found.get(number) if _is_int(number) else None
        if not _is_int(number):
            errors.add(f"{at}.version", "A version number, such as 3.")
        elif version is None:
            errors.add(f"{at}.version", f"{model.name} has no registered, ready version {number}.")
        elif number in numbers:
            errors.add(f"{at}.version", f"v{number} is already another variant; give it one variant with the summed weight.")
        numbers.add(number)
        if not _is_int(weight) or not 0 <= weight <= MAX_WEIGHT:
            errors.add(f"{at}.weight", f"A whole number from 0 to {MAX_WEIGHT}.")
        else:
            total += weight
        if version is not None and _is_int(weight):
            rows.append((name, version, weight))
    if len(rows) == len(variants) and total <= 0:
        errors.add("variants", "The weights add up to 0: give at least one variant some traffic.")
    return rows


def _check_shadow(model: Model, shadow: ShadowSpec, serving: list[int], errors: _Errors) -> ModelVersion | None:
    version = None
    if not _is_int(shadow.version):
        errors.add("shadow.version", "A version number, such as 4.")
    else:
        version = _ready_versions(model, [shadow.version]).get(shadow.version)
        if version is None:
            errors.add("shadow.version", f"{model.name} has no registered, ready version {shadow.version}.")
        elif shadow.version in serving:
            errors.add("shadow.version", f"v{shadow.version} already serves this endpoint; shadow another version.")
    if not _is_number(shadow.percent) or not 0 <= shadow.percent <= 100:
        errors.add("shadow.percent", "A number from 0 to 100.")
    for part in ("rtol", "atol"):
        if not _is_number(getattr(shadow, part)) or getattr(shadow, part) < 0:
            errors.add(f"shadow.{part}", "A number of 0 or more.")
    return version


def _spec_of(endpoint: Endpoint) -> dict:
    """The endpoint's current state in the services' terms, to merge a partial update into."""
    variants = [VariantSpec(v.name, v.version.version, v.weight)
                for v in endpoint.variants.select_related("version").order_by("position", "id")]
    shadow = None
    if endpoint.shadow_version_id:
        shadow = ShadowSpec(endpoint.shadow_version.version, endpoint.shadow_percent, endpoint.shadow_rtol, endpoint.shadow_atol)
    return {
        "name": endpoint.name, "kind": endpoint.kind, "label": endpoint.label, "variants": variants,
        "access": endpoint.access, "sticky_header": endpoint.sticky_header, "sticky_cookie": endpoint.sticky_cookie,
        "shadow": shadow, "description": endpoint.description,
    }


def _write(endpoint: Endpoint, plan: _Plan) -> None:
    for field in ("name", "kind", "label", "access", "sticky_header", "sticky_cookie", "description"):
        setattr(endpoint, field, getattr(plan, field))
    endpoint.shadow_version = plan.shadow_version
    shadow = plan.shadow or ShadowSpec(version=0, percent=0.0)
    endpoint.shadow_percent, endpoint.shadow_rtol, endpoint.shadow_atol = shadow.percent, shadow.rtol, shadow.atol
    endpoint.save()
    endpoint.variants.all().delete()
    EndpointVariant.objects.bulk_create([
        EndpointVariant(endpoint=endpoint, name=name, version=version, weight=weight, position=position)
        for position, (name, version, weight) in enumerate(plan.variants)
    ])


def _duplicate(team: Team, name: str) -> Conflict:
    return Conflict("name", f"Team {team.slug} already has an endpoint named {name}.")


def _publish() -> None:
    """Ask for a new routing table; it is built once, after the change commits."""
    from controlplane.endpoints.publication import (
        request_publish,  # publication builds from these models
    )

    request_publish()


def endpoint_create(*, actor: Actor, team: Team, name: str, model: Model, kind: str, label: str = "",
                    variants: Sequence[VariantSpec] = (), access: str = Access.TOKEN, sticky_header: str = "",
                    sticky_cookie: str = "", shadow: ShadowSpec | None = None, description: str = "") -> Endpoint:
    """Create an endpoint of ``team`` serving ``model``. A name the team already uses is a 409."""
    authorize(actor, team, Role.DEPLOYER)
    plan = _check(team=team, model=model, name=name, kind=kind, label=label, variants=variants, access=access,
                  sticky_header=sticky_header, sticky_cookie=sticky_cookie, shadow=shadow, description=description)
    if Endpoint.objects.filter(team=team, name=plan.name).exists():
        raise _duplicate(team, plan.name)
    endpoint = Endpoint(team=team, model=model, created_by=actor.user)
    try:
        with transaction.atomic():
            _write(endpoint, plan)
            audit_record(actor=actor, action="endpoint.create", obj=endpoint, team=team, after=plan.snapshot(team, model))
            _publish()
    except IntegrityError:
        if Endpoint.objects.filter(team=team, name=plan.name).exists():  # created meanwhile
            raise _duplicate(team, plan.name) from None
        raise
    return endpoint


def endpoint_update(*, actor: Actor, endpoint: Endpoint, **changes) -> bool:
    """Change some of an endpoint's fields (``EDITABLE``); the rest keep their values. ``variants``
    replaces the whole list. Making an endpoint label-bound drops its variants, pinning it drops its
    label. Returns whether anything differed; when nothing does, nothing is written or audited.
    The team and the model are fixed: serve another model from another endpoint."""
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    team = endpoint.team
    authorize(actor, team, Role.DEPLOYER)
    try:
        with transaction.atomic():
            locked = (Endpoint.objects.select_for_update(of=("self",))
                      .select_related("team", "model__team", "shadow_version").get(pk=endpoint.pk))
            current = _spec_of(locked)
            wanted = {**current, **changes}
            if changes.get("kind") == EndpointKind.LABEL and "variants" not in changes:
                wanted["variants"] = []
            if changes.get("kind") == EndpointKind.PINNED and "label" not in changes:
                wanted["label"] = ""
            before = _stored_snapshot(locked, current)
            plan = _check(team=team, model=locked.model, **wanted)
            after = plan.snapshot(team, locked.model)
            if after == before:
                return False
            if plan.name != locked.name and Endpoint.objects.filter(team=team, name=plan.name).exists():
                raise _duplicate(team, plan.name)
            _write(locked, plan)
            audit_record(actor=actor, action="endpoint.update", obj=locked, team=team, before=before, after=after)
            _publish()
    except IntegrityError:
        if Endpoint.objects.filter(team=team, name=changes.get("name")).exclude(pk=endpoint.pk).exists():
            raise _duplicate(team, changes["name"]) from None
        raise
    endpoint.refresh_from_db()
    return True


def _stored_snapshot(endpoint: Endpoint, current: dict) -> dict:
    """The stored state as a snapshot, without re-validating it (a label may have gone since)."""
    variants = list(endpoint.variants.select_related("version").order_by("position", "id"))
    plan = _Plan(
        name=current["name"], kind=current["kind"], label=current["label"], access=current["access"],
        sticky_header=current["sticky_header"], sticky_cookie=current["sticky_cookie"],
        description=current["description"], variants=[(v.name, v.version, v.weight) for v in variants],
        shadow=current["shadow"], shadow_version=endpoint.shadow_version,
    )
    return plan.snapshot(endpoint.team, endpoint.model)


def endpoint_delete(*, actor: Actor, endpoint: Endpoint) -> None:
    """Delete an endpoint and its variants; clients calling its name get a 404 from the gateway."""
    team = endpoint.team
    authorize(actor, team, Role.DEPLOYER)
    with transaction.atomic():
        locked = (Endpoint.objects.select_for_update(of=("self",))
                  .select_related("team", "model__team", "shadow_version").filter(pk=endpoint.pk).first())
        if locked is None:
            return  # deleted meanwhile: the caller's wish holds
        before = _stored_snapshot(locked, _spec_of(locked))
        audit_record(actor=actor, action="endpoint.delete", obj=locked, team=team, before=before)
        locked.delete()
        _publish()
