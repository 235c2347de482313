"""Policy errors."""

from __future__ import annotations

from fractal_lba.errors import FlkError


class PolicyError(FlkError):
    """A policy failed static validation; ``field`` names the offending parameter."""

    code = "invalid_policy"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail
