-- wrk script for benchmarks/gateway_throughput.py: POST one fixed KServe v2 JSON inference body
-- to the URL's path, and print a machine-readable summary line at the end.
--
-- The body is the one request the benchmark's test model takes (INPUT0, FP32, shape [1, 4]).
-- SWITCHYARD_WRK_BODY overrides it, so the Python side can keep a single copy.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("SWITCHYARD_WRK_BODY")
  or '{"inputs":[{"name":"INPUT0","shape":[1,4],"datatype":"FP32","data":[1.0,2.0,3.0,4.0]}]}'

-- No response() function: wrk then skips parsing headers and bodies, and counts any status
-- above 399 in summary.errors.status.

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "switchyard-wrk requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d "
      .. "p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
