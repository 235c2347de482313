"""Exception root of fractal-lba.

Every package raises subclasses of :class:`FlkError`; driver exceptions (sqlite3, redis,
psycopg, httpx, OSError) are translated inside the component that uses the driver, so
callers never catch a driver type.

Tree (every public subclass; ``tests/test_errors.py`` holds it against the code)::

    FlkError
    ├── ConfigError                 bad configuration (names the variable / key)
    ├── contract.ContractError
    │   ├── ValidationError         PCS failed parsing or schema (carries ``field``) -> 400
    │   │   ├── decision.SanityRejected   sanity violation under a rejecting policy
    │   │   └── privacy.PiiDetected       the PII gate blocked a field (names type only)
    │   ├── KeyFormatError          key material in the wrong format
    │   └── SignatureError          signature did not verify -> 401
    ├── signals.SignalError         not enough data to compute a signal
    ├── merkle.ProofError           a Merkle proof did not verify (or was malformed)
    ├── policy.PolicyError          a policy failed static validation (names the field)
    ├── adversarial.VrfError        a VRF key or proof is invalid (stable ``reason``)
    ├── tenancy.TenancyError
    │   ├── UnknownTenant           a tenant this server does not serve -> 401
    │   ├── MissingTenant           no X-Tenant-Id in multi-tenant mode -> 400
    │   └── LimiterUnavailable      the rate limiter's backend did not answer -> 503
    ├── wal.WalError                the WAL could not be written or read -> 503
    │   ├── WalCorruptError         damage other than a torn tail of the last segment
    │   └── WalLockedError          another process holds the WAL directory
    ├── stores.StoreError
    │   ├── StoreUnavailable        backend unreachable / timed out -> 503
    │   │   └── StoreFull           the memory store is full of live records
    │   └── StatementError          postgres refused a statement for its arguments
    ├── agent.AgentError
    │   ├── EventFileError          the event file cannot be used (carries ``line``)
    │   ├── KeySourceError          a ``--key`` source could not be read
    │   └── OutboxError             the outbox holds a record it cannot decode
    └── audit.AuditError
        ├── AuditLockedError        the log directory is locked by another writer
        ├── CheckpointError         a checkpoint is malformed or does not verify
        └── AuditVerifyError        tamper evidence (names the first broken entry)

A name is written with its package (``contract.ContractError``) where the package differs
from its parent's.
"""

from __future__ import annotations


class FlkError(Exception):
    """Root of all fractal-lba errors. ``code`` is a stable machine string."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(FlkError):
    """Invalid configuration; the message names the variable or key at fault."""

    code = "config_error"
