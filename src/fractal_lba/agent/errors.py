"""Errors of the agent: unusable event files, key sources and delivery problems.

Messages name the file and line (and our column names) but never echo an event value, an
unknown key of the event, or key material.
"""

from __future__ import annotations

from pathlib import Path

from fractal_lba.errors import FlkError


class AgentError(FlkError):
    """Root of agent errors."""

    code = "agent_error"


class EventFileError(AgentError):
    """The event file cannot be used; ``line`` is the 1-based line at fault when known."""

    code = "bad_event_file"

    def __init__(self, path: str | Path, detail: str, *, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {detail}")
        self.path = str(path)
        self.line = line
        self.detail = detail


class KeySourceError(AgentError):
    """A ``--key`` source (``@file`` / ``env:VAR``) could not be read. Never shows the key."""

    code = "bad_key_source"


class OutboxError(AgentError):
    """The outbox holds a record it cannot decode."""

    code = "outbox_error"
