"""The command line without a Switchyard: usage errors exit 3 (2 means rolled back), a server that
is unreachable or fails exits 3, one that refuses exits 4, and the commands never load Django."""
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cli import deploy
from tests.cli.conftest import ROOT, command


def run(*args, env_extra=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    env.update(env_extra or {})
    return subprocess.run([*command(), *args], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def stub():
    """A stand-in server answering every request with (status, content type, body) from ``answer``;
    it records the requests' paths, headers and bodies."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            server.seen.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
            status, ctype, body = server.answer
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.seen, server.answer = [], (200, "application/json", b"{}")
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("args", [
    ["deploy", "vision.fraud-scorer"],  # neither --version nor --label
    ["deploy", "vision.fraud-scorer", "--version", "2", "--label", "canary"],
    ["deploy", "vision.fraud-scorer", "--version", "two"],
    ["deploy", "vision.fraud-scorer", "--version", "2", "--steps", "10:sixty"],
    ["deploy", "vision.fraud-scorer", "--version", "2", "--max-err", "0.1"],  # no abbreviations
    ["status", "abc"],
    ["promote"],
    ["frobnicate"],
    [],
])
def test_usage_errors_exit_3_not_2(args):
    r = run(*args)
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stderr


def test_usage_errors_in_json_mode_are_json():
    r = run("deploy", "vision.fraud-scorer", "--json")
    assert r.returncode == 3
    assert json.loads(r.stdout) == {"error": "usage: one of the arguments --version --label is required",
                                    "status": None, "fields": {}, "exit": 3}


def test_missing_configuration_exits_3():
    r = run("status", "1")
    assert r.returncode == 3 and "set SWITCHYARD_URL" in r.stderr
    r = run("status", "1", "--url", "http://127.0.0.1:1")
    assert r.returncode == 3 and "set SWITCHYARD_TOKEN" in r.stderr
    r = run("status", "1", "--json", env_extra={"SWITCHYARD_URL": "ftp://x", "SWITCHYARD_TOKEN": "t"})
    assert r.returncode == 3 and "not an http(s) URL" in json.loads(r.stdout)["error"]


def test_an_unreachable_server_exits_3():
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        r = run("deploy", "vision.fraud-scorer", "--version", "2", "--json",
                env_extra={"SWITCHYARD_URL": f"http://127.0.0.1:{port}", "SWITCHYARD_TOKEN": "t"})
    assert r.returncode == 3, r.stdout + r.stderr
    error = json.loads(r.stdout)
    assert error["status"] is None and error["exit"] == 3 and error["error"].startswith("server unavailable: POST ")


def test_a_5xx_exits_3_and_a_4xx_without_json_exits_4(stub):
    env = {"SWITCHYARD_URL": stub.url + "/api/v1/", "SWITCHYARD_TOKEN": "sy_abc_def"}
    stub.answer = (502, "text/html", b"<html>bad gateway</html>")
    r = run("promote", "7", "--reason", "go", env_extra=env)
    assert r.returncode == 3 and "the server answered 502" in r.stderr, r.stderr
    method, path, headers, body = stub.seen[-1]
    assert (method, path, json.loads(body)) == ("POST", "/api/v1/deployments/7/promote/", {"reason": "go"})
    assert headers["X-Switchyard-Client"] == "cli" and headers["Authorization"] == "Bearer sy_abc_def"
    stub.answer = (404, "text/html", b"<html>no such page</html>")
    r = run("status", "7", "--json", env_extra=env)
    assert r.returncode == 4 and json.loads(r.stdout)["status"] == 404
    stub.answer = (200, "text/html", b"<html>a login page</html>")
    r = run("status", "7", env_extra=env)
    assert r.returncode == 3 and "is not JSON" in r.stderr


def test_the_commands_never_load_django():
    code = ("import sys, cli.main, cli.deploy, cli.api; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework', 'controlplane')); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_gateway_subcommand_is_still_there():
    r = run("gateway", "--help")
    assert r.returncode == 0 and "--control-plane" in r.stdout


def test_the_body_holds_only_what_was_given():
    parse = deploy.build_parser().parse_args
    assert deploy.deploy_body(parse(["deploy", "vision.a", "--version", "3"])) == {"endpoint": "vision.a", "version": 3}
    body = deploy.deploy_body(parse(["deploy", "vision.a", "--label", "canary", "--steps", "10:60,50,100:0",
                                     "--max-error-ratio", "none", "--max-p99-ms", "250", "--servers", "g1, g2",
                                     "--placement", "new_servers", "--approval", "--start-at", "2030-01-01T00:00:00Z"]))
    assert body == {
        "endpoint": "vision.a", "label": "canary", "strategy": "steps",
        "steps": [{"percent": 10, "bake_s": 60}, {"percent": 50}, {"percent": 100, "bake_s": 0}],
        "placement": "new_servers", "servers": ["g1", "g2"], "start_at": "2030-01-01T00:00:00Z",
        "approval_required": True, "gates": {"max_error_ratio": None, "max_p99_ms": 250.0},
    }


def test_replay_follows_steps_and_retries():
    h = [{"from_state": f, "to_state": t} for f, t in [
        ("", "pending"), ("pending", "validating"), ("validating", "provisioning"), ("provisioning", "verifying"),
        ("verifying", "shifting"), ("shifting", "baking"), ("baking", "analyzing"), ("analyzing", "shifting"),
        ("shifting", "baking"), ("baking", "rolling_back"), ("rolling_back", "failed"), ("failed", "pending"),
        ("pending", "validating"), ("validating", "provisioning"), ("provisioning", "verifying"),
        ("verifying", "shifting"), ("shifting", "promoting")]]
    got = deploy.replay(h, [{"percent": 10}, {"percent": 50}])
    assert got[4] == (0, 10) and got[7] == (1, 50) and got[8] == (1, 50) and got[9] == (1, 0)
    assert got[11] == (None, 0) and got[15] == (0, 10) and got[16] == (0, 100)


def test_exit_codes_of_the_end_states():
    assert {s: deploy.exit_code_of(s) for s in sorted(deploy.END_STATES)} == {
        "aborted": 2, "cancelled": 2, "failed": 3, "retired": 0, "rollback_failed": 3, "rolled_back": 2,
        "succeeded": 0}
