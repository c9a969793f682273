"""The pages, in Debian's chromium, against the live server and (for Fleet) real tritonservers."""
import re
import time

import pytest
from playwright.sync_api import expect

from controlplane.audit.context import Actor
from controlplane.devstack.testmodels import python_model_files, test_model_config
from controlplane.fleet.services import fleet_probe, pool_create, server_register
from controlplane.fleet.triton_client import TritonClient
from controlplane.registry.services import model_create, version_register
from tests.browser.conftest import NAV, in_thread
from tests.conftest import PASSWORD, TENSORS_IN, TENSORS_OUT
from tests.fleet_fixtures import TEST_BUCKET

pytestmark = pytest.mark.browser

DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens there
NAV_PATHS = dict(zip(NAV, ["/", "/models/", "/endpoints/", "/fleet/", "/deployments/", "/audit/", "/team/"]))


def nav_links(page):
    return page.get_by_role("navigation", name="Main").get_by_role("link")


def test_signing_in(ui, deployer):
    page = ui.page
    ui.goto("/models/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/models/$"))
    expect(nav_links(page)).to_have_count(0)

    page.get_by_label("Username").fill("dana")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Your username and password did not match.")
    expect(page.get_by_label("Username")).to_have_value("dana")
    expect(nav_links(page)).to_have_count(0)

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(ui.url("/models/"))  # back to where the redirect came from
    expect(nav_links(page)).to_have_text(NAV)
    expect(page.locator(".session")).to_contain_text("dana")

    # each link leads to its page (not, say, to the API's view of the same name) and is marked current
    for label, path in NAV_PATHS.items():
        nav_links(page).filter(has_text=label).click()
        expect(page).to_have_url(ui.url(path))
        expect(nav_links(page).and_(page.locator('[aria-current="page"]'))).to_have_text([label])
        expect(page).to_have_title(re.compile(r" · Switchyard$"))
    ui.assert_only_local()


