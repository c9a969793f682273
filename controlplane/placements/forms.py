"""The placement forms of the model page. They check the shape of the input; the selectors
resolve names as the API does, and services.placement_create enforces every rule."""
from django import forms


class NumberList(forms.Field):
    """One whole number per value of a multi-select (``versions=1&versions=3``)."""

    widget = forms.SelectMultiple

    def to_python(self, value):
        try:
            return [int(v) for v in value or []]
        except (TypeError, ValueError):
            raise forms.ValidationError("Versions are whole numbers.") from None


class NameList(forms.Field):
    """Names from a multi-select, or typed into one field as "a, b c" on a big fleet."""

    widget = forms.SelectMultiple

    def to_python(self, value):
        values = [value] if isinstance(value, str) else value or []
        return [name for v in values for name in str(v).replace(",", " ").split()]


class PlacementCreateForm(forms.Form):
    # Not required here: the service says "Give at least one version" / "Choose at least one server".
    versions = NumberList(required=False)
    servers = NameList(required=False)
    config_revision = forms.IntegerField(required=False, min_value=1)


class PlacementActionForm(forms.Form):
    """Retry or remove: no fields, the placement is in the URL. It carries a refusal back."""
