"""UI forms for the fleet. They check the shape of the input only; the fleet services (the same
ones the API calls) enforce every rule, and common.forms.submit puts their refusals here."""
import json

from django import forms

from controlplane.fleet.models import Pool, Server

LABELS_HELP = "One key=value a line, such as zone=eu-1a (a JSON object works too)."


class PoolForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="Lowercase letters, digits and '-', such as gpu-a100.")
    description = forms.CharField(max_length=500, required=False)

    @classmethod
    def for_pool(cls, pool: Pool, data=None):
        return cls(data, initial={"name": pool.name, "description": pool.description})


class ServerForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="Lowercase letters, digits and '-', such as triton-1.")
    pool = forms.ModelChoiceField(queryset=Pool.objects.order_by("name"), to_field_name="name", empty_label=None)
    http_url = forms.CharField(max_length=500, label="HTTP URL", help_text="Triton's HTTP endpoint, such as http://triton-1:8000.")
    grpc_url = forms.CharField(max_length=260, required=False, label="gRPC address", help_text="host:port, such as triton-1:8001.")
    metrics_url = forms.CharField(max_length=500, required=False, label="Metrics URL", help_text="Such as http://triton-1:8002/metrics.")
    gpu_type = forms.CharField(max_length=64, required=False, label="GPU type")
    gpu_count = forms.IntegerField(min_value=0, max_value=64, initial=0, label="GPU count")
    labels = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text=LABELS_HELP)

    @classmethod
    def for_server(cls, server: Server, data=None):
        initial = {name: getattr(server, name) for name in ("name", "http_url", "grpc_url", "metrics_url", "gpu_type", "gpu_count")}
        initial["pool"] = server.pool.name
        initial["labels"] = "\n".join(f"{k}={v}" for k, v in sorted(server.labels.items()))
        return cls(data, initial=initial)

    def clean_labels(self) -> dict:
        """Parse the text into a dict; which keys and values are allowed is the model's rule."""
        text = self.cleaned_data["labels"].strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise forms.ValidationError(f"Not valid JSON: {exc}.") from None
            if not isinstance(value, dict):
                raise forms.ValidationError("Give a JSON object, or key=value lines.")
            return value
        labels = {}
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise forms.ValidationError(f"Line {number}: write key=value, not {line[:40]!r}.")
            if key.strip() in labels:
                raise forms.ValidationError(f"Line {number}: the key {key.strip()!r} is given twice.")
            labels[key.strip()] = value.strip()
        return labels



class ServerRemoveForm(forms.Form):
    drain = forms.BooleanField(
        required=False, label="Drain first",
        help_text="Unload every placement on this server, then remove it. Without this, a server that "
        "still holds placements is refused.",
    )


class PoolRemoveForm(forms.Form):
    """The Remove button of an empty pool; the service refuses a pool that still has servers."""
