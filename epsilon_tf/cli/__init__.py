"""Implementations behind train.py and eval.py."""
