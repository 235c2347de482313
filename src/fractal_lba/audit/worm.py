"""``WormLog``: the async, group-committed WORM audit log the verifier service appends to.

It implements :class:`~fractal_lba.audit.base.AuditLog` over a :class:`WormWriter` run on the
writer thread of a :class:`~fractal_lba.wal.GroupCommitter`: concurrent ``append`` calls share
one write + fsync per batch, and each returns only after its line is on disk.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence, Set
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba.audit.anchors import AnchorSink, HttpAnchorSink
from fractal_lba.audit.entry import AuditEntry
from fractal_lba.audit.errors import AuditError
from fractal_lba.audit.index import audit_chains
from fractal_lba.audit.recovery import RecoveryReport
from fractal_lba.audit.segments import check_entry, list_segments, request_ids
from fractal_lba.audit.writer import (
    DEFAULT_MAX_SEGMENT_BYTES,
    DEFAULT_ROTATE_SECONDS,
    SEAL,
    SEAL_REQUEST_NAME,
    TICK,
    Control,
    WormStats,
    WormWriter,
)
from fractal_lba.contract.errors import KeyFormatError
from fractal_lba.contract.keys import parse_ed25519_private
from fractal_lba.wal import GroupCommitter, WalError

log = logging.getLogger(__name__)

Redactor = Callable[[AuditEntry], AuditEntry]
AUDIT_KEY_FILE = "audit_ed25519.key"


class WormLog:
    """Append-only, hash-chained, segment-sealed audit log (SPEC section 7).

    ``redactor`` (the PII gate's hook) maps each entry to what may be stored; its output is
    what is hashed and written. ``clock`` (unix seconds) names segments and times rotation and
    checkpoints. ``maintenance_interval`` is how often (seconds) a background task seals a
    segment older than ``rotate_seconds``, retries failed anchors and serves ``flk worm seal``
    requests; ``None`` disables the task (call :meth:`maintain` yourself). ``chain_root`` is the
    audit directory of worker 0 when this log is one of several chains of a server
    (``<root>``, ``<root>-1``, ...): :meth:`find_requests` looks in all of them.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
        rotate_seconds: float = DEFAULT_ROTATE_SECONDS,
        signing_key: Ed25519PrivateKey | None = None,
        origin: str | None = None,
        anchor_sinks: Sequence[AnchorSink] = (),
        region_id: str = "local",
        clock: Callable[[], float] = time.time,
        redactor: Redactor | None = None,
        seal_on_close: bool = True,
        maintenance_interval: float | None = 5.0,
        lineage_index: bool = True,
        max_batch: int = 4096,
        chain_root: Path | None = None,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.chain_root = Path(chain_root) if chain_root is not None else self.base_dir
        self.region_id = region_id
        self._writer = WormWriter(
            self.base_dir,
            max_segment_bytes=max_segment_bytes,
            rotate_seconds=rotate_seconds,
            signing_key=signing_key,
            origin=origin or f"fractal-lba/audit/{region_id}",
            anchor_sinks=anchor_sinks,
            clock=clock,
            lineage_index=lineage_index,
        )
        self._redactor = redactor
        self._seal_on_close = seal_on_close
        self._interval = maintenance_interval
        self._committer: GroupCommitter[
            AuditEntry | Control, AuditEntry | str | AuditError | None
        ] = GroupCommitter(self._writer.commit, name="audit-writer", max_batch=max_batch)
        self._task: asyncio.Task[None] | None = None
        self.recovery: RecoveryReport | None = None
        self._started = False

    @property
    def stats(self) -> WormStats:
        """Write counters (entries, batches, fsyncs, seals, anchor failures)."""
        return self._writer.stats

    @property
    def origin(self) -> str:
        """Checkpoint origin line (also the signing key name)."""
        return self._writer.origin

    async def start(self) -> None:
        """Lock and recover the directory, then start the writer thread (and maintenance)."""
        self.recovery = await asyncio.to_thread(self._writer.open)
        self._committer.start()
        self._started = True
        if self._interval is not None:
            self._task = asyncio.create_task(self._maintenance_loop(self._interval))

    async def append(self, entry: AuditEntry) -> AuditEntry:
        """Redact, chain and durably write ``entry``; return what was written."""
        if self._redactor is not None:
            entry = self._redactor(entry)
        if not entry.region_id:
            entry = msgspec.structs.replace(entry, region_id=self.region_id)
        check_entry(entry)
        result = await self._submit(entry)
        assert isinstance(result, AuditEntry)
        return result

    async def seal(self) -> str | None:
        """Seal the open segment now; return its checkpoint note (None if nothing was open)."""
        result = await self._submit(SEAL)
        assert result is None or isinstance(result, str)
        return result

    async def maintain(self) -> None:
        """Time-based rotation and pending ``flk worm seal`` requests (anchor sinks are
        retried by the publisher thread on its own backoff)."""
        request = self.base_dir / SEAL_REQUEST_NAME
        if request.exists():
            await self.seal()
            await asyncio.to_thread(self._writer.publisher.wait_idle, 5.0)
            request.unlink(missing_ok=True)
        await self._submit(TICK)

    async def anchors_settled(self, timeout: float) -> bool:
        """Retry the anchor sinks now and wait until every checkpoint is published (True) or
        ``timeout`` seconds passed (False)."""
        self._writer.publisher.retry_now()
        return await asyncio.to_thread(self._writer.publisher.wait_idle, timeout)

    async def _submit(self, item: AuditEntry | Control) -> AuditEntry | str | None:
        if not self._started:
            raise AuditError("audit log is not started")
        try:
            result = await self._committer.submit(item)
        except WalError as exc:
            raise AuditError(f"audit writer: {exc}") from None
        if isinstance(result, AuditError):
            raise result
        return result

    async def _maintenance_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.maintain()
            except AuditError as exc:
                log.warning("audit maintenance failed: %s", exc)

    def find_requests(self, request_ids_: Set[str], since: float) -> set[str]:
        """Which of ``request_ids_`` have an entry, in any chain of this server, in a segment
        that may hold entries written at or after ``since`` (unix seconds).

        Every chain, because a request may have been audited by whichever worker last
        adopted its inbox directory before a crash. Scans the segment files, not the index.
        """
        wanted = set(request_ids_)
        if not wanted:
            return set()
        found: set[str] = set()
        chains = audit_chains(self.chain_root)
        if self.base_dir not in chains:
            chains.append(self.base_dir)
        for chain in chains:
            found.update(_find_in_chain(chain, wanted, since))
        return found

    def check_writable(self) -> None:
        """Raise AuditError unless appends can succeed (GET /ready)."""
        if not self._started:
            raise AuditError("audit log is not started")
        self._writer.check_writable()

    async def close(self) -> None:
        """Stop maintenance, drain the queue, seal the open segment, release the directory."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self._started:
            return
        self._started = False
        await self._committer.close()
        await asyncio.to_thread(self._writer.close, seal=self._seal_on_close)


def _find_in_chain(base: Path, wanted: set[str], since: float) -> set[str]:
    segs = list_segments(base)
    found: set[str] = set()
    for i, seg in enumerate(segs):
        if i + 1 < len(segs) and segs[i + 1].start + 1 < since:
            continue  # the next segment opened before `since`: this one ended earlier
        try:
            data = (base / seg.rel).read_bytes()
        except FileNotFoundError:
            continue
        found.update(rid for rid in request_ids(data) if rid in wanted)
    return found


def load_or_create_audit_key(path: Path) -> Ed25519PrivateKey:
    """Load the audit signing key (base64 32-byte seed, as ``flk keygen`` prints it); create it
    with mode 0600 (directory 0700) on first start."""
    path = Path(path)
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        key = Ed25519PrivateKey.generate()
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # created concurrently: use that one
            return load_or_create_audit_key(path)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(seed).decode() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        log.info("created audit signing key %s", path)
        return key
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read audit key {path}: {exc}") from None
    if path.stat().st_mode & 0o077:
        log.warning("audit key %s is readable by group/others; chmod 600 it", path)
    try:
        return parse_ed25519_private(text.strip(), what=f"audit key {path}")
    except KeyFormatError as exc:
        raise AuditError(str(exc)) from None


def open_worm_from_settings(
    *,
    data_dir: Path,
    base_dir: Path | None = None,
    max_segment_bytes: int | None = None,
    rotate_seconds: float | None = None,
    key_path: Path | None = None,
    anchor_url: str | None = None,
    region_id: str = "local",
    origin: str | None = None,
    redactor: Redactor | None = None,
    chain_root: Path | None = None,
) -> WormLog:
    """Build the server's WormLog from plain settings (not started; call ``await start()``).

    ``base_dir`` defaults to ``<data_dir>/audit`` (WORM_BASE_DIR), ``key_path`` to
    ``<data_dir>/audit/audit_ed25519.key`` (AUDIT_KEY_PATH, created 0600 if missing),
    ``anchor_url`` (AUDIT_ANCHOR_URL) adds an :class:`HttpAnchorSink`.
    """
    base = Path(base_dir) if base_dir is not None else Path(data_dir) / "audit"
    key = load_or_create_audit_key(
        Path(key_path) if key_path is not None else Path(data_dir) / "audit" / AUDIT_KEY_FILE
    )
    sinks: list[AnchorSink] = [HttpAnchorSink(anchor_url)] if anchor_url else []
    return WormLog(
        base,
        max_segment_bytes=max_segment_bytes or DEFAULT_MAX_SEGMENT_BYTES,
        rotate_seconds=rotate_seconds or DEFAULT_ROTATE_SECONDS,
        signing_key=key,
        origin=origin,
        anchor_sinks=sinks,
        region_id=region_id,
        redactor=redactor,
        chain_root=chain_root,
    )
