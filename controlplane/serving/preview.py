"""What saving a spec would do, without writing: shared by the API's preview and the editor."""
from django.core.exceptions import ValidationError

from controlplane.registry.models import Model
from controlplane.serving import selectors
from controlplane.serving.diff import spec_diff
from controlplane.serving.render import render_spec
from controlplane.serving.validation import spec_errors, validate_spec


def serving_config_preview(model: Model, spec, *, pool_has_gpus: bool | None = None,
                           versions: list[int] | None = None) -> dict:
    """Validate ``spec`` and compare it with the current revision (or, before the first one, with
    the defaults the model runs on).

    Returns {"valid", "errors", "spec", "current_revision", "changes", "rendered"}: errors are
    keyed ``spec.<field path>``; spec (normalised), changes and rendered are None when invalid.
    """
    current = selectors.serving_config_current(model)
    base = current.spec if current is not None else validate_spec({}, model=model)
    result = {"valid": True, "errors": {}, "spec": None, "current_revision": current.revision if current else None,
              "changes": None, "rendered": None}
    try:
        normalised = validate_spec(spec, model=model, pool_has_gpus=pool_has_gpus)
    except ValidationError as exc:
        result.update(valid=False, errors=spec_errors(exc))
        return result
    result.update(spec=normalised, changes=spec_diff(base, normalised), rendered=render_spec(model, normalised, versions=versions))
    return result
