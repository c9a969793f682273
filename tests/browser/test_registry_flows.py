"""Registering models and versions in the browser: the tensor editor, the upload with its progress
bar, a version from the staging area, and the API's errors next to their fields."""
import io
import json
import os
import re
import tarfile

import pytest
from playwright.sync_api import expect

from controlplane.audit.models import AuditEvent
from controlplane.registry.models import Model, ModelVersion
from tests.fleet_fixtures import TEST_BUCKET

pytestmark = pytest.mark.browser


def tensor_rows(page, side: str):
    return page.locator(f"[data-tensor-editor={side}] tr[data-tensor-row]")


def fill_row(row, noun: str, name: str, data_type: str, dims: str):
    row.get_by_label(f"{noun} name").fill(name)
    row.get_by_label(f"{noun} data type").select_option(data_type)
    row.get_by_label(f"{noun} dims").fill(dims)


def test_register_a_model_with_two_inputs(ui, deployer):
    page = ui.page
    ui.sign_in("dana")
    ui.goto("/models/")
    page.get_by_role("link", name="Register a model").click()
    expect(page).to_have_url(ui.url("/models/new/"))
    page.wait_for_load_state()  # registry.js is deferred; a click can come before it runs
    form = page.get_by_role("form", name="Register a model")
    form.get_by_label("Team").select_option("vision")
    form.get_by_label("Name", exact=True).fill("resnet")
    form.get_by_label("Backend").select_option("onnxruntime")
    form.get_by_label("Max batch size").fill("8")
    form.get_by_label("Description").fill("ImageNet classifier")

    inputs = tensor_rows(page, "inputs")
    expect(inputs).to_have_count(1)
    fill_row(inputs.nth(0), "Input", "IMAGE", "TYPE_UINT8", "3, -1, -1")
    page.get_by_role("button", name="Add input").click()
    page.get_by_role("button", name="Add input").click()
    expect(inputs).to_have_count(3)
    expect(inputs.nth(2).get_by_label("Input name")).to_be_focused()  # the newest row
    fill_row(inputs.nth(1), "Input", "MISTAKE", "TYPE_BOOL", "1")
    fill_row(inputs.nth(2), "Input", "SCALE", "TYPE_FP32", "1")
    inputs.nth(1).get_by_role("button", name="Remove input").click()
    expect(inputs).to_have_count(2)
    expect(inputs.nth(1).get_by_label("Input name")).to_have_value("SCALE")
    fill_row(tensor_rows(page, "outputs").nth(0), "Output", "PROBS", "TYPE_FP32", "1000")
    ui.screenshot("model-register-editor")

    page.get_by_role("button", name="Register model").click()
    model = Model.objects.get(name="resnet")
    expect(page).to_have_url(ui.url(f"/models/{model.pk}/versions/new/"))
    expect(page.get_by_role("status")).to_have_text("Registered vision/resnet. Register its first version below.")
    assert model.inputs == [
        {"name": "IMAGE", "data_type": "TYPE_UINT8", "dims": [3, -1, -1]},
        {"name": "SCALE", "data_type": "TYPE_FP32", "dims": [1]},
    ]
    assert (model.backend, model.max_batch_size, model.description) == ("onnxruntime", 8, "ImageNet classifier")
    assert AuditEvent.objects.get(action="model.create").source == "ui"

    page.get_by_role("link", name="resnet").click()
    signature = page.locator("section.card", has=page.get_by_role("heading", name="Signature"))
    expect(signature.locator("tbody tr td:nth-child(2)")).to_have_text(["IMAGE", "SCALE", "PROBS"])
    ui.assert_only_local()


