"""Benchmarks: `python -m bench.<name>`; each measures ga4sync and a naive baseline in one run."""
