"""Event files -> signed PCS -> outbox: which files, which epochs, build all, queue.

``--in`` paths are files or directories (a directory contributes its event files in name
order). A file's epoch is ``--epoch + index`` when an epoch is given, else the last number
in its name (``events-0007.csv`` -> 7), so a watch loop that sees files one at a time gives
each the same epoch on every scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fractal_lba.agent.build import DEFAULT_SCALES, DEFAULT_SEED, build_pcs
from fractal_lba.agent.errors import AgentError
from fractal_lba.agent.events import load_events
from fractal_lba.agent.outbox import Enqueued, Outbox
from fractal_lba.contract import LATEST_VERSION, PCS, Signer

EVENT_SUFFIXES = (".csv", ".jsonl", ".ndjson")
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")

Stamp = tuple[str, int, int]


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given; a directory contributes its event files in name order."""
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in EVENT_SUFFIXES))
        else:
            out.append(path)
    return out


def epoch_for(path: Path, index: int, epoch: int | None) -> int:
    """``epoch + index`` when an epoch is given, else the last number in the file name."""
    if epoch is not None:
        return epoch + index
    found = _LAST_NUMBER.search(path.stem)
    if found is None:
        raise AgentError(f"{path}: no --epoch given and no epoch number in the file name")
    return int(found.group(1))


def file_stamp(path: Path) -> Stamp:
    """``(path, size, mtime_ns)``: a file whose stamp changed is scanned again."""
    try:
        st = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class BuildSpec:
    """How to turn an event file into a PCS (everything but the file and its epoch)."""

    signer: Signer
    shard_id: str
    scales: Sequence[int] = DEFAULT_SCALES
    seed: int = DEFAULT_SEED
    version: str = LATEST_VERSION
    meta: Mapping[str, str] = field(default_factory=dict)
    fmt: str | None = None
    epoch: int | None = None
    vrf_key: bytes | None = None
    """ECVRF secret key: the seed comes from a proof over ``tenant_id|shard_id|epoch``."""
    tenant_id: str = "default"
    """The tenant the PCS are submitted as (the VRF input binds it)."""


def build_file(path: Path, index: int, spec: BuildSpec) -> PCS:
    """The PCS of one event file (epoch from ``spec.epoch`` + index or the file name)."""
    return build_pcs(
        load_events(path, spec.fmt),
        shard_id=spec.shard_id,
        epoch=epoch_for(path, index, spec.epoch),
        signer=spec.signer,
        scales=spec.scales,
        seed=spec.seed,
        version=spec.version,
        meta=spec.meta,
        vrf_key=spec.vrf_key,
        tenant_id=spec.tenant_id,
    )


def build_all(files: Sequence[Path], spec: BuildSpec) -> list[PCS]:
    """Build every PCS before queueing any, so one bad file queues nothing."""
    return [build_file(path, i, spec) for i, path in enumerate(files)]


class IngestReporter(Protocol):
    """What the caller hears about each file: queued (or known) or skipped."""

    def queued(self, path: Path, pcs: PCS, result: Enqueued) -> None:
        """``pcs`` from ``path`` is in the outbox (``result.created``: newly)."""

    def skipped(self, path: Path, error: AgentError) -> None:
        """``path`` could not be built (lenient mode only)."""


def enqueue_files(
    outbox: Outbox,
    files: Sequence[Path],
    spec: BuildSpec,
    *,
    tenant_id: str | None,
    reporter: IngestReporter,
    strict: bool = True,
) -> int:
    """Build and queue a PCS per event file; returns how many were new.

    ``strict``: one bad file fails before anything is queued. Otherwise (the watch loop) a
    bad file is reported and skipped, so a half-written file cannot stop the agent; it is
    tried again when it changes.
    """
    if strict:
        if not files:
            raise AgentError("no event files found in the --in paths")
        pairs = list(zip(files, build_all(files, spec), strict=True))
    else:
        pairs = []
        for i, path in enumerate(files):
            try:
                pairs.append((path, build_file(path, i, spec)))
            except AgentError as exc:
                reporter.skipped(path, exc)
    created = 0
    for path, pcs in pairs:
        res = outbox.enqueue(pcs, tenant_id=tenant_id, source=str(path), signer=spec.signer)
        created += res.created
        reporter.queued(path, pcs, res)
    return created
