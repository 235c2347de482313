"""Tests of the privacy gate (SPEC section 8, PII)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `bench` (corpus generator, quality script) is not installed
