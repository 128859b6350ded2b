"""What a translation cannot express."""

from __future__ import annotations


class Unexpressible(ValueError):
    """A value, test or type that a translation cannot express; the message says why."""
