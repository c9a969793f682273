from django import forms
from django.core.exceptions import PermissionDenied, ValidationError

from controlplane.common.errors import Conflict
from controlplane.common.forms import submit


class NameForm(forms.Form):
    name = forms.CharField(max_length=5)


def test_a_form_error_stops_before_the_service():
    called = []
    form = NameForm({"name": "too-long"})
    assert submit(form, called.append) == (None, False)
    assert called == [] and "name" in form.errors


def test_service_refusals_land_next_to_their_field_or_on_the_form():
    def refuse(exc):
        def action(data):
            raise exc
        return action

    form = NameForm({"name": "ok"})
    assert submit(form, refuse(ValidationError({"name": "taken", "team": "unknown"}))) == (None, False)
    assert form.errors["name"] == ["taken"] and form.non_field_errors() == ["team: unknown"]
    form = NameForm({"name": "ok"})
    submit(form, refuse(Conflict("name", "exists")))
    assert form.errors["name"] == ["exists"]
    form = NameForm({"name": "ok"})
    submit(form, refuse(PermissionDenied("Needs the admin role.")))
    assert form.non_field_errors() == ["Needs the admin role."]


def test_success_returns_the_result():
    assert submit(NameForm({"name": "ok"}), lambda data: data["name"].upper()) == ("OK", True)


def test_a_failed_submission_carries_the_status_the_api_would_give():
    from controlplane.common.forms import failure_status

    def refuse(exc):
        def action(data):
            raise exc
        return action

    bad = NameForm({"name": "too-long"})
    submit(bad, refuse(PermissionDenied("no")))
    assert failure_status(bad) == 400
    for exc, status in [(ValidationError({"name": "x"}), 400), (PermissionDenied("no"), 403), (Conflict("name", "x"), 409)]:
        form = NameForm({"name": "ok"})
        submit(form, refuse(exc))
        assert failure_status(form) == status
