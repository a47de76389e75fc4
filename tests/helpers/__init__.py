"""Shared pieces of the training tests (tiny worlds, subprocess drivers)."""
