"""The agent (SPEC section 5): event files -> signed PCS -> durable outbox -> HTTP delivery."""

from fractal_lba.agent.build import (
    DEFAULT_SCALES,
    DEFAULT_SEED,
    build_pcs,
    load_signer,
    read_key_text,
    sign_pcs,
    stamp_attempt,
)
from fractal_lba.agent.delivery import (
    Deliverer,
    DeliveryListener,
    Failure,
    Report,
    Result,
    RetryNotice,
    server_reason,
)
from fractal_lba.agent.dlq import DeadLetter
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
from fractal_lba.agent.outbox import Enqueued, Outbox, OutboxStats, Requeued
from fractal_lba.agent.records import Entry, Tries
from fractal_lba.agent.retry import (
    RetryPolicy,
    backoff_delay,
    classify,
    parse_retry_after,
    retry_delay,
)
from fractal_lba.agent.runner import AgentRunner, RunReporter, Stopped, StopSignal

__all__ = [
    "COLUMNS",
    "DEFAULT_SCALES",
    "DEFAULT_SEED",
    "EVENT_SUFFIXES",
    "AgentError",
    "AgentRunner",
    "BuildSpec",
    "DeadLetter",
    "Deliverer",
    "DeliveryListener",
    "Enqueued",
    "Entry",
    "EventFileError",
    "Events",
    "Failure",
    "IngestReporter",
    "KeySourceError",
    "Outbox",
    "OutboxError",
    "OutboxStats",
    "Report",
    "Requeued",
    "Result",
    "RetryNotice",
    "RetryPolicy",
    "RunReporter",
    "StopSignal",
    "Stopped",
    "Tries",
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
    "retry_delay",
    "server_reason",
    "sign_pcs",
    "stamp_attempt",
]
