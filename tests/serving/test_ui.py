"""The editor on the model page and its htmx endpoints, through Django's test client."""
import json
import re

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.serving.models import ServingConfig
from controlplane.serving.services import serving_config_save
from controlplane.serving.ui import form_from_spec, spec_from_form
from controlplane.serving.validation import validate_spec

HX = {"HTTP_HX_REQUEST": "true"}


def page(client, model):
    response = client.get(f"/models/{model.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def form_data(model, **changes):
    """What the browser posts for the current config, with ``changes`` applied."""
    data = {k: v for k, v in form_from_spec(validate_spec({}, model=model), model).items() if v != ""}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def oob_error(html: str, name: str) -> str:
    match = re.search(rf'<small class="field-error" id="err-{name}" hx-swap-oob="true">(.*?)</small>', html, re.S)
    assert match, f"no out-of-band error slot for {name}"
    return match.group(1).strip()


def test_team_admin_sees_the_editor_with_the_rendered_defaults(client, team_admin, model):
    client.force_login(team_admin)
    html = page(client, model)
    assert 'id="serving-config"' in html and "no revision saved yet" in html
    assert f'hx-post="/models/{model.pk}/serving-config/preview/"' in html
    assert 'name="preferred_batch_size"' in html and 'name="max_queue_delay_microseconds"' in html
    assert 'name="instance_kind"' in html and 'name="version_policy"' in html and 'name="model_warmup"' in html
    assert "Save revision" in html
    assert "&quot;name&quot;: &quot;vision.fraud-scorer&quot;" in html  # the rendered Triton JSON


def test_others_see_the_current_config_read_only(client, viewer, deployer, model, as_team_admin):
    serving_config_save(actor=as_team_admin, model=model, spec={"max_batch_size": 4}, reason="smaller batches")
    for user in (viewer, deployer):
        client.force_login(user)
        html = page(client, model)
        assert "Read-only" in html and "Save revision" not in html and "Roll back" not in html
        assert 'name="max_batch_size"' not in html
        assert "&quot;max_batch_size&quot;: 4" in html and "smaller batches" in html


def test_preview_fragment_shows_diff_and_rendered_json(client, team_admin, model):
    client.force_login(team_admin)
    data = form_data(model, dynamic_batching="on", preferred_batch_size="4, 8", max_queue_delay_microseconds="250")
    html = client.post(f"/models/{model.pk}/serving-config/preview/", data, **HX).content.decode()
    assert "against the defaults" in html
    assert "<code>dynamic_batching.preferred_batch_size</code>" in html and "<ins><code>[4, 8]</code></ins>" in html
    assert "<code>dynamic_batching.max_queue_delay_microseconds</code>" in html and "<ins><code>250</code></ins>" in html
    assert "&quot;max_queue_delay_microseconds&quot;: 250" in html
    assert oob_error(html, "preferred_batch_size") == ""
    assert not ServingConfig.objects.exists()


def test_preview_puts_errors_next_to_their_fields(client, team_admin, model):
    client.force_login(team_admin)
    data = form_data(model, dynamic_batching="on", preferred_batch_size="4, 16", instance_count="0", instance_kind="KIND_CPU",
                     max_queue_delay_microseconds="soon")
    html = client.post(f"/models/{model.pk}/serving-config/preview/", data, **HX).content.decode()
    assert oob_error(html, "preferred_batch_size") == "item 2: 16 is larger than max_batch_size (8)."
    assert oob_error(html, "instance_count") == "Must be between 1 and 64 (got 0)."
    assert oob_error(html, "max_queue_delay_microseconds") == "Must be a whole number, not &#x27;soon&#x27;."
    assert oob_error(html, "max_batch_size") == ""
    assert "3 problems" in html and "Not rendered while the config is invalid" in html


def test_preview_reports_warmup_json_that_does_not_parse(client, team_admin, model):
    client.force_login(team_admin)
    html = client.post(f"/models/{model.pk}/serving-config/preview/", form_data(model, model_warmup="[{"), **HX).content.decode()
    assert oob_error(html, "model_warmup").startswith("Not valid JSON")


def test_save_needs_a_reason_and_keeps_what_was_typed(client, team_admin, model):
    client.force_login(team_admin)
    data = form_data(model, dynamic_batching="on", preferred_batch_size="2, 4", reason="  ")
    response = client.post(f"/models/{model.pk}/serving-config/save/", data, **HX)
    html = response.content.decode()
    assert response.status_code == 400  # base.html lets htmx swap it
    assert re.search(r'id="sv-reason" name="reason" value="  "[^>]*aria-describedby="err-reason">\s*'
                     r'<small class="field-error" id="err-reason">Say why you change the config; it goes into the audit log.</small>', html)
    assert 'value="2, 4"' in html
    assert not ServingConfig.objects.exists() and not AuditEvent.objects.filter(action__startswith="serving_config").exists()


def test_save_without_htmx_shows_the_whole_page_with_the_error_by_its_field(client, team_admin, model):
    client.force_login(team_admin)
    response = client.post(f"/models/{model.pk}/serving-config/save/", form_data(model, dynamic_batching="on",
                                                                                   preferred_batch_size="16", reason=""))
    html = response.content.decode()
    assert response.status_code == 400 and "<!doctype html>" in html and 'id="labels"' in html
    assert 'id="err-reason">Say why you change the config' in html
    assert 'id="err-preferred_batch_size">item 1: 16 is larger than max_batch_size (8).</small>' in html
    assert not ServingConfig.objects.exists()


def test_save_with_an_invalid_spec_shows_inline_errors(client, team_admin, model):
    client.force_login(team_admin)
    data = form_data(model, dynamic_batching="on", preferred_batch_size="16", reason="bigger")
    response = client.post(f"/models/{model.pk}/serving-config/save/", data, **HX)
    assert response.status_code == 400
    html = response.content.decode()
    assert re.search(r'id="err-preferred_batch_size">item 1: 16 is larger than max_batch_size \(8\)\.</small>', html)
    assert 'aria-invalid="true"' in html and not ServingConfig.objects.exists()


def test_save_writes_a_revision_audited_as_ui(client, team_admin, model):
    client.force_login(team_admin)
    data = form_data(model, dynamic_batching="on", preferred_batch_size="4, 8", max_queue_delay_microseconds="100",
                     reason="throughput")
    html = client.post(f"/models/{model.pk}/serving-config/save/", data, **HX).content.decode()
    assert "Saved serving config revision 1." in html and 'data-revision="1"' in html
    config = ServingConfig.objects.get()
    assert config.spec["dynamic_batching"]["preferred_batch_size"] == [4, 8] and config.reason == "throughput"
    event = AuditEvent.objects.get(action="serving_config.save")
    assert (event.source, event.actor_name, event.reason) == ("ui", "ada", "throughput")
    again = client.post(f"/models/{model.pk}/serving-config/save/", {**data, "reason": "again"}, **HX).content.decode()
    assert "Nothing to save: revision 1 already has this config." in again and ServingConfig.objects.count() == 1


def test_save_without_htmx_redirects_back_with_a_message(client, team_admin, model):
    client.force_login(team_admin)
    response = client.post(f"/models/{model.pk}/serving-config/save/", form_data(model, response_cache="on", reason="cache"), follow=True)
    assert response.redirect_chain[-1][0] == f"/models/{model.pk}/#serving-config"
    assert "Saved serving config revision 1." in response.content.decode()
    assert ServingConfig.objects.get().spec["response_cache"] == {"enable": True}


def test_save_is_refused_for_deployers_and_other_teams(client, deployer, outsider_admin, model):
    client.force_login(deployer)
    refused = client.post(f"/models/{model.pk}/serving-config/save/", form_data(model, reason="x"), **HX)
    assert refused.status_code == 403
    assert re.search(r'<ul class="form-errors" role="alert"><li>[^<]*needs the admin role', refused.content.decode())
    client.force_login(outsider_admin)
    assert client.post(f"/models/{model.pk}/serving-config/save/", form_data(model, reason="x"), **HX).status_code == 404
    assert client.post(f"/models/{model.pk}/serving-config/preview/", form_data(model), **HX).status_code == 404
    assert not ServingConfig.objects.exists()


def test_history_diff_and_rollback(client, team_admin, model, as_team_admin):
    serving_config_save(actor=as_team_admin, model=model, spec={"dynamic_batching": {"max_queue_delay_microseconds": 100}}, reason="on")
    serving_config_save(actor=as_team_admin, model=model, spec={"dynamic_batching": {"max_queue_delay_microseconds": 900}}, reason="slower")
    client.force_login(team_admin)
    html = page(client, model)
    assert f'hx-get="/models/{model.pk}/serving-config/diff/?from=1&amp;to=2"' in html
    assert html.count("Roll back</button>") == 1  # not on the current revision
    diff = client.get(f"/models/{model.pk}/serving-config/diff/?from=1&to=2", **HX).content.decode()
    assert "Revision 1 → 2" in diff and "<del><code>100</code></del>" in diff and "<ins><code>900</code></ins>" in diff
    first = client.get(f"/models/{model.pk}/serving-config/diff/?to=1").content.decode()
    assert "Defaults → revision 1" in first and "<!doctype html>" in first  # a full page without htmx
    refused = client.post(f"/models/{model.pk}/serving-config/1/rollback/", **HX)
    assert refused.status_code == 400
    assert re.search(r'<p class="message error" role="alert">Not rolled back: Say why', refused.content.decode())
    assert ServingConfig.objects.count() == 2
    done = client.post(f"/models/{model.pk}/serving-config/1/rollback/", HTTP_HX_PROMPT="900 us hurt p99", **HX).content.decode()
    assert "revision 3 restores revision 1" in done
    assert AuditEvent.objects.get(action="serving_config.rollback").reason == "900 us hurt p99"


def test_form_round_trips_a_full_spec(model):
    spec = validate_spec({
        "max_batch_size": 4,
        "dynamic_batching": {"preferred_batch_size": [2, 4], "max_queue_delay_microseconds": 100, "priority_levels": 2,
                             "default_priority_level": 1,
                             "default_queue_policy": {"timeout_action": "DELAY", "default_timeout_microseconds": 5,
                                                      "allow_timeout_override": True, "max_queue_size": 3}},
        "instance_group": [{"kind": "KIND_CPU", "count": 2}, {"kind": "KIND_MODEL", "count": 1}],
        "version_policy": {"specific": {"versions": [1, 2]}},
        "model_warmup": [{"name": "w", "batch_size": 2, "inputs": {"INPUT0": {"random_data": True}}}],
        "response_cache": {"enable": True},
    }, model=model)
    parsed, errors = spec_from_form(form_from_spec(spec, model))
    assert errors == {} and validate_spec(parsed, model=model) == spec
    assert json.loads(form_from_spec(spec, model)["extra_instance_groups"]) == [{"kind": "KIND_MODEL", "count": 1, "gpus": []}]


def test_model_page_query_count_does_not_grow_with_revisions(client, team_admin, model):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    actor = Actor(user=team_admin, source="ui")
    client.force_login(team_admin)
    counts = []
    for total in (1, 25):
        while model.serving_configs.count() < total:
            n = model.serving_configs.count()
            serving_config_save(actor=actor, model=model, spec={"max_batch_size": 1 + n % 8}, reason=str(n))
        with CaptureQueriesContext(connection) as queries:
            html = page(client, model)
        counts.append(len(queries))
        assert f'data-revision="{total}"' in html
    assert counts[0] == counts[1], counts
    assert html.count("data-revision=") == 20  # the newest 20 revisions


def test_pretty_json_keeps_plain_lists_on_one_line():
    from controlplane.serving.ui import pretty_json

    text = pretty_json({"dims": [4], "g": [{"kind": "KIND_CPU", "gpus": []}], "all": {}})
    assert text == '{\n  "dims": [4],\n  "g": [\n    {\n      "kind": "KIND_CPU",\n      "gpus": []\n    }\n  ],\n  "all": {}\n}'
    assert json.loads(text) == {"dims": [4], "g": [{"kind": "KIND_CPU", "gpus": []}], "all": {}}
