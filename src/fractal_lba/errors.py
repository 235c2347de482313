"""Exception root of fractal-lba.

Every package raises subclasses of :class:`FlkError`; driver exceptions (sqlite3, redis,
psycopg, httpx, OSError) are translated inside the component that uses the driver, so
callers never catch a driver type.

Tree::

    FlkError
    ├── ConfigError                 bad configuration (names the variable / key)
    ├── contract.ContractError
    │   ├── ValidationError         PCS failed parsing or schema (carries ``field``)
    │   ├── KeyFormatError          key material in the wrong format
    │   └── SignatureError          signature did not verify
    ├── signals.SignalError         not enough data to compute a signal
    ├── wal.WalError
    │   └── WalCorruptError         a record failed its checksum where it may not
    ├── stores.StoreError
    │   └── StoreUnavailable        backend unreachable / timed out (-> 503)
    ├── agent.AgentError            event file problems (carries ``line``), delivery errors
    └── audit.AuditError
        └── AuditVerifyError        tamper evidence (names the first broken entry)
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
