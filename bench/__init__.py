"""Benchmark harness of the verifier service (``make bench`` -> ``python -m bench.run``)."""
