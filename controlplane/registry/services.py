"""Writes to the model registry. Each change writes its audit event in the same transaction."""
import json

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from controlplane.accounts.access import authorize
from controlplane.accounts.models import Role, Team
from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record, create_audited, snapshot
from controlplane.common.errors import Conflict, UpstreamError
from controlplane.endpoints.publication import request_publish
from controlplane.registry import storage
from controlplane.registry.artifacts import ArtifactFile, check_required, describe, manifest_checksum
from controlplane.registry.models import Model, ModelVersion, VersionStatus

MODEL_FIELDS = ["name", "backend", "max_batch_size", "inputs", "outputs", "description"]
VERSION_FIELDS = ["version", "artifact_uri", "source_uri", "checksum", "size_bytes", "metadata"]
MAX_METADATA_BYTES = 64 * 1024


def model_create(
    *,
    actor: Actor,
    team: Team,
    name: str,
    backend: str,
    inputs: list,
    outputs: list,
    max_batch_size: int = 0,
    description: str = "",
) -> Model:
    authorize(actor, team, Role.DEPLOYER)
    model = Model(
        team=team,
        name=name,
        backend=backend,
        max_batch_size=max_batch_size,
        inputs=inputs,
        outputs=outputs,
        description=description,
        created_by=actor.user,
    )
    model.full_clean(validate_unique=False, validate_constraints=False)
    duplicate = Conflict("name", f"Team {team.slug} already has a model named {name}.")
    return create_audited(model, actor=actor, action="model.create", fields=MODEL_FIELDS, duplicate=duplicate, team=team)


MAX_VERSION = 2**31 - 1  # ModelVersion.version is a PostgreSQL integer


def _version_number(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise ValidationError({"version": f"The version must be an integer from 1 to {MAX_VERSION}."})
    return value


def _check_metadata(metadata) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValidationError({"metadata": "Metadata must be a JSON object."})
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise ValidationError({"metadata": f"Metadata is limited to {MAX_METADATA_BYTES} bytes of JSON."})
    return metadata


def version_prefix(model: Model, number: int) -> str:
    """Where Triton finds a version: <repository prefix>/<triton name>/<version>."""
    return f"{settings.SWITCHYARD_S3_PREFIX}/{model.triton_name}/{number}"


def staging_prefix(team: Team) -> str:
    """Where a team's CI stages builds for registration: <staging prefix>/<team>."""
    return f"{settings.SWITCHYARD_S3_STAGING_PREFIX}/{team.slug}"


def staging_uri(team: Team) -> str:
    """The team's staging area as an s3:// URI, for hints in forms."""
    return storage.uri(staging_prefix(team))


def _staged_source(model: Model, source_uri: str) -> str:
    """The key prefix of a source, which must lie in the model's team's staging area.

    Never the repository: every object there belongs to a registered version, possibly another
    team's. The error names only the caller's own staging area, so it reveals nothing else.
    """
    src = storage.parse_uri(source_uri, "source_uri")
    own = staging_prefix(model.team)
    if not src.startswith(f"{own}/"):
        raise ValidationError(
            {"source_uri": f"Stage the version under your team's staging area {storage.uri(own)} "
             f"(for example {storage.uri(own)}{model.name}/<build>/) and register it from there."}
        )
    return src


def version_register(
    *,
    actor: Actor,
    model: Model,
    version,
    source_uri: str | None = None,
    contents: dict[str, bytes] | None = None,
    contents_field: str = "files",
    metadata: dict | None = None,
) -> tuple[ModelVersion, bool]:
    """Register an immutable version from an S3 prefix or from uploaded files.

    Returns (version, created). The same number with the same content is a no-op, so CI can
    retry; with different content it is a 409. Artifacts are copied into Triton's repository
    layout under the configured prefix. ``contents_field`` names the input that uploaded contents
    came from (files or archive), for errors.
    """
    authorize(actor, model.team, Role.DEPLOYER)
    number = _version_number(version)
    metadata = _check_metadata(metadata)
    if (source_uri is None) == (contents is None):
        raise ValidationError({"source_uri": "Give either source_uri or uploaded files (files or archive), not both."})
    dest = version_prefix(model, number)

    # Read and validate everything before writing anything.
    if source_uri is not None:
        field = "source_uri"
        src = _staged_source(model, source_uri)
        sizes = storage.list_files(src, field)
        if not sizes:
            raise ValidationError({field: f"No objects found under {storage.uri(src)}."})
        check_required(list(sizes), model.required_artifact, field)
        files = [ArtifactFile(rel, size, storage.sha256_of(f"{src}/{rel}", field)) for rel, size in sorted(sizes.items())]
    else:
        field = contents_field
        if not contents:
            raise ValidationError({field: "Upload at least one file."})
        check_required(list(contents), model.required_artifact, field)
        files = describe(contents)
    checksum = manifest_checksum(files)

    claim, proceed = _claim_number(model, number, checksum, files, source_uri or "", storage.uri(dest), metadata, actor)
    if not proceed:
        return claim, False
    try:
        storage.delete_prefix(dest, field)
        if source_uri is None:
            storage.put_files(dest, contents, field)
        else:
            storage.copy_files(src, dest, [f.path for f in files], field)
    except UpstreamError:
        ModelVersion.objects.filter(pk=claim.pk, status=VersionStatus.REGISTERING).delete()
        raise

    with transaction.atomic():
        marked = ModelVersion.objects.filter(pk=claim.pk, status=VersionStatus.REGISTERING).update(status=VersionStatus.READY)
        claim.refresh_from_db()
        if not marked:  # a concurrent identical registration finished first
            return claim, False
        audit_record(actor=actor, action="version.register", obj=claim, team=model.team, after=snapshot(claim, VERSION_FIELDS))
        request_publish()  # a new highest version moves the computed "latest" label
    return claim, True


def _claim_number(model, number, checksum, files, source_uri, artifact_uri, metadata, actor) -> tuple[ModelVersion, bool]:
    """Reserve the version number under a row lock on the model, or find it taken."""
    with transaction.atomic():
        Model.objects.select_for_update().filter(pk=model.pk).first()
        existing = ModelVersion.objects.filter(model=model, version=number).first()
        if existing is not None:
            if existing.checksum != checksum:
                raise Conflict(
                    "version",
                    f"{model} v{number} already exists with different content ({existing.checksum}, "
                    f"this upload is {checksum}). Versions are immutable: register a new number.",
                )
            # Same content: done already, or an earlier attempt died half-way and we finish it.
            return existing, existing.status == VersionStatus.REGISTERING
        claim = ModelVersion.objects.create(
            model=model,
            version=number,
            status=VersionStatus.REGISTERING,
            source_uri=source_uri,
            artifact_uri=artifact_uri,
            checksum=checksum,
            size_bytes=sum(f.size for f in files),
            files=[{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files],
            metadata=metadata,
            created_by=actor.user,
        )
        return claim, True
