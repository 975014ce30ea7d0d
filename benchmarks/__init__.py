"""Throughput and memory benchmarks of smsledger: `python -m benchmarks.run` (or `make bench`)."""
