"""Webhook writes (create, update, delete: team admins, audited in the same transaction) and
``notify``, which the deployment engine calls inside its own transaction.

Deliveries are records of I/O, not changes of state, so neither queueing nor sending them is
audited; sending is in ``delivery.py``. Error keys name the API's fields: ``url``, ``events``,
``endpoint``, ``name``.
"""
from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from controlplane.accounts.access import authorize
from controlplane.accounts.models import Role, Team
from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record
from controlplane.common.tasks import enqueue
from controlplane.endpoints.models import Endpoint
from controlplane.notifications import payload as payloads
from controlplane.notifications import signing
from controlplane.notifications.models import (
    TEST_EVENT,
    Event,
    Webhook,
    WebhookDelivery,
)
from controlplane.notifications.validation import (
    events_canonical,
    events_problem,
    url_problem,
)

log = logging.getLogger(__name__)

DELIVER_TASK = "notifications.deliver"
MAX_NAME = 100
EDITABLE = {"name", "url", "endpoint", "events", "active"}


def _check(*, team: Team, name, url, endpoint, events, active) -> dict:
    """Every rule of a webhook, checked together so that one refusal lists every problem."""
    errors: dict[str, str] = {}
    if not isinstance(name, str) or len(name) > MAX_NAME:
        errors["name"] = f"Text of at most {MAX_NAME} characters."
    problem = url_problem(url)
    if problem:
        errors["url"] = problem
    problem = events_problem(events, Event.values)
    if problem:
        errors["events"] = problem
    if endpoint is not None and (not isinstance(endpoint, Endpoint) or endpoint.team_id != team.pk):
        errors["endpoint"] = f"No such endpoint in team {team.slug}."  # never say whose it is
    if not isinstance(active, bool):
        errors["active"] = "Must be true or false."
    if errors:
        raise ValidationError(errors)
    return {"name": name, "url": url, "endpoint": endpoint, "events": events_canonical(events, Event.values),
            "active": active}


def url_for_audit(url: str) -> dict:
    """The URL as the audit log keeps it: its origin and a fingerprint of the whole. Audit events
    are readable by the whole team, and a webhook URL may carry a credential in its path."""
    parts = urlsplit(url)
    return {"url": f"{parts.scheme}://{parts.netloc}/…", "url_sha256": hashlib.sha256(url.encode()).hexdigest()[:16]}


def _snapshot(webhook: Webhook) -> dict:
    """The webhook in the audit log: never its secret, and its URL only as url_for_audit."""
    return {
        "team": webhook.team.slug,
        "endpoint": webhook.endpoint.public_name if webhook.endpoint_id else None,
        "name": webhook.name,
        **url_for_audit(webhook.url),
        "events": list(webhook.events),
        "active": webhook.active,
    }


def webhook_create(*, actor: Actor, team: Team, url: str, endpoint: Endpoint | None = None,
                   events: list[str] | None = None, active: bool = True, name: str = "") -> tuple[Webhook, str]:
    """Create a webhook of ``team`` (team admins). Returns it with its secret, which is shown
    once: the caller hands it to the person, and nothing ever returns it again."""
    authorize(actor, team, Role.ADMIN)
    plan = _check(team=team, name=name, url=url, endpoint=endpoint,
                  events=list(Event.values) if events is None else events, active=active)
    secret = signing.generate_secret()
    user = actor.user if getattr(actor.user, "is_authenticated", False) else None
    webhook = Webhook(team=team, secret=secret, created_by=user, **plan)
    with transaction.atomic():
        webhook.save()
        audit_record(actor=actor, action="webhook.create", obj=webhook, team=team, after=_snapshot(webhook))
    return webhook, secret


