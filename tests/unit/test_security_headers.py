"""Every response carries the strict CSP and a Referrer-Policy: pages, the API, sign-in, errors."""
import pytest

pytestmark = pytest.mark.django_db


def policy(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"{response.request['PATH_INFO']} ({response.status_code}) has no CSP header"
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {d[0]: d[1:] for d in directives}


def assert_strict(response, **extra):
    p = policy(response)
    for name in ("script-src", "style-src", "default-src"):
        assert p[name] == ["'self'"], (name, p)
    assert p["object-src"] == ["'none'"]
    assert p["base-uri"] == ["'self'"]
    assert p["frame-ancestors"] == ["'none'"]
    assert p["form-action"] == ["'self'"]
    assert p.get("img-src") == extra.get("img_src", ["'self'"])
    header = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in header and "unsafe-eval" not in header and "*" not in header
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_ui_pages_api_sign_in_and_errors(client, deployer, model, settings):
    assert settings.DEBUG is False  # as in production: django-csp skips DEBUG's own error pages
    responses = {"sign-in page": client.get("/login/"), "redirect to sign-in": client.get("/models/")}
    responses["api 401"] = client.get("/api/v1/models/")
    assert responses["redirect to sign-in"].status_code == 302 and responses["api 401"].status_code in (401, 403)
    client.force_login(deployer)
    responses |= {
        "overview": client.get("/"),
        "model page": client.get(f"/models/{model.pk}/"),
        "team page": client.get("/team/"),
        "api json": client.get("/api/v1/models/"),
        "api 404": client.get("/api/v1/models/999999/"),
        "api 400": client.post("/api/v1/models/", data="{", content_type="application/json"),
        "page 404": client.get("/no-such-page/"),
        "schema": client.get("/api/schema/"),
    }
    assert responses["overview"].status_code == 200 and responses["api json"]["Content-Type"] == "application/json"
    assert responses["page 404"].status_code == 404 and responses["api 404"].status_code == 404
    assert responses["api 400"].status_code == 400
    for name, response in responses.items():
        try:
            assert_strict(response)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from e


def test_the_swagger_page_only_adds_data_images(client, deployer):
    """The docs page loads its init script from a URL; its one extra is data: images (icons)."""
    client.force_login(deployer)
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<script>" not in html and "<style>" not in html
    assert 'src="/api/docs/?script="' in html
    assert_strict(page, img_src=["'self'", "data:"])
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle(" in script.content
