"""UI forms of the model registry. They check the shape of the input; services.model_create and
services.version_register (the API's services) enforce every rule."""
import re

from django import forms
from django.core.exceptions import ValidationError

from controlplane.accounts.models import Role
from controlplane.accounts.selectors import team_for_write, teams_with_role
from controlplane.common import jsonsafe
from controlplane.registry.models import Backend
from controlplane.registry.tensors import DATA_TYPES

TENSOR_FIELDS = ("inputs", "outputs")
TENSOR_PARTS = ("name", "data_type", "dims")
DATA_TYPE_CHOICES = [f"TYPE_{t}" for t in sorted(DATA_TYPES)]
_ROW_KEY = re.compile(r"^(?P<field>inputs|outputs)-(?P<index>\d{1,4})-(?P<part>name|data_type|dims)$")
_CELL = re.compile(r"^(?P<field>inputs|outputs)\[(?P<index>\d+)\](?:\.(?P<part>name|data_type|dims))?$")
_INT = re.compile(r"^-?\d{1,20}$")


def parse_dims(text: str) -> list:
    """"4, -1" -> [4, -1]. A piece that is no integer stays text, so the service's check of
    dims (the API's) names the problem."""
    text = text.strip().removeprefix("[").removesuffix("]").strip()
    if not text:
        return []
    return [int(p) if _INT.match(p) else p for p in (piece.strip() for piece in text.split(","))]


class TensorEditor(forms.Widget):
    """Rows posted as ``inputs-0-name``, ``inputs-0-data_type``, ``inputs-0-dims``; the static
    tensor editor adds and removes rows. Blank rows are dropped and the rest kept in order."""

    def value_from_datadict(self, data, files, name):
        rows: dict[int, dict[str, str]] = {}
        for key in data:
            match = _ROW_KEY.match(key)
            if match and match["field"] == name:
                rows.setdefault(int(match["index"]), {})[match["part"]] = data.get(key) or ""
        return [
            {part: rows[i].get(part, "") for part in TENSOR_PARTS}
            for i in sorted(rows)
            if rows[i].get("name", "").strip() or rows[i].get("dims", "").strip()
        ]

    def value_omitted_from_data(self, data, files, name):
        return not any(key.startswith(f"{name}-") for key in data)


class TensorsField(forms.Field):
    widget = TensorEditor

    def __init__(self, **kwargs):
        super().__init__(required=False, **kwargs)  # an empty list is the service's to refuse

    def to_python(self, value):
        return [{"name": row["name"].strip(), "data_type": row["data_type"], "dims": parse_dims(row["dims"])} for row in value or []]


class ModelRegisterForm(forms.Form):
    team = forms.CharField(max_length=63, widget=forms.Select)
    name = forms.CharField(max_length=200, help_text="Lowercase letters, digits and '-'; unique in the team.")
    backend = forms.ChoiceField(choices=Backend.choices)
    max_batch_size = forms.IntegerField(required=False, initial=0, help_text="0 when the model does not batch.")
    description = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    inputs = TensorsField()
    outputs = TensorsField()
    data_types = DATA_TYPE_CHOICES

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.teams = list(teams_with_role(user, Role.DEPLOYER).order_by("slug"))
        self.fields["team"].widget.choices = [(t.slug, t.slug) for t in self.teams]
        self.cell_errors: dict[tuple[str, int], dict[str, list[str]]] = {}

    def clean_team(self):
        try:
            return team_for_write(self.user, self.cleaned_data["team"])  # the API's check and message
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["team"]) from None

    def clean_max_batch_size(self):
        value = self.cleaned_data["max_batch_size"]
        return 0 if value is None else value

    def route_tensor_errors(self, exc: ValidationError) -> ValidationError:
        """Keep errors keyed like ``inputs[1].dims`` for their cell; the rest go back to the form."""
        if not hasattr(exc, "error_dict"):
            return exc
        rest: dict[str, list[str]] = {}
        for key, messages in exc.message_dict.items():
            match = _CELL.match(key)
            if match is None:
                rest.setdefault(key, []).extend(messages)
                continue
            cell = self.cell_errors.setdefault((match["field"], int(match["index"])), {})
            cell.setdefault(match["part"] or "row", []).extend(messages)
            rest.setdefault(match["field"], ["Fix the marked tensors."])
        return ValidationError(rest)

    def tensor_rows(self, field: str) -> list[dict]:
        """The editor's rows as shown: what was posted (with its errors), or one blank row."""
        if self.is_bound:
            rows = self.fields[field].widget.value_from_datadict(self.data, self.files, field)
        else:
            rows = []
        rows = rows or [{"name": "", "data_type": "TYPE_FP32", "dims": ""}]
        return [{**row, "index": str(i), "errors": self.cell_errors.get((field, i), {})} for i, row in enumerate(rows)]

    @property
    def input_rows(self):
        return self.tensor_rows("inputs")

    @property
    def output_rows(self):
        return self.tensor_rows("outputs")


class JSONObjectField(forms.CharField):
    """Optional JSON text, parsed with the API's checks (nesting, NUL, numbers)."""

    widget = forms.Textarea(attrs={"rows": 2})

    def to_python(self, value):
        value = super().to_python(value)
        if not value:
            return None
        try:
            return jsonsafe.loads(value, "metadata")
        except jsonsafe.JSONRefused as exc:
            raise ValidationError(exc.message) from None
        except ValueError as exc:
            raise ValidationError(f"Not valid JSON: {exc}.") from None


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data, initial=None):
        uploads = data if isinstance(data, (list, tuple)) else [data] if data else []
        return [super(MultipleFileField, self).clean(upload, initial) for upload in uploads]


VERSION_HELP = "A whole number of 1 or more. Versions are immutable."
METADATA_HELP = 'Optional JSON object, such as {"git": "abc123"}.'


class VersionUploadForm(forms.Form):
    version = forms.IntegerField(help_text=VERSION_HELP)
    archive = forms.FileField(required=False, help_text="A .tar, .tar.gz or .zip of the version directory.")
    files = MultipleFileField(required=False, help_text="Or single files; they land at the top of the version directory.")
    metadata = JSONObjectField(required=False, help_text=METADATA_HELP)


class VersionFromS3Form(forms.Form):
    version = forms.IntegerField(help_text=VERSION_HELP)
    source_uri = forms.CharField(label="Source URI", max_length=1024)
    metadata = JSONObjectField(required=False, help_text=METADATA_HELP)

    def __init__(self, *args, staging_uri: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source_uri"].help_text = (
            f"A build folder in your team's staging area, {staging_uri}<folder>/, laid out as a Triton version directory."
        )
        self.fields["source_uri"].widget.attrs["placeholder"] = f"{staging_uri}<folder>/"
