import io
import tarfile
import zipfile

import pytest
from django.core.exceptions import ValidationError

from controlplane.common.errors import PayloadTooLarge
from controlplane.registry.artifacts import check_required, describe, extract_archive, manifest_checksum, safe_relpath


def _tar(members: dict[str, bytes], mode="w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../x", "a/../../x", "a\\b", "./", "a//b"])
def test_unsafe_paths_are_refused(path):
    with pytest.raises(ValidationError):
        safe_relpath(path, "files")


def test_clean_paths_pass():
    assert safe_relpath("model.savedmodel/variables/v.index", "files") == "model.savedmodel/variables/v.index"


def test_checksum_depends_on_content_and_names_not_order():
    a = describe({"model.py": b"one", "extra.txt": b"two"})
    b = describe({"extra.txt": b"two", "model.py": b"one"})
    c = describe({"model.py": b"one!", "extra.txt": b"two"})
    assert manifest_checksum(a) == manifest_checksum(b)
    assert manifest_checksum(a) != manifest_checksum(c)
    assert manifest_checksum(a).startswith("sha256:")


def test_required_file_and_directory():
    check_required(["model.py"], "model.py", "files")
    check_required(["model.savedmodel/saved_model.pb"], "model.savedmodel/", "files")
    with pytest.raises(ValidationError, match="model.onnx"):
        check_required(["model.py"], "model.onnx", "files")
    with pytest.raises(ValidationError):
        check_required(["sub/model.py"], "model.py", "files")


def test_tar_gz_and_zip_archives_unpack():
    assert extract_archive("v.tgz", _tar({"model.py": b"x", "a/b.txt": b"yy"}), limit=100) == {"model.py": b"x", "a/b.txt": b"yy"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model.onnx", b"onnx")
    assert extract_archive("v.zip", buf.getvalue(), limit=100) == {"model.onnx": b"onnx"}


def test_archive_traversal_links_and_bombs_are_refused():
    with pytest.raises(ValidationError):
        extract_archive("evil.tgz", _tar({"../evil.py": b"x"}), limit=100)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("model.py")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ValidationError, match="link"):
        extract_archive("link.tar", buf.getvalue(), limit=100)
    with pytest.raises(PayloadTooLarge):
        extract_archive("big.tgz", _tar({"model.py": b"x" * 5000}), limit=1000)
    with pytest.raises(ValidationError, match="not a readable"):
        extract_archive("junk.tgz", b"definitely not an archive", limit=1000)


def _tar_of_dir(members: dict[str, bytes]) -> bytes:
    """What `tar czf x.tgz -C dir .` makes: a "." directory entry and "./"-prefixed members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        root = tarfile.TarInfo(".")
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_dot_slash_members_and_the_root_entry_are_accepted():
    data = _tar_of_dir({"./model.py": b"x", "./labels/classes.txt": b"a"})
    assert extract_archive("v3.tar.gz", data, limit=100) == {"model.py": b"x", "labels/classes.txt": b"a"}


@pytest.mark.parametrize("name", ["./../x", "./a/../../x", "./", ".//model.py", "/./model.py", "./a/./b", "./.."])
def test_dot_slash_does_not_open_a_way_out(name):
    with pytest.raises(ValidationError):
        extract_archive("evil.tgz", _tar_of_dir({name: b"x"}), limit=100)
