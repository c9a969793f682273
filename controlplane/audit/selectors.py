from django.db.models import Q, QuerySet

from controlplane.accounts.selectors import is_platform_admin, visible_teams
from controlplane.audit.models import AuditEvent


def audit_events_visible(user) -> QuerySet[AuditEvent]:
    """Events of the user's teams; platform-wide events (no team) only for platform admins."""
    events = AuditEvent.objects.all()
    if is_platform_admin(user):
        return events
    return events.filter(Q(team__in=visible_teams(user)))


def audit_events_for(obj) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(object_type=obj._meta.label_lower, object_id=str(obj.pk))
