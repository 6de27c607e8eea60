"""Exceptions that carry a one-line, actionable message for the user."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (paths, data, artifacts, settings).

    The CLI prints ``error: <message>`` and exits non-zero instead of a traceback.
    """


class ArtifactError(UserError):
    """A model artifact is missing, corrupted, tampered with or incompatible."""
