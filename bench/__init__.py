"""Benchmarks of cartesia-retention against the sandbox: `python -m bench`."""
