"""Pure helpers for a version's files: safe paths, archives, the manifest and its checksum."""
import hashlib
import io
import posixpath
import tarfile
import zipfile
from dataclasses import dataclass

from django.core.exceptions import ValidationError

from controlplane.common.errors import PayloadTooLarge


@dataclass(frozen=True)
class ArtifactFile:
    path: str  # relative to the version directory, "/"-separated
    size: int
    sha256: str


def safe_relpath(path: str, field: str) -> str:
    """Reject absolute paths, "..", backslashes and empty names."""
    if not isinstance(path, str) or not path or "\\" in path or "\x00" in path or path.startswith("/"):
        raise ValidationError({field: f"File path {path!r} is not a relative path."})
    normal = posixpath.normpath(path)
    if normal in (".", "") or normal.startswith("../") or normal == ".." or normal != path.rstrip("/"):
        raise ValidationError({field: f"File path {path!r} is not a clean relative path."})
    return normal


def archive_member_path(name: str, field: str) -> str:
    """An archive member's path relative to the version directory.

    ``tar czf v3.tar.gz -C dir .`` names members ``./model.py``; the ``./`` is dropped and the
    rest must still be a clean relative path.
    """
    while name.startswith("./"):
        name = name[2:]
    return safe_relpath(name, field)


def manifest_checksum(files: list[ArtifactFile]) -> str:
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        digest.update(f"{f.path}\0{f.size}\0{f.sha256}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def describe(contents: dict[str, bytes]) -> list[ArtifactFile]:
    return [ArtifactFile(path, len(data), hashlib.sha256(data).hexdigest()) for path, data in sorted(contents.items())]


def check_required(paths: list[str], required: str, field: str) -> None:
    """``required`` is a file name, or a directory name ending in "/"."""
    if required.endswith("/"):
        present = any(p.startswith(required) for p in paths)
    else:
        present = required in paths
    if not present:
        what = f"a {required} directory" if required.endswith("/") else f"a {required} file"
        found = ", ".join(sorted(paths)[:10]) or "nothing"
        raise ValidationError({field: f"The version must contain {what} at its top level for this backend; found {found}."})


def extract_archive(name: str, data: bytes, *, limit: int, field: str = "archive") -> dict[str, bytes]:
    """Unpack a .tar, .tar.gz or .zip held in memory. Refuses links, unsafe paths and bombs."""
    files: dict[str, bytes] = {}
    total = 0

    def add(path: str, content: bytes):
        nonlocal total
        total += len(content)
        if total > limit:
            raise PayloadTooLarge(field, f"The archive unpacks to more than {limit} bytes, the upload limit.")
        files[archive_member_path(path, field)] = content

    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for info in archive.infolist():
                    if info.is_dir():
                        continue
                    if info.file_size > limit:
                        raise PayloadTooLarge(field, f"{info.filename} unpacks to {info.file_size} bytes, over the limit of {limit}.")
                    add(info.filename, archive.read(info))
        else:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
                for member in archive.getmembers():
                    if member.isdir():
                        continue
                    if not member.isfile():
                        raise ValidationError({field: f"{member.name} is a link or special file; only regular files are allowed."})
                    if member.size > limit:
                        raise PayloadTooLarge(field, f"{member.name} unpacks to {member.size} bytes, over the limit of {limit}.")
                    add(member.name, archive.extractfile(member).read())
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValidationError({field: f"{name or 'The archive'} is not a readable .tar, .tar.gz or .zip file ({exc})."}) from None
    if not files:
        raise ValidationError({field: "The archive holds no files."})
    return files
