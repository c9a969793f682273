"""serving_config_save / serving_config_rollback: numbering, no-op saves, audit, roles, no write on error."""
import threading

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.http import Http404

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.serving.models import ServingConfig
from controlplane.serving.selectors import serving_config_current
from controlplane.serving.services import serving_config_rollback, serving_config_save

BATCHING = {"dynamic_batching": {"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 100}}


def test_first_save_is_revision_one_with_the_normalised_spec(model, as_team_admin, team_admin):
    config = serving_config_save(actor=as_team_admin, model=model, spec=BATCHING, reason="enable batching")
    config.refresh_from_db()
    assert (config.revision, config.created_by, config.reason) == (1, team_admin, "enable batching")
    assert config.spec["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert config.spec["dynamic_batching"]["default_queue_policy"]["timeout_action"] == "REJECT"
    assert serving_config_current(model) == config


def test_revisions_count_up_per_model(model, as_team_admin, team):
    from tests.quotas.conftest import make_model

    other = make_model(team, "other-model")
    numbers = [serving_config_save(reason="tune", actor=as_team_admin, model=model, spec={"max_batch_size": n}).revision for n in (8, 4, 2)]
    assert numbers == [1, 2, 3]
    assert serving_config_save(reason="tune", actor=as_team_admin, model=other, spec={}).revision == 1


def test_saving_the_current_spec_again_writes_nothing_and_returns_the_current_revision(model, as_team_admin):
    first = serving_config_save(actor=as_team_admin, model=model, spec=BATCHING, reason="one")
    assert first.created is True
    events = AuditEvent.objects.count()
    # Equal after normalisation: defaults spelt out, sizes in another order.
    again = serving_config_save(actor=as_team_admin, model=model, reason="two", spec={
        "max_batch_size": 8, "dynamic_batching": {"preferred_batch_size": [8, 4], "max_queue_delay_microseconds": 100,
                                                  "priority_levels": 0}})
    assert (again.pk, again.revision, again.created) == (first.pk, 1, False)
    assert ServingConfig.objects.count() == 1 and AuditEvent.objects.count() == events


def test_save_is_audited_with_before_and_after_spec_and_reason(model, as_team_admin):
    serving_config_save(actor=as_team_admin, model=model, spec={}, reason="baseline")
    second = serving_config_save(actor=as_team_admin, model=model, spec=BATCHING, reason="more throughput")
    event = AuditEvent.objects.filter(action="serving_config.save").latest("id")
    assert (event.object_type, event.object_id, event.team, event.reason) == (
        "serving.servingconfig", str(second.pk), model.team, "more throughput")
    assert (event.actor_name, event.source, event.request_id) == ("ada", "api", "req-1")
    assert event.before == {"revision": 1, "spec": {"max_batch_size": 8, "model_warmup": [], "response_cache": {"enable": False}}}
    assert event.after == {"revision": 2, "spec": second.spec}
    first_event = AuditEvent.objects.filter(action="serving_config.save").earliest("id")
    assert first_event.before is None and first_event.after["revision"] == 1


@pytest.mark.parametrize("who", ["deployer", "viewer"])
def test_only_team_admins_save(request, model, who):
    user = request.getfixturevalue(who)
    with pytest.raises(PermissionDenied, match="admin role"):
        serving_config_save(reason="tune", actor=Actor(user=user, source="api"), model=model, spec=BATCHING)
    assert not ServingConfig.objects.exists() and not AuditEvent.objects.filter(action__startswith="serving_config").exists()


def test_other_teams_admins_get_not_found(model, outsider_admin):
    with pytest.raises(Http404):
        serving_config_save(reason="tune", actor=Actor(user=outsider_admin, source="api"), model=model, spec={})
    assert not ServingConfig.objects.exists()


def test_a_token_without_admin_scope_cannot_save(model, team_admin):
    actor = Actor(user=team_admin, source="api", token_id=1, token_scopes=("read", "deploy"))
    with pytest.raises(PermissionDenied, match="scopes"):
        serving_config_save(reason="tune", actor=actor, model=model, spec={})


def test_platform_admins_and_system_actors_may_save(model, platform_admin):
    assert serving_config_save(reason="tune", actor=Actor(user=platform_admin, source="ui"), model=model, spec={}).revision == 1
    assert serving_config_save(reason="tune", actor=Actor.system("worker"), model=model, spec={"max_batch_size": 4}).revision == 2


def test_an_invalid_spec_writes_nothing_and_names_the_field(model, as_team_admin):
    with pytest.raises(ValidationError) as exc:
        serving_config_save(reason="tune", actor=as_team_admin, model=model, spec={"dynamic_batching": {"preferred_batch_size": [16]}})
    assert list(exc.value.message_dict) == ["spec.dynamic_batching.preferred_batch_size[0]"]
    assert not ServingConfig.objects.exists() and not AuditEvent.objects.filter(action__startswith="serving_config").exists()


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_config_change_needs_a_reason(model, as_team_admin, reason):
    """Decided in issue 8: a config change alters how every server runs the model, so it says why."""
    with pytest.raises(ValidationError) as exc:
        serving_config_save(actor=as_team_admin, model=model, spec={}, reason=reason)
    assert list(exc.value.message_dict) == ["reason"]
    assert not ServingConfig.objects.exists() and not AuditEvent.objects.filter(action__startswith="serving_config").exists()


def test_reason_is_checked(model, as_team_admin):
    with pytest.raises(ValidationError) as exc:
        serving_config_save(actor=as_team_admin, model=model, spec={}, reason="x" * 2001)
    assert list(exc.value.message_dict) == ["reason"]
    assert serving_config_save(actor=as_team_admin, model=model, spec={}, reason="  padded  ").reason == "padded"


def test_rollback_writes_a_new_revision_equal_to_the_old_one(model, as_team_admin):
    one = serving_config_save(reason="tune", actor=as_team_admin, model=model, spec=BATCHING)
    serving_config_save(reason="tune", actor=as_team_admin, model=model, spec={"max_batch_size": 2})
    back = serving_config_rollback(actor=as_team_admin, model=model, revision=1, reason="latency regression")
    assert (back.revision, back.spec, back.created, back.reason) == (3, one.spec, True, "latency regression")
    event = AuditEvent.objects.get(action="serving_config.rollback")
    assert event.before["revision"] == 2 and event.after == {"revision": 3, "spec": one.spec, "restored_revision": 1}
    assert event.reason == "latency regression"
    assert list(model.serving_configs.order_by("revision").values_list("revision", flat=True)) == [1, 2, 3]


def test_rollback_to_the_current_config_writes_nothing(model, as_team_admin):
    serving_config_save(reason="tune", actor=as_team_admin, model=model, spec=BATCHING)
    serving_config_save(reason="tune", actor=as_team_admin, model=model, spec={})
    serving_config_save(reason="tune", actor=as_team_admin, model=model, spec=BATCHING)
    again = serving_config_rollback(actor=as_team_admin, model=model, revision=1, reason="same")
    assert (again.revision, again.created) == (3, False)


def test_rollback_needs_a_reason_an_existing_revision_and_the_admin_role(model, as_team_admin, deployer):
    serving_config_save(reason="tune", actor=as_team_admin, model=model, spec=BATCHING)
    serving_config_save(reason="tune", actor=as_team_admin, model=model, spec={})
    with pytest.raises(ValidationError) as exc:
        serving_config_rollback(actor=as_team_admin, model=model, revision=1, reason="  ")
    assert list(exc.value.message_dict) == ["reason"]
    with pytest.raises(ValidationError) as exc:
        serving_config_rollback(actor=as_team_admin, model=model, revision=9, reason="x")
    assert list(exc.value.message_dict) == ["revision"]
    with pytest.raises(PermissionDenied):
        serving_config_rollback(actor=Actor(user=deployer, source="ui"), model=model, revision=1, reason="x")
    assert model.serving_configs.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_get_consecutive_revisions(team, model, team_admin):
    """The row lock on the model serializes numbering: no duplicate-revision IntegrityError."""
    if connection.vendor != "postgresql":
        pytest.fail("run the suite on PostgreSQL (scripts/test)")
    errors, barrier = [], threading.Barrier(6)

    def save(size):
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            serving_config_save(reason="tune", actor=Actor(user=team_admin, source="api"), model=model, spec={"max_batch_size": size})
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=save, args=(size,)) for size in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(model.serving_configs.values_list("revision", flat=True)) == [1, 2, 3, 4, 5, 6]
    assert AuditEvent.objects.filter(action="serving_config.save").count() == 6
