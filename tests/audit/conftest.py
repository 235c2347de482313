"""Fixtures for the audit log tests: entries, keys, a fake clock, a started WormLog.

The end-to-end tests of this package also start real servers with the helpers of
``tests/server/server_helpers.py`` (put on the path here, as tests/tenancy does).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from audit_helpers import T0
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fractal_lba import failpoints
from fractal_lba.audit.worm import WormLog
from testkit import FakeClock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def make_log(tmp_path: Path, key: Ed25519PrivateKey, clock: FakeClock) -> Callable[..., WormLog]:
    def factory(**kw: object) -> WormLog:
        args: dict[str, object] = {
            "signing_key": key,
            "clock": clock,
            "maintenance_interval": None,
            "origin": "example.org/audit",
        }
        args.update(kw)
        return WormLog(tmp_path / "worm", **args)  # type: ignore[arg-type]

    return factory


@pytest.fixture
async def started(make_log: Callable[..., WormLog]) -> AsyncIterator[WormLog]:
    log = make_log()
    await log.start()
    yield log
    await log.close()


@pytest.fixture
def armed() -> Iterator[Callable[[str], None]]:
    """Arm failpoints in this process (``armed("audit.before_write=1*enospc")``); disarmed after."""
    yield failpoints.configure
    failpoints.configure(None)
