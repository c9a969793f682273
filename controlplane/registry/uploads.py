"""Uploaded version contents, from the API's multipart body or the UI's upload form, as the
``contents`` that ``services.version_register`` takes."""
from django.conf import settings
from django.core.exceptions import ValidationError

from controlplane.common.errors import PayloadTooLarge
from controlplane.registry.artifacts import extract_archive, safe_relpath


def check_upload_length(length: int) -> None:
    """Refuse an oversized request by its Content-Length, before its body is read."""
    limit = settings.SWITCHYARD_MAX_UPLOAD_BYTES
    if length > limit:
        raise PayloadTooLarge("files", f"The upload is {length} bytes; the limit is {limit} (SWITCHYARD_MAX_UPLOAD_MB).")


def upload_field(files, archive) -> str:
    """The field that problems with uploaded contents are reported under."""
    return "archive" if archive is not None and not files else "files"


def uploaded_contents(files, archive) -> dict[str, bytes] | None:
    """{path: bytes} from uploaded files and/or one archive; None when nothing was uploaded."""
    if not files and archive is None:
        return None
    limit = settings.SWITCHYARD_MAX_UPLOAD_BYTES
    contents: dict[str, bytes] = {}
    if archive is not None:
        contents.update(extract_archive(archive.name, archive.read(), limit=limit))
    for upload in files or []:
        path = safe_relpath(upload.name, "files")
        if path in contents:
            raise ValidationError({"files": f"{path} is uploaded twice."})
        contents[path] = upload.read()
    total = sum(len(b) for b in contents.values())
    if total > limit:
        raise PayloadTooLarge("files", f"The files add up to {total} bytes; the limit is {limit}.")
    return contents
