"""Structured JSON logs (stdlib logging) for the verifier.

Records carry only what ``extra=`` gives them from :data:`SAFE_FIELDS` (pcs_id, tenant_id,
status, reason, ...): never a payload, a key or a PII value. Per-request lines are logged at
DEBUG, so they cost nothing unless ``LOG_LEVEL=DEBUG``.
"""

from __future__ import annotations

import logging
import sys
import time

import msgspec

LOGGER_NAME = "fractal_lba.server"
SAFE_FIELDS: tuple[str, ...] = (
    "pcs_id", "tenant_id", "status", "reason", "request_id", "route", "duration_ms",
    "replayed", "path", "count", "backend", "worker_dir", "segment", "offset",
    "truncated_bytes",
)  # fmt: skip

_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the whitelisted extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in SAFE_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
        return _encoder.encode(out).decode("utf-8")


def configure_logging(level: str) -> None:
    """Send ``fractal_lba`` and ``uvicorn`` logs as JSON to stderr at ``level`` (idempotent)."""
    handler: logging.Handler | None = None
    for name in ("fractal_lba", "uvicorn"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if any(getattr(h, "_flk_json", False) for h in logger.handlers):
            continue
        if handler is None:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(JsonFormatter())
            handler._flk_json = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
