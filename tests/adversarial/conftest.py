"""Fixtures of the adversarial tests: VRF keys and PCS, in-process and real-process servers.

Reuses the verifier test helpers (PCS builders, ListAudit, ServerProcess) from
``tests/server/server_helpers.py``; the service fixtures come from ``tests/conftest.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