def test_a_bad_tensor_shows_its_error_next_to_the_field(ui, deployer):
    page = ui.page
    ui.sign_in("dana")
    ui.goto("/models/new/")
    page.get_by_label("Name", exact=True).fill("resnet")
    fill_row(tensor_rows(page, "inputs").nth(0), "Input", "IMAGE", "TYPE_UINT8", "3, 224, 224")
    page.get_by_role("button", name="Add input").click()
    fill_row(tensor_rows(page, "inputs").nth(1), "Input", "SCALE", "TYPE_FP32", "1, 0")
    fill_row(tensor_rows(page, "outputs").nth(0), "Output", "PROBS", "TYPE_FP32", "1000")
    page.get_by_role("button", name="Register model").click()

    bad = tensor_rows(page, "inputs").nth(1).get_by_label("Input dims")
    expect(bad).to_have_attribute("aria-invalid", "true")
    expect(bad).to_have_value("1, 0")
    expect(bad).to_have_accessible_description(re.compile(r"^Give 1-8 dimensions, each -1 \(variable\) or a positive integer"))
    expect(tensor_rows(page, "inputs").nth(0).get_by_label("Input dims")).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#id_inputs_error")).to_have_text("Fix the marked tensors.")
    expect(page.get_by_label("Name", exact=True)).to_have_value("resnet")
    ui.screenshot("model-register-bad-dims")
    assert not Model.objects.exists()

    bad.fill("1")
    page.get_by_role("button", name="Register model").click()
    expect(page.get_by_role("status")).to_contain_text("Registered vision/resnet.")
    assert Model.objects.get().inputs[1]["dims"] == [1]


