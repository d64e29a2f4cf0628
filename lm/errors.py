"""The error types every layer shares (the lowest module: it imports nothing of lm)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config field has a bad value; the message names the field and the fix."""
