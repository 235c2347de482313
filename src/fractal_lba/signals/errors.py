"""Errors of the signal computations."""

from __future__ import annotations

from fractal_lba.errors import FlkError


class SignalError(FlkError):
    """Not enough (or unusable) data to compute a signal, e.g. fewer than 2 scales."""

    code = "signal_error"
