"""The agent (SPEC section 5): event files -> signed PCS -> durable outbox -> HTTP delivery."""

from fractal_lba.agent.build import (
    DEFAULT_SCALES,
    DEFAULT_SEED,
    build_pcs,
    load_signer,
    read_key_text,
)
from fractal_lba.agent.delivery import (
    Deliverer,
    Report,
    Result,
    RetryPolicy,
    backoff_delay,
    classify,
    parse_retry_after,
    server_reason,
)
from fractal_lba.agent.errors import AgentError, EventFileError, KeySourceError, OutboxError
from fractal_lba.agent.events import COLUMNS, Events, detect_format, load_events, parse_events
from fractal_lba.agent.outbox import Enqueued, Entry, Outbox, OutboxStats

__all__ = [
    "COLUMNS",
    "DEFAULT_SCALES",
    "DEFAULT_SEED",
    "AgentError",
    "Deliverer",
    "Enqueued",
    "Entry",
    "EventFileError",
    "Events",
    "KeySourceError",
    "Outbox",
    "OutboxError",
    "OutboxStats",
    "Report",
    "Result",
    "RetryPolicy",
    "backoff_delay",
    "build_pcs",
    "classify",
    "detect_format",
    "load_events",
    "load_signer",
    "parse_events",
    "parse_retry_after",
    "read_key_text",
    "server_reason",
]
