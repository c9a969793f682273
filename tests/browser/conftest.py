"""Browser tests: Debian's chromium driven by Playwright against pytest-django's live server.

Playwright's sync API keeps an asyncio loop running in the main thread, which makes Django
refuse ORM calls from test bodies (SynchronousOnlyOperation). The ORM is used synchronously
here, on purpose, so that guard is switched off before Django is touched.
"""
import os

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from tests.conftest import PASSWORD  # noqa: E402

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright's own browsers cannot be downloaded
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
NAV = ["Overview", "Models", "Endpoints", "Fleet", "Deployments", "Audit", "Team"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 800}}


class UI:
    """A page on the live server that records every request it makes."""

    def __init__(self, page, base_url):
        self.page = page
        self.base = base_url.rstrip("/")
        self.requests: list[str] = []
        page.set_default_timeout(10_000)
        page.on("request", lambda request: self.requests.append(request.url))

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def goto(self, path: str):
        return self.page.goto(self.url(path))

    def sign_in(self, username: str, password: str = PASSWORD):
        self.goto("/login/")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page).to_have_url(self.url("/"))

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        # caret="initial": hiding the caret leaves style="" on inputs, which a later htmx swap copies
        # into the page, where the CSP blocks it.
        self.page.screenshot(path=str(path), full_page=True, caret="initial")
        assert path.stat().st_size > 10_000, f"{path} looks empty"
        return path

    def assert_only_local(self):
        """Every request went to the live server, and the page's own assets were among them."""
        foreign = [u for u in self.requests if not u.startswith(f"{self.base}/")]
        assert foreign == [], f"requests left the live server: {foreign}"
        assets = {u.removeprefix(self.base).split("?")[0] for u in self.requests}
        assert {"/static/css/switchyard.css", "/static/vendor/htmx/htmx.min.js"} <= assets, sorted(assets)


@pytest.fixture
def ui(page, live_server):
    return UI(page, live_server.url)


def in_thread(fn, *args, **kwargs):
    """Run a Triton call off the main thread: tritonclient runs on gevent, whose hub must not
    share the main thread's greenlets with Playwright's sync dispatcher."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


@pytest.fixture
def purge_queued_tasks():
    """For tests that move deployments as the worker would: each transition queues
    deployments.advance, which no worker runs here, so the queue is emptied afterwards."""
    yield
    from controlplane.celery import app

    app.control.purge()
