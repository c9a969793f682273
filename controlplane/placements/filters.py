"""One FilterSet for placements, used by the API list."""
import django_filters

from controlplane.common.filters import IdFilter
from controlplane.placements.models import Placement


class PlacementFilterSet(django_filters.FilterSet):
    model = IdFilter(field_name="model_id", label="Model id")
    active = django_filters.BooleanFilter(field_name="removed_at", lookup_expr="isnull", label="Active")
    server = django_filters.CharFilter(field_name="targets__server_name", label="Server name", distinct=True)

    class Meta:
        model = Placement
        fields = ["model", "active", "server"]
