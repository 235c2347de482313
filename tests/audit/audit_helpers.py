"""Helpers shared by the audit tests (plain functions, no fixtures)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from fractal_lba.audit.entry import AuditEntry
from fractal_lba.audit.segments import list_segments

T0 = 1_735_732_800.0  # 2025-01-01T12:00:00Z: where the audit tests' clock starts


def make_entry(i: int, *, tenant: str = "t1", pcs_id: str | None = None) -> AuditEntry:
    """A realistic entry; pcs_id defaults to a hash of ``i``."""
    return AuditEntry(
        timestamp="2025-01-01T12:00:00Z",
        pcs_id=pcs_id or hashlib.sha256(str(i).encode()).hexdigest(),
        tenant_id=tenant,
        merkle_root="ab" * 32,
        D_hat=1.41,
        coh_star=0.73,
        r=0.87,
        budget=0.42,
        regime="sticky",
        verify_outcome="accepted",
        status=200,
        verify_params_hash="cd" * 32,
        policy_version="1.0.0",
        region_id="eu-1",
        request_id=f"req-{i}",
    )


def segment_paths(base: Path) -> list[Path]:
    return [base / s.rel for s in list_segments(base)]


def rewrite(path: Path, data: bytes) -> None:
    """Overwrite a (possibly read-only) file, keeping its mode."""
    mode = path.stat().st_mode & 0o777
    os.chmod(path, 0o644)
    path.write_bytes(data)
    os.chmod(path, mode)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def canonical(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
