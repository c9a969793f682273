"""The endpoint forms of the UI. They check the shape of the input only (and resolve the team and
model as the API does); services.endpoint_create and endpoint_update enforce every rule, and
route_errors puts each refusal next to the field or variant row it names."""
import re

from django import forms
from django.core.exceptions import ValidationError

from controlplane.accounts.models import Role
from controlplane.accounts.selectors import team_for_write, teams_with_role
from controlplane.endpoints import selectors, services
from controlplane.endpoints.models import Access, Endpoint, EndpointKind
from controlplane.registry.models import Model

BLANK_ROWS = 4  # empty variant rows offered below the existing ones; no script needed
_ROW_ERROR = re.compile(r"^variants\[(?P<index>\d+)\]\.(?P<part>name|version|weight)$")
_FLAT = {"sticky.header": "sticky_header", "sticky.cookie": "sticky_cookie", "shadow.version": "shadow_version",
         "shadow.percent": "shadow_percent", "shadow.rtol": "shadow_rtol", "shadow.atol": "shadow_atol"}


class EndpointForm(forms.Form):
    """Create (with team and model) or edit (``endpoint`` given: team and model are fixed)."""

    team = forms.CharField(max_length=63, widget=forms.Select)
    model = forms.IntegerField(min_value=1, widget=forms.Select)
    name = forms.CharField(max_length=63, help_text="Lowercase letters, digits and '-'; clients call <team>.<name>.")
    kind = forms.ChoiceField(choices=EndpointKind.choices, initial=EndpointKind.PINNED,
                             help_text="Pinned: the variant rows below. Label-bound: the version its label points at.")
    label = forms.CharField(max_length=31, required=False, help_text="For a label-bound endpoint, such as stable.")
    access = forms.ChoiceField(choices=Access.choices, initial=Access.TOKEN)
    sticky_header = forms.CharField(max_length=64, required=False, label="Sticky header",
                                    help_text="Hash this request header into sticky buckets, such as X-User-Id.")
    sticky_cookie = forms.CharField(max_length=64, required=False, label="Sticky cookie", help_text="Or this cookie (not both).")
    shadow_version = forms.IntegerField(min_value=1, required=False, label="Shadow version",
                                        help_text="Mirror some requests to this version; its answers are only compared.")
    shadow_percent = forms.FloatField(min_value=0, max_value=100, required=False, label="Shadow percent")
    shadow_rtol = forms.FloatField(min_value=0, required=False, label="Shadow rtol", initial=1e-5)
    shadow_atol = forms.FloatField(min_value=0, required=False, label="Shadow atol", initial=1e-6)
    description = forms.CharField(max_length=services.MAX_DESCRIPTION, required=False,
                                  widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, data=None, *, user, endpoint: Endpoint | None = None):
        self.endpoint = endpoint
        self.user = user
        existing = list(endpoint.variants.all()) if endpoint is not None else []
        super().__init__(data, initial=self._initial(endpoint, existing) if endpoint is not None else None)
        if endpoint is not None:
            del self.fields["team"], self.fields["model"]
        else:
            self.teams = list(teams_with_role(user, Role.DEPLOYER).order_by("slug"))
            self.fields["team"].widget.choices = [(t.slug, t.slug) for t in self.teams]
            models = Model.objects.filter(team__in=self.teams).select_related("team").order_by("team__slug", "name")
            self.fields["model"].widget.choices = [(m.pk, str(m)) for m in models]
        self.row_count = min(services.MAX_VARIANTS, len(existing) + BLANK_ROWS)
        for i in range(self.row_count):
            # Named by aria-label: the table's column heads are their visible labels.
            def named(what, i=i):
                return {"aria-label": f"Variant {i + 1} {what}"}
            self.fields[f"variant-{i}-name"] = forms.CharField(
                max_length=63, required=False, widget=forms.TextInput(attrs=named("name")))
            self.fields[f"variant-{i}-version"] = forms.IntegerField(
                min_value=1, required=False, widget=forms.NumberInput(attrs=named("version")))
            self.fields[f"variant-{i}-weight"] = forms.IntegerField(
                min_value=0, required=False, widget=forms.NumberInput(attrs=named("weight")))
        self.rows_used: list[int] = []  # form row of each variant passed to the service, in order

    @staticmethod
    def _initial(endpoint: Endpoint, variants) -> dict:
        initial = {name: getattr(endpoint, name) for name in
                   ("name", "kind", "label", "access", "sticky_header", "sticky_cookie", "description")}
        if endpoint.shadow_version_id:
            initial |= {"shadow_version": endpoint.shadow_version.version, "shadow_percent": endpoint.shadow_percent,
                        "shadow_rtol": endpoint.shadow_rtol, "shadow_atol": endpoint.shadow_atol}
        for i, v in enumerate(variants):
            initial |= {f"variant-{i}-name": v.name, f"variant-{i}-version": v.version.version, f"variant-{i}-weight": v.weight}
        return initial

    def variant_rows(self):
        """(name, version, weight) bound fields per row, for the template."""
        return [tuple(self[f"variant-{i}-{part}"] for part in ("name", "version", "weight")) for i in range(self.row_count)]

    def clean_team(self):
        try:
            return team_for_write(self.user, self.cleaned_data["team"])  # the API's check and message
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["team"]) from None

    def clean(self):
        data = super().clean()
        team = data.get("team")
        if self.endpoint is None and team is not None and data.get("model") is not None:
            try:
                data["model"] = selectors.model_for_endpoint(team, data["model"])
            except ValidationError as exc:
                self.add_error("model", exc.message_dict["model"])
        return data

    def service_args(self) -> dict:
        """The cleaned input in the services' terms. The variant rows count for a pinned endpoint
        only, the label for a label-bound one, so switching the kind needs no emptying by hand."""
        data = self.cleaned_data
        kind = data["kind"]
        args = {name: data[name] for name in ("name", "kind", "access", "sticky_header", "sticky_cookie", "description")}
        args["label"] = data["label"] if kind == EndpointKind.LABEL else ""
        variants = []
        self.rows_used = []
        if kind == EndpointKind.PINNED:
            for i in range(self.row_count):
                name, version, weight = (data.get(f"variant-{i}-{part}") for part in ("name", "version", "weight"))
                if not name and version is None and weight is None:
                    continue  # a blank row
                variants.append(services.VariantSpec(name=name or "", version=version, weight=weight))
                self.rows_used.append(i)
        args["variants"] = variants
        args["shadow"] = None
        if data["shadow_version"] is not None or data["shadow_percent"] is not None:
            args["shadow"] = services.ShadowSpec(
                version=data["shadow_version"], percent=data["shadow_percent"],
                rtol=1e-5 if data["shadow_rtol"] is None else data["shadow_rtol"],
                atol=1e-6 if data["shadow_atol"] is None else data["shadow_atol"],
            )
        if self.endpoint is None:
            args["team"], args["model"] = data["team"], data["model"]
        return args

    def route_errors(self, exc: ValidationError) -> ValidationError:
        """Rename the service's field keys (``variants[1].weight``, ``shadow.percent``) to this
        form's fields, so that each message sits next to the input it is about."""
        if not hasattr(exc, "error_dict"):
            return exc
        routed: dict[str, list[str]] = {}
        for key, messages in exc.message_dict.items():
            match = _ROW_ERROR.match(key)
            if match and int(match["index"]) < len(self.rows_used):
                key = f"variant-{self.rows_used[int(match['index'])]}-{match['part']}"
            key = _FLAT.get(key, key)
            routed.setdefault(key, []).extend(messages)
        return ValidationError(routed)


class EndpointDeleteForm(forms.Form):
    """The Delete button: no fields, the endpoint is in the URL. It carries a refusal back."""