def _archive(size: int) -> bytes:
    """A .tar.gz of a python-backend version with an incompressible file, so it stays ~size bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("model.py", b"# v3\n"), ("weights.bin", os.urandom(size))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


RECORD_PROGRESS = """() => {
  const bar = document.querySelector("#version-upload [data-upload-bar]");
  sessionStorage.setItem("progress", "[]");
  new MutationObserver(() => {
    const seen = JSON.parse(sessionStorage.getItem("progress"));
    seen.push(Number(bar.value));
    sessionStorage.setItem("progress", JSON.stringify(seen));
  }).observe(bar, {attributes: true, attributeFilter: ["value"]});
}"""


def test_register_a_version_by_archive_upload_with_progress(ui, s3, model, deployer):
    page = ui.page
    ui.sign_in("dana")
    ui.goto(f"/models/{model.pk}/")
    page.get_by_role("link", name="Register a version").click()
    expect(page).to_have_url(ui.url(f"/models/{model.pk}/versions/new/"))
    page.wait_for_load_state()  # registry.js is deferred; a click can come before it runs
    upload = page.locator("form#version-upload")
    expect(upload.get_by_label("Version")).to_have_value("1")

    # a broken archive: the script swaps in the server's form, with the error next to the field
    upload.get_by_label("Version").fill("3")
    upload.get_by_label("Archive").set_input_files({"name": "v3.tar.gz", "mimeType": "application/gzip", "buffer": b"not a tarball"})
    upload.get_by_role("button", name="Upload and register").click()
    archive = page.locator("form#version-upload").get_by_label("Archive")
    expect(archive).to_have_attribute("aria-invalid", "true")
    expect(archive).to_have_accessible_description(re.compile(r"v3\.tar\.gz is not a readable \.tar, \.tar\.gz or \.zip file"))
    expect(page).to_have_url(ui.url(f"/models/{model.pk}/versions/new/"))
    assert not ModelVersion.objects.exists()

    # 3 MB at 1 MB/s, so the bar has time to move
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions",
             {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 1024 * 1024})
    page.evaluate(RECORD_PROGRESS)
    upload = page.locator("form#version-upload")
    expect(upload.get_by_label("Version")).to_have_value("3")
    upload.get_by_label("Archive").set_input_files({"name": "v3.tar.gz", "mimeType": "application/gzip", "buffer": _archive(3 * 1024 * 1024)})
    upload.get_by_label("Metadata").fill('{"git": "abc123"}')
    upload.get_by_role("button", name="Upload and register").click()
    bar = upload.get_by_label("Upload progress")
    expect(bar).to_be_visible()
    page.wait_for_function("() => { const b = document.querySelector('#version-upload progress'); return !b || (b.value > 20 && b.value < 90); }")
    if page.url.endswith("/versions/new/"):
        ui.screenshot("version-upload-progress")

    expect(page).to_have_url(ui.url(f"/models/{model.pk}/#versions"), timeout=30_000)  # 3 s of upload, then S3
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    expect(page.get_by_role("status")).to_have_text("Registered vision/fraud-scorer v3.")
    seen = json.loads(page.evaluate("() => sessionStorage.getItem('progress')"))
    assert seen[-1] == 100 and seen == sorted(seen), seen
    assert any(0 < v < 100 for v in seen), seen  # it moved, not only jumped to the end
    row = page.locator("table.versions tbody tr").first
    expect(row.locator("td").nth(0)).to_have_text("v3")
    expect(row.locator("td").nth(2)).to_have_text(re.compile(r"^3\.0\sMB$"))
    version = ModelVersion.objects.get(model=model, version=3)
    assert version.metadata == {"git": "abc123"} and {f["path"] for f in version.files} == {"model.py", "weights.bin"}
    assert AuditEvent.objects.get(action="version.register").source == "ui"
    ui.screenshot("version-uploaded")
    ui.assert_only_local()


def test_register_a_version_from_the_staging_area(ui, s3, model, deployer):
    s3.put_object(Bucket=TEST_BUCKET, Key="staging/vision/fraud-scorer/build-7/model.py", Body=b"# v7\n")
    s3.put_object(Bucket=TEST_BUCKET, Key="staging/vision/fraud-scorer/build-7/labels.txt", Body=b"cat\ndog\n")
    page = ui.page
    ui.sign_in("dana")
    ui.goto(f"/models/{model.pk}/versions/new/")
    form = page.locator("form#version-from-s3")
    source = form.get_by_label("Source URI")
    expect(source).to_have_accessible_description(re.compile(re.escape(f"s3://{TEST_BUCKET}/staging/vision/<folder>/")))
    form.get_by_label("Version").fill("7")
    source.fill(f"s3://{TEST_BUCKET}/staging/vision/fraud-scorer/build-7/")
    ui.screenshot("version-from-s3-form")
    form.get_by_role("button", name="Register from S3").click()

    expect(page).to_have_url(ui.url(f"/models/{model.pk}/#versions"))
    expect(page.get_by_role("status")).to_have_text("Registered vision/fraud-scorer v7.")
    expect(page.locator("table.versions tbody tr").first.locator("td").nth(1)).to_have_text(
        f"s3://{TEST_BUCKET}/repo/vision.fraud-scorer/7/")
    assert s3.get_object(Bucket=TEST_BUCKET, Key="repo/vision.fraud-scorer/7/labels.txt")["Body"].read() == b"cat\ndog\n"
    assert AuditEvent.objects.get(action="version.register").source == "ui"


def test_a_bad_s3_uri_shows_the_error_next_to_the_source_field(ui, s3, model, deployer):
    page = ui.page
    ui.sign_in("dana")
    ui.goto(f"/models/{model.pk}/versions/new/")
    form = page.locator("form#version-from-s3")
    form.get_by_label("Version").fill("2")
    form.get_by_label("Source URI").fill(f"s3://{TEST_BUCKET}/repo/speech.secret/1/")
    form.get_by_role("button", name="Register from S3").click()

    form = page.locator("form#version-from-s3")
    source = form.get_by_label("Source URI")
    expect(source).to_have_attribute("aria-invalid", "true")
    expect(source).to_have_value(f"s3://{TEST_BUCKET}/repo/speech.secret/1/")
    expect(form.locator("#s3_source_uri_error")).to_have_text(
        f"Stage the version under your team's staging area s3://{TEST_BUCKET}/staging/vision/ "
        f"(for example s3://{TEST_BUCKET}/staging/vision/fraud-scorer/<build>/) and register it from there.")
    expect(form.get_by_label("Version")).to_have_value("2")
    ui.screenshot("version-from-s3-error")
    assert not ModelVersion.objects.exists()


def test_viewers_get_no_register_buttons(ui, model, viewer):
    ui.sign_in("vic")
    ui.goto("/models/")
    expect(ui.page.get_by_role("link", name="fraud-scorer")).to_be_visible()
    expect(ui.page.get_by_role("link", name="Register a model")).to_have_count(0)
    ui.goto(f"/models/{model.pk}/")
    expect(ui.page.get_by_role("heading", name="Versions")).to_be_visible()
    expect(ui.page.get_by_role("link", name="Register a version")).to_have_count(0)
