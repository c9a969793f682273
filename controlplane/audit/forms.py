from django import forms


class VerifyFullForm(forms.Form):
    """The badge's "Full re-verification" button."""

    reason = forms.CharField(required=False, max_length=1000)
