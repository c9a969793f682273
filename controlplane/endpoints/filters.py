"""One FilterSet for endpoints, shared by the API list and the endpoints page."""
import django_filters

from controlplane.common.filters import IdFilter
from controlplane.endpoints.models import Access, Endpoint, EndpointKind


class EndpointFilterSet(django_filters.FilterSet):
    team = django_filters.CharFilter(field_name="team__slug", label="Team")
    model = IdFilter(field_name="model_id", label="Model id")
    kind = django_filters.ChoiceFilter(choices=EndpointKind.choices)
    access = django_filters.ChoiceFilter(choices=Access.choices)

    class Meta:
        model = Endpoint
        fields = ["team", "model", "kind", "access"]
