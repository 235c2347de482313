"""Tests of the privacy gate (SPEC section 8, PII)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for extra in (REPO, REPO / "tests" / "server"):
    # `bench` (corpus generator, quality script) is not installed; the real-server helpers
    # (ServerProcess, make_pcs) live with the server tests.
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
