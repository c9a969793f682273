"""Filters shared by the FilterSets of several apps."""
import django_filters
from django import forms
from drf_spectacular.utils import extend_schema_field

from controlplane.common.api import INT64_MAX


@extend_schema_field({"type": "integer", "format": "int64", "minimum": 1, "maximum": INT64_MAX})
class IdFilter(django_filters.NumberFilter):
    """An id: a whole number from 1 to PostgreSQL's bigint maximum. django-filter's NumberFilter
    takes any decimal (1.5, -1.79e308), which then reaches the integer column."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", INT64_MAX)
        super().__init__(*args, **kwargs)
