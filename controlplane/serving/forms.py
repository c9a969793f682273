"""The serving config editor's forms. They turn the editor's text into a spec and nothing more:
validate_spec (through services.serving_config_save, the API's service) enforces every rule,
and the service requires the reason."""
from django import forms
from django.core.exceptions import ValidationError

from controlplane.serving.ui import CHECKBOXES, FIELD_PATHS, errors_by_field, spec_from_form

TEXT_FIELDS = [name for name in FIELD_PATHS if name != "reason"] + ["extra_instance_groups"]


class ServingConfigForm(forms.Form):
    """Every editor field is optional text; the spec it makes is ``cleaned_data["spec"]``."""

    reason = forms.CharField(required=False, strip=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in TEXT_FIELDS:
            self.fields[name] = forms.CharField(required=False, strip=False)

    def clean(self):
        data = super().clean()
        texts = {name: data.get(name) or "" for name in TEXT_FIELDS}
        for name in CHECKBOXES:
            texts[name] = "on" if data.get(name) else ""
        # The preview shows a spec even while some text is not JSON, with those errors beside it.
        self.spec, self.parse_errors = spec_from_form(texts)
        if self.parse_errors:
            raise self.route_spec_errors(ValidationError(self.parse_errors))
        data["spec"] = self.spec
        return data

    @staticmethod
    def route_spec_errors(exc: ValidationError) -> ValidationError:
        """Spec errors keyed by path (``spec.instance_group[0].count``) re-keyed by the editor
        field that shows them; the rest go above the form, naming their path."""
        by_field, other = errors_by_field(exc.message_dict)
        routed = {name: messages for name, messages in by_field.items()}
        if other:
            routed["__all__"] = [f"{path}: {message}" for path, message in other]
        return ValidationError(routed)


class RollbackForm(forms.Form):
    reason = forms.CharField(required=False)
