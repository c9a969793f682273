"""The signature scheme, as a receiver checks it: pure, no database."""
import hashlib
import hmac

from controlplane.notifications import signing
from controlplane.notifications.signing import sign, verify_signature

SECRET = "whsec_test-secret"
BODY = b'{"text":"[vision.fraud] Deployment 7 rolled back","switchyard":{"event":"rolled_back"}}'
NOW = 1_767_225_600


def test_the_signature_is_an_hmac_of_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == f"sha256={expected}"
    assert sign(SECRET, str(NOW), BODY.decode()) == sign(SECRET, NOW, BODY)


def test_a_fresh_signature_verifies():
    assert verify_signature(SECRET, str(NOW), BODY, sign(SECRET, NOW, BODY), now=NOW + 10)
    assert verify_signature(SECRET, NOW, BODY, sign(SECRET, NOW, BODY), now=NOW - 10)  # a little clock skew


def test_a_tampered_body_fails():
    signature = sign(SECRET, NOW, BODY)
    assert not verify_signature(SECRET, NOW, BODY.replace(b"rolled_back", b"succeeded"), signature, now=NOW)
    assert not verify_signature(SECRET, NOW, BODY + b" ", signature, now=NOW)


def test_another_secret_or_timestamp_fails():
    signature = sign(SECRET, NOW, BODY)
    assert not verify_signature("whsec_other", NOW, BODY, signature, now=NOW)
    assert not verify_signature(SECRET, NOW + 1, BODY, signature, now=NOW)  # the timestamp is signed too


def test_an_old_or_future_timestamp_fails_even_with_a_valid_signature():
    signature = sign(SECRET, NOW, BODY)
    assert verify_signature(SECRET, NOW, BODY, signature, now=NOW + 300)
    assert not verify_signature(SECRET, NOW, BODY, signature, now=NOW + 301)
    assert not verify_signature(SECRET, NOW, BODY, signature, now=NOW - 301)
    assert verify_signature(SECRET, NOW, BODY, signature, now=NOW + 3000, tolerance_s=3600)


def test_malformed_headers_fail_without_raising():
    signature = sign(SECRET, NOW, BODY)
    for timestamp, sig in [("", signature), ("soon", signature), (None, signature), (NOW, ""), (NOW, None),
                           (NOW, signature.removeprefix("sha256=")), (NOW, "sha1=" + signature[7:]),
                           (NOW, "sha256=zz"), (NOW, "sha256=é")]:
        assert not verify_signature(SECRET, timestamp, BODY, sig, now=NOW)


def test_generated_secrets_are_long_random_and_prefixed():
    one, two = signing.generate_secret(), signing.generate_secret()
    assert one != two and one.startswith("whsec_") and len(one) >= 40


def test_the_module_is_pure_standard_library():
    """Receivers copy signing.py: it must not need Django or Switchyard."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(signing.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "hashlib", "hmac", "secrets", "time"}
