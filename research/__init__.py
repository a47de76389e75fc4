"""Exploration scripts kept for reproducibility: `python -m research.<name>`
from the repository root (research/README.md). Not part of the installed
package, and not measurements a user reruns (those are in `benchmarks/`)."""