def webhook_update(*, actor: Actor, webhook: Webhook, **changes) -> bool:
    """Change some of ``name``, ``url``, ``endpoint`` (an Endpoint of the team, or None for all),
    ``events`` and ``active``. Returns whether anything differed; when nothing does, nothing is
    written or audited. The team and the secret are fixed."""
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    team = webhook.team
    authorize(actor, team, Role.ADMIN)
    with transaction.atomic():
        locked = (Webhook.objects.select_for_update(of=("self",)).select_related("team", "endpoint__team")
                  .filter(pk=webhook.pk).first())
        if locked is None:
            raise ValidationError({"body": "This webhook was deleted meanwhile."})
        current = {"name": locked.name, "url": locked.url, "endpoint": locked.endpoint, "events": locked.events,
                   "active": locked.active}
        plan = _check(team=team, **{**current, **changes})
        before = _snapshot(locked)
        exact_before = {**current, "endpoint": locked.endpoint_id}
        for field, value in plan.items():
            setattr(locked, field, value)
        if {**plan, "endpoint": locked.endpoint_id} == exact_before:
            return False
        locked.save()
        audit_record(actor=actor, action="webhook.update", obj=locked, team=team, before=before, after=_snapshot(locked))
    webhook.refresh_from_db()
    return True


def webhook_delete(*, actor: Actor, webhook: Webhook) -> None:
    """Delete a webhook and its delivery log; pending deliveries are never sent."""
    team = webhook.team
    authorize(actor, team, Role.ADMIN)
    with transaction.atomic():
        locked = (Webhook.objects.select_for_update(of=("self",)).select_related("team", "endpoint__team")
                  .filter(pk=webhook.pk).first())
        if locked is None:
            return  # deleted meanwhile: the caller's wish holds
        audit_record(actor=actor, action="webhook.delete", obj=locked, team=team, before=_snapshot(locked))
        locked.delete()


def _queue(webhook: Webhook, event: str, body: dict) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.create(webhook=webhook, event=event, payload=body, next_attempt_at=timezone.now())
    enqueue(DELIVER_TASK, delivery.pk)
    return delivery


def webhook_test(*, actor: Actor, webhook: Webhook) -> WebhookDelivery:
    """Queue a ``test`` delivery to the webhook, active or not (team admins). Not audited: it
    changes nothing but the delivery log."""
    authorize(actor, webhook.team, Role.ADMIN)
    team = webhook.team
    body = payloads.build(
        event=TEST_EVENT, title="Test notification from Switchyard", team=team.slug,
        endpoint=webhook.endpoint.public_name if webhook.endpoint_id else None,
        fields={"webhook": webhook.pk, "requested_by": actor.name}, url="", at=timezone.now().isoformat(),
    )
    with transaction.atomic():
        return _queue(webhook, TEST_EVENT, body)


def notify(*, team: Team, endpoint: Endpoint | None = None, event: str, title: str, fields: dict,
           url: str = "") -> list[WebhookDelivery]:
    """Queue ``event`` to every active webhook of ``team`` that wants it: the team-wide ones, and
    those of ``endpoint`` when given. Call it inside the transaction that makes the change: the
    deliveries are written with it and sent after it commits (never if it rolls back).

    ``title`` is the one-line summary, ``fields`` the details (deployment id, versions, state,
    reason...; any JSON, datetimes allowed) and ``url`` the page to open. Each delivery is
    built from its webhook's row, so a team's notifications never reach another team's webhook.
    """
    if event not in Event.values:
        raise ValueError(f"unknown webhook event {event!r}; one of {Event.values}")
    if endpoint is not None and endpoint.team_id != team.pk:
        raise ValueError(f"endpoint {endpoint.pk} is not an endpoint of team {team.slug}")
    where = Q(endpoint__isnull=True) | Q(endpoint=endpoint) if endpoint is not None else Q(endpoint__isnull=True)
    # Filtered here rather than with a JSON lookup: SQLite (the demo) has no JSON containment.
    webhooks = [w for w in Webhook.objects.filter(where, team=team, active=True).order_by("id") if event in w.events]
    if not webhooks:
        return []
    if url.startswith("/") and settings.SWITCHYARD_PUBLIC_URL:
        url = settings.SWITCHYARD_PUBLIC_URL + url  # a link people can open from Slack
    body = payloads.build(
        event=event, title=title, team=team.slug, endpoint=f"{team.slug}.{endpoint.name}" if endpoint is not None else None,
        fields=fields, url=url, at=timezone.now().isoformat(),
    )
    with transaction.atomic():  # a savepoint inside the caller's transaction, or its own
        deliveries = [_queue(webhook, event, body) for webhook in webhooks]
    log.info("queued %s %s notification(s) for team %s", len(deliveries), event, team.slug)
    return deliveries
