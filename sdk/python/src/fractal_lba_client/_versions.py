"""PCS schema versions (SPEC section 2) and their order."""

from __future__ import annotations

PCS_VERSIONS: tuple[str, ...] = ("0.1", "0.2", "0.3")
"""Every PCS version this library can produce and the verifier accepts, oldest first."""
DEFAULT_PCS_VERSION = "0.3"
"""What the SDK and the agent produce unless asked for an older version."""
FULL_RECORD_VERSIONS = frozenset({"0.3"})
"""Versions whose signature covers the whole record, bound to the tenant."""


def version_key(version: str) -> tuple[int, int]:
    """``"0.2"`` -> ``(0, 2)``, for comparing versions (``ValueError`` for anything else)."""
    major, _, minor = version.partition(".")
    if not (major.isdigit() and minor.isdigit() and major.isascii() and minor.isascii()):
        raise ValueError("a version is MAJOR.MINOR")
    return int(major), int(minor)
