"""The error types and exit statuses every layer shares (the lowest module: it imports
nothing of lm)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config field has a bad value; the message names the field and the fix."""


# `lm train`, `lm data prepare` and `lm sweep run` stopped by SIGTERM or SIGINT after saving
# their work: sysexits.h EX_TEMPFAIL, a temporary failure; rerun the same command to resume.
PREEMPTED_EXIT = 75
