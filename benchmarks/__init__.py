"""Benchmark scripts: `python -m benchmarks.<script>` from the repository
root (benchmarks/README.md). Not part of the installed package."""