def test_models_list_filter_and_detail(ui, s3, team, deployer, outsider, other_team):
    as_dana = Actor(user=deployer, source="api")
    scorer = model_create(actor=as_dana, team=team, name="fraud-scorer", backend="python",
                          max_batch_size=8, inputs=TENSORS_IN, outputs=TENSORS_OUT)
    model_create(actor=as_dana, team=team, name="resnet50", backend="onnxruntime",
                 inputs=TENSORS_IN, outputs=TENSORS_OUT)
    whisper = model_create(actor=Actor(user=outsider, source="api"), team=other_team, name="whisper",
                           backend="python", inputs=TENSORS_IN, outputs=TENSORS_OUT)
    version, created = version_register(actor=as_dana, model=scorer, version=1,
                                        contents={"model.py": b"# a python backend model\n"})
    assert created
    page = ui.page

    ui.sign_in("dana")
    ui.goto("/models/")
    rows = page.locator("table.models tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.locator("td:nth-child(1)")).to_have_text(["fraud-scorer", "resnet50"])
    expect(rows.locator("td:nth-child(2)")).to_have_text(["vision", "vision"])
    expect(rows.first.locator("td")).to_have_text(["fraud-scorer", "vision", "python", "8", "1", "v1"])
    expect(page.get_by_text("whisper")).to_have_count(0)
    ui.screenshot("models-list")

    page.get_by_label("Backend").select_option("onnxruntime")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"backend=onnxruntime"))
    expect(rows.locator("td:nth-child(1)")).to_have_text(["resnet50"])

    # speech's python model matches too, but dana must still not see it
    page.get_by_label("Backend").select_option("python")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"backend=python"))
    expect(rows.locator("td:nth-child(1)")).to_have_text(["fraud-scorer"])

    page.get_by_role("link", name="fraud-scorer").click()
    expect(page).to_have_url(ui.url(f"/models/{scorer.pk}/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("fraud-scorer python")
    expect(page.locator(".facts")).to_contain_text("vision.fraud-scorer")
    signature = page.locator("section.card", has=page.get_by_role("heading", name="Signature"))
    tensors = signature.locator("table.compact tbody tr")
    expect(tensors).to_have_count(3)
    expect(tensors.nth(0).locator("td")).to_have_text(["in", "INPUT0", "TYPE_FP32", "[4]"])
    expect(tensors.nth(1).locator("td")).to_have_text(["out", "OUTPUT0", "TYPE_FP32", "[4]"])
    expect(tensors.nth(2).locator("td")).to_have_text(["out", "VERSION", "TYPE_INT32", "[1]"])
    history = page.locator("ul.events li")
    expect(history.filter(has_text="model.create")).to_have_count(1)
    expect(history.filter(has_text="model.create")).to_contain_text("dana")
    versions = page.locator("table.versions tbody tr")
    expect(versions).to_have_count(1)
    expect(versions.first.locator("td").nth(0)).to_have_text("v1")
    expect(versions.first.locator("td").nth(1)).to_have_text(f"s3://{TEST_BUCKET}/repo/vision.fraud-scorer/1/")
    expect(versions.first.locator("td").nth(3)).to_have_text(version.checksum[:19] + "…")
    expect(versions.first.locator("td").nth(4)).to_contain_text("by dana")
    ui.screenshot("model-detail")

    # another team's model is reported as missing
    response = ui.goto(f"/models/{whisper.pk}/")
    assert response.status == 404
    ui.assert_only_local()


@pytest.fixture
def loaded_model(s3, triton_fleet, model, deployer):
    """vision.fraud-scorer v1, registered through the registry (which writes it into the fleet's
    S3 repository) and loaded on the first real tritonserver. Unloaded afterwards."""
    version_register(actor=Actor(user=deployer, source="api"), model=model, version=1,
                     contents=python_model_files(version=1))
    client = TritonClient(triton_fleet[0].http_url, timeout=5, load_timeout=120)
    in_thread(client.load, model.triton_name, config=test_model_config(model.triton_name))
    assert in_thread(client.model_ready, model.triton_name)
    yield model.triton_name
    try:
        in_thread(client.unload, model.triton_name)
    except Exception:
        pass


def test_fleet_shows_real_servers(ui, triton_fleet, loaded_model, deployer):
    system = Actor.system()
    pool = pool_create(actor=system, name="cpu")
    live = [server_register(actor=system, name=f"triton-{i}", pool=pool, http_url=s.http_url)
            for i, s in enumerate(triton_fleet)]
    server_register(actor=system, name="triton-dead", pool=pool, http_url=DEAD_URL)
    counts = fleet_probe()
    assert counts == {"up": len(live), "down": 1}
    page = ui.page

    ui.sign_in("dana")
    ui.goto("/fleet/")
    expect(page.locator("table.servers tbody tr")).to_have_count(3)
    expect(page.locator(".summary")).to_contain_text(f"3 servers: {len(live)} up 0 not ready 1 down")
    version = in_thread(TritonClient(triton_fleet[0].http_url).metadata)["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    for i, server in enumerate(triton_fleet):
        row = page.locator(f'tr[data-server="triton-{i}"]')
        expect(row.locator(".pill")).to_have_text("Up")
        expect(row.locator(".pill")).to_have_class(re.compile(r"\bup\b"))
        expect(row.locator("td").nth(0)).to_contain_text(server.http_url)
        expect(row.locator("td").nth(4)).to_have_text(version)
        expect(row.locator(".error")).to_have_count(0)
        expect(row.locator("td").nth(6)).to_have_text(re.compile(r"ago$"))

    first = page.locator('tr[data-server="triton-0"] .model-state')
    expect(first).to_have_count(1)
    expect(first).to_have_text(f"{loaded_model} v1 READY")
    expect(first.locator(".state")).to_have_class(re.compile(r"\bready\b"))
    # the second server shares the repository but never loaded the model
    expect(page.locator('tr[data-server="triton-1"] td').nth(5)).to_have_text("none")

    dead = page.locator('tr[data-server="triton-dead"]')
    expect(dead.locator(".pill")).to_have_text("Down")
    expect(dead.locator(".pill")).to_have_class(re.compile(r"\bdown\b"))
    expect(dead.locator(".error")).to_contain_text("live:")
    expect(dead.locator(".error")).to_contain_text(DEAD_URL)
    expect(dead.locator("td").nth(4)).to_have_text("—")
    expect(dead.locator("td").nth(6)).to_have_text("never")
    ui.screenshot("fleet")

    # htmx refreshes the table every 5 s: an unload recorded by the prober shows up without a reload
    client = TritonClient(triton_fleet[0].http_url)
    in_thread(client.unload, loaded_model)
    deadline = time.monotonic() + 30
    while {r["name"]: r["state"] for r in in_thread(client.index)}.get(loaded_model) != "UNAVAILABLE":
        assert time.monotonic() < deadline, "Triton did not finish unloading the model"
        time.sleep(0.1)
    fleet_probe()
    expect(first).to_have_text(re.compile(rf"^{re.escape(loaded_model)} v1 UNAVAILABLE"), timeout=8_000)
    ui.assert_only_local()
