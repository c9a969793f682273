.PHONY: demo test bench

demo:  ## Run Switchyard locally: SQLite, 3 local tritonservers, local S3, worker, beat and web
	@scripts/bootstrap && .venv/bin/python -m controlplane.devstack.demo

test:  ## Run the whole test suite (PostgreSQL, Redis, real tritonserver, moto S3, chromium)
	@scripts/test $(ARGS)

bench:  ## Run the benchmarks
	@scripts/bootstrap && .venv/bin/python -m benchmarks
