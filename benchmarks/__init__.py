"""Switchyard's benchmarks. See benchmarks/README.md and the design note on measuring.

Run them all with ``make bench`` (``python -m benchmarks``). Each benchmark prints a short table
and final lines of the form ``name: value (goal: ...)``. Benchmarks are not tests: CI runs each
one only at a tiny size (tests/test_benchmarks_smoke.py), so that they never rot.
"""
