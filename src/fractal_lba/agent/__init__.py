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
from fractal_lba.agent.ingest import (
    EVENT_SUFFIXES,
    BuildSpec,
    IngestReporter,
    build_all,
    build_file,
    enqueue_files,
    epoch_for,
    expand_inputs,
    file_stamp,
)
from fractal_lba.agent.outbox import Enqueued, Entry, Outbox, OutboxStats
from fractal_lba.agent.runner import AgentRunner, RunReporter, Stopped, StopSignal

__all__ = [
    "COLUMNS",
    "DEFAULT_SCALES",
    "DEFAULT_SEED",
    "EVENT_SUFFIXES",
    "AgentError",
    "AgentRunner",
    "BuildSpec",
    "Deliverer",
    "Enqueued",
    "Entry",
    "EventFileError",
    "Events",
    "IngestReporter",
    "KeySourceError",
    "Outbox",
    "OutboxError",
    "OutboxStats",
    "Report",
    "Result",
    "RetryPolicy",
    "RunReporter",
    "StopSignal",
    "Stopped",
    "backoff_delay",
    "build_all",
    "build_file",
    "build_pcs",
    "classify",
    "detect_format",
    "enqueue_files",
    "epoch_for",
    "expand_inputs",
    "file_stamp",
    "load_events",
    "load_signer",
    "parse_events",
    "parse_retry_after",
    "read_key_text",
    "server_reason",
]
