"""What the model page shows for this app. The registry's model_detail view merges this in.

Stored state renders at once; what Triton said at the last sample (versions, batching) arrives
through an htmx fragment. Neither waits on a server: a periodic task takes the samples.
"""
from dataclasses import dataclass

from controlplane.accounts.models import Role
from controlplane.accounts.selectors import has_role
from controlplane.fleet.models import Server
from controlplane.placements import selectors
from controlplane.placements.forms import PlacementCreateForm
from controlplane.placements.models import RETRYABLE_STATES, Placement, PlacementTarget
from controlplane.registry.selectors import versions_of
from controlplane.serving.models import ServingConfig
from controlplane.serving.selectors import serving_config_current

FORM_VERSIONS = 20  # the newest ready versions offered in the form


@dataclass(frozen=True)
class TargetRow:
    target: PlacementTarget
    live: object | None = None  # services.LiveTarget, once the target has a sample

    @property
    def insight(self):
        return getattr(self.live, "insight", None)


def target_rows(placement: Placement, live: dict | None = None) -> list[TargetRow]:
    return [TargetRow(t, (live or {}).get(t.pk)) for t in placement.targets.all() if t.is_active]


def placement_card(placement: Placement, live: dict | None = None) -> dict:
    rows = target_rows(placement, live)
    first = next(iter((live or {}).values()), None)
    return {
        # Where the batching columns come from ("prometheus" or "triton"), and why they are empty.
        "insight_source": getattr(first, "insight_source", ""),
        "insight_problem": getattr(first, "insight_problem", ""),
        "placement": placement,
        "rows": rows,
        "states": selectors.target_summary(r.target for r in rows),
        "can_retry": any(r.target.state in RETRYABLE_STATES for r in rows),
        "max_batch_size": placement.rendered_config.get("max_batch_size"),
        "live_loaded": live is not None,
    }


PICKER_SERVERS = 50


def model_page_context(model, user, *, form=None, failed=None) -> dict:
    """``form``: a refused PlacementCreateForm to show again; ``failed``: (placement id, form) of
    a refused retry or remove, whose errors show on that placement's card."""
    run = selectors.reconcile_last()
    section = {
        "cards": [placement_card(p) for p in selectors.placements_of_model(model)],
        "failed_pk": failed[0] if failed else None,
        "failed_form": failed[1] if failed else None,
        "removed": selectors.placements_removed_of_model(model),
        "extras": selectors.extras_of_model(run, model),
        "last_run": run,
        "can_deploy": has_role(user, model.team, Role.DEPLOYER),
    }
    # A refused action whose form this user is not shown (no deployer role): its errors head the section.
    section["refused_form"] = (form or section["failed_form"]) if not section["can_deploy"] else None
    if section["can_deploy"]:
        section["form"] = {
            "bound": form if form is not None else PlacementCreateForm(auto_id="placement-%s"),
            "versions": list(versions_of(model).values_list("version", flat=True)[:FORM_VERSIONS]),
            # A multi-select up to PICKER_SERVERS; past that a names field keeps the page small.
            "servers": list(Server.objects.select_related("pool").order_by("pool__name", "name")[: PICKER_SERVERS + 1]),
            "picker_servers": PICKER_SERVERS,
            "configs": list(ServingConfig.objects.filter(model=model).order_by("-revision").values_list("revision", flat=True)[:50]),
            "current_config": serving_config_current(model),
        }
    return {"placements_section": section}
