"""The Team page's forms. They check the shape of the input; the services enforce every rule."""
from django import forms

from controlplane.accounts.models import Role, Scope


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    role = forms.ChoiceField(choices=Role.choices)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class MemberRemoveForm(forms.Form):
    """No fields: the member is in the URL. It carries the service's refusal back to the page."""


class TokenIssueForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"placeholder": "github-actions"}))
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=[Scope.READ])
    expires_in_days = forms.IntegerField(min_value=1, max_value=366, initial=90, widget=forms.NumberInput(attrs={"size": 4}))
    team = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput, help_text="Empty for a personal token.")


class TokenRevokeForm(forms.Form):
    """No fields: the token is in the URL."""


class QuotaSetForm(forms.Form):
    """A team's GPU quota, in devices (one GPU of one server). Platform admins only (the service says so)."""
    gpus = forms.IntegerField(min_value=0, max_value=100_000, widget=forms.NumberInput(attrs={"size": 5}))
    reason = forms.CharField(max_length=500, widget=forms.TextInput(attrs={"placeholder": "why it changes"}))
