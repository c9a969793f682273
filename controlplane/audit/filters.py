"""One FilterSet for the audit log, shared by the Audit page, the API list and the exports."""
import re
from datetime import UTC, date, datetime, time, timedelta

import django_filters
from django import forms
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from controlplane.accounts.selectors import visible_teams
from controlplane.audit.models import AuditEvent, Source

_OFFSET_SPACE = re.compile(r" (\d\d:?\d\d)$")  # a "+hh:mm" whose "+" an unencoded URL turned into a space


class InstantField(forms.Field):
    """An ISO 8601 date or datetime. Naive values are UTC. Cleans to ``(datetime, is_date)``."""

    default_error_messages = {"invalid": "Enter an ISO 8601 date or datetime, such as 2026-05-01 or 2026-05-01T12:00:00Z."}

    def to_python(self, value):
        value = (value or "").strip()
        if not value:
            return None
        try:
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC), True
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(_OFFSET_SPACE.sub(r"+\1", value))
        except ValueError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
        if timezone.is_naive(moment):
            moment = moment.replace(tzinfo=UTC)
        return moment, False


@extend_schema_field(OpenApiTypes.STR)  # a date or a datetime, as the help text says
class InstantFilter(django_filters.Filter):
    """``since`` includes its instant. ``until`` excludes it, except that a date means the whole day."""

    field_class = InstantField

    def __init__(self, *args, until=False, **kwargs):
        self.until = until
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        if not value:
            return qs
        moment, is_date = value
        if not self.until:
            return qs.filter(created_at__gte=moment)
        if is_date and moment.date() == date.max:  # the day after 9999-12-31 is not a datetime
            return qs
        return qs.filter(created_at__lt=moment + timedelta(days=1) if is_date else moment)


def _teams(request):
    return visible_teams(getattr(request, "user", None)).order_by("slug")


class AuditEventFilterSet(django_filters.FilterSet):
    team = django_filters.ModelChoiceFilter(
        queryset=_teams, to_field_name="slug", field_name="team", label="Team", empty_label="All teams",
        help_text="A team's slug.",
    )
    actor = django_filters.CharFilter(
        field_name="actor_name", lookup_expr="iexact", label="Actor", help_text="A user name, or worker, schedule or system."
    )
    source = django_filters.ChoiceFilter(choices=Source.choices, empty_label="Any")
    action = django_filters.CharFilter(
        method="filter_action", label="Action",
        help_text="Exact, such as model.create, or a prefix ending in . or *, such as model.*",
    )
    object_type = django_filters.CharFilter(label="Object type", help_text="Such as registry.model.")
    object_id = django_filters.CharFilter(label="Object id")
    request_id = django_filters.CharFilter(label="Request id")
    since = InstantFilter(label="From", help_text="Events at or after this ISO date or datetime (UTC unless it says otherwise).")
    until = InstantFilter(until=True, label="To", help_text="Events before this datetime, or on or before this date.")
    q = django_filters.CharFilter(method="search", label="Search", help_text="Text in the actor, object, action or reason.")

    class Meta:
        model = AuditEvent
        fields = ["team", "actor", "source", "action", "object_type", "object_id", "request_id", "since", "until", "q"]

    def filter_action(self, queryset, name, value):
        value = value.strip()
        if value.endswith("*") or value.endswith("."):
            return queryset.filter(action__startswith=value.rstrip("*"))
        return queryset.filter(action=value)

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(actor_name__icontains=value) | Q(object_repr__icontains=value)
            | Q(action__icontains=value) | Q(reason__icontains=value)
        )
