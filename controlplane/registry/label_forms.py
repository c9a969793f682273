"""The label forms of the model page. They check the shape of the input only: labels.label_set
and labels.label_delete (the API's services) enforce every rule, the required reason included."""
from django import forms


class LabelMoveForm(forms.Form):
    """Create a label (``expected_version`` empty: it must not exist yet) or move one from the
    version the form showed, so a click never silently overrides someone else's move."""

    # No length or pattern checks here: the service's (the API's) say what a label name and a
    # reason may be. The widget's ``required`` and ``maxlength`` only spare a round trip.
    name = forms.CharField()
    version = forms.IntegerField()
    reason = forms.CharField(required=False, widget=forms.Textarea(
        attrs={"rows": 2, "required": True, "maxlength": 1000, "placeholder": "why this release"}))
    expected_version = forms.IntegerField(required=False, widget=forms.HiddenInput)


class LabelDeleteForm(forms.Form):
    name = forms.CharField()
    reason = forms.CharField(required=False)
