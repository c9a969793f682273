import django_filters

from controlplane.fleet.models import Pool, Server, ServerStatus


class ServerFilterSet(django_filters.FilterSet):
    pool = django_filters.CharFilter(field_name="pool__name")
    status = django_filters.ChoiceFilter(choices=ServerStatus.choices)
    name = django_filters.CharFilter(lookup_expr="icontains")
    gpu_type = django_filters.CharFilter()

    class Meta:
        model = Server
        fields = ["pool", "status", "name", "gpu_type"]


class PoolFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Pool
        fields = ["name"]
