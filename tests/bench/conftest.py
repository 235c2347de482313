"""Tests of the benchmark harness (bench/) and of the group-commit claim it reports."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `bench` is a top-level package of the repo, not installed
