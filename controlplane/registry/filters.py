"""One FilterSet per model, shared by the UI list and the API."""
import django_filters
from django.db.models import Q

from controlplane.registry.models import Backend, Model


class ModelFilterSet(django_filters.FilterSet):
    team = django_filters.CharFilter(field_name="team__slug", label="Team")
    backend = django_filters.ChoiceFilter(choices=Backend.choices)
    name = django_filters.CharFilter()
    q = django_filters.CharFilter(method="search", label="Search")

    class Meta:
        model = Model
        fields = ["team", "backend", "name", "q"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(description__icontains=value))
