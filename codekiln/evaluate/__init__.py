"""Evaluation: run generated code in a sandbox and score it."""
