"""gateway.shadow in-process, with a stand-in for the upstream pools: a big answer is compared off
the event loop, and every copy ends as exactly one counted result (or one drop)."""
import asyncio
import json

import numpy as np

from gateway.health import Health
from gateway.metrics import Metrics
from gateway.shadow import INLINE_COMPARE_BYTES, Shadower
from gateway.table import FORMAT, parse_table
from gateway.upstream import NotSent, Response
from tests.gateway.gateway_support import run_async


def binary_answer(values: np.ndarray) -> tuple[list, bytes]:
    raw = values.astype("<f4").tobytes()
    header = json.dumps({"outputs": [{"name": "OUT", "datatype": "FP32", "shape": list(values.shape),
                                      "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return [(b"Content-Type", b"application/octet-stream"),
            (b"Inference-Header-Content-Length", str(len(header)).encode())], header + raw


class FakeUpstreams:
    def __init__(self, answers):
        self.answers = answers
        self.outstanding = {}
        self.sent = []

    def pool(self, server):
        class P:
            prefix = b""
            host_header = b"shadow"
        return P()

    async def send(self, pool, head, body):
        self.sent.append(head)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


TABLE = parse_table({
    "format": FORMAT, "version": 1, "generated_at": 1.0, "tokens": [],
    "servers": [{"id": 1, "name": "a", "url": "http://127.0.0.1:9", "healthy": True},
                {"id": 2, "name": "b", "url": "http://127.0.0.1:10", "healthy": True}],
    "endpoints": [{"name": "team.e", "team": "team", "access": "open", "sticky": None, "labels": {},
                   "variants": [{"name": "stable", "version": 1, "weight": 1, "model": "m", "servers": [1],
                                 "guard": None}],
                   "shadow": {"variant": {"name": "next", "version": 2, "weight": 0, "model": "m", "servers": [2],
                                         "guard": None},
                              "percent": 100.0, "rtol": 1e-5, "atol": 1e-6}}],
})


def test_gateway_shadow_compares_big_answers_off_the_loop_and_counts_every_copy():
    big = np.arange(40_000, dtype=np.float32)  # 160 kB: past the inline limit
    headers, body = binary_answer(big)
    assert len(body) * 2 > INLINE_COMPARE_BYTES
    _, off_by_one = binary_answer(big + 1)
    answers = [Response(200, headers, body), Response(200, headers, off_by_one), Response(500, [], b'{"error":"x"}'),
               NotSent("refused"), Response(200, headers, body), Response(200, headers, body)]

    async def go():
        loop = asyncio.get_running_loop()
        metrics = Metrics()
        upstreams = FakeUpstreams(answers)
        health = Health(loop, metrics)
        shadower = Shadower(loop, upstreams, health, metrics, limit=2)
        endpoint = TABLE.endpoints["team.e"]
        primary = endpoint.variants[0]

        def mirror():
            shadower.mirror(TABLE, endpoint, primary, b"POST", b"", b"{}", 200, headers, body, 0.5)

        for _ in range(4):
            mirror()
            await shadower.drain(5)  # one at a time, so none is dropped
        assert health.failures == {2: 1}  # the refused copy counts against the shadow's server
        assert shadower._executor is not None  # the big answers were compared on the side thread
        for _ in range(3):
            mirror()  # the third finds two in flight: dropped
        await shadower.drain(5)
        assert shadower.in_flight == 0
        shadower.close()
        return metrics, upstreams, health

    metrics, upstreams, health = run_async(go(), 60)
    results = {k[3]: v for k, v in metrics.shadow.items()}
    # agree, disagree, error (a 500), error (unreachable), then two more agree and one dropped
    assert results == {"agree": 3, "disagree": 1, "error": 2}
    assert metrics.shadow_dropped == 1
    assert all(h.startswith(b"POST /v2/models/m/versions/2/infer HTTP/1.1\r\nHost: shadow\r\n") for h in upstreams.sent)
    assert len(upstreams.sent) == 6
    assert health.failures == {}  # and a success clears it
