"""The failpoint registry: parsing, counted chains, errors and a real self-SIGKILL."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fractal_lba import failpoints
from fractal_lba.config import failpoints_from_env
from fractal_lba.errors import ConfigError


@pytest.fixture(autouse=True)
def _disarm() -> Iterator[None]:
    yield
    failpoints.configure(None)


def test_unarmed_points_do_nothing() -> None:
    failpoints.configure(None)
    assert not failpoints.armed()
    failpoints.hit("wal.before_write")
    assert failpoints.hits("wal.before_write") == 0


def test_counted_chain_skips_then_fails_then_stops() -> None:
    failpoints.configure("wal.before_write=2*off->1*enospc->off")
    failpoints.hit("wal.before_write")
    failpoints.hit("wal.before_write")
    with pytest.raises(OSError) as info:
        failpoints.hit("wal.before_write")
    assert info.value.errno == errno.ENOSPC
    assert "wal.before_write" in str(info.value)
    failpoints.hit("wal.before_write")
    assert failpoints.hits("wal.before_write") == 4


def test_last_task_without_count_applies_forever() -> None:
    failpoints.configure("audit.before_write=1*off->eio")
    failpoints.hit("audit.before_write")
    for _ in range(3):
        with pytest.raises(OSError) as info:
            failpoints.hit("audit.before_write")
        assert info.value.errno == errno.EIO


def test_other_points_are_not_affected() -> None:
    failpoints.configure("wal.after_fsync=erofs")
    failpoints.hit("wal.before_write")
    with pytest.raises(OSError):
        failpoints.hit("wal.after_fsync")


def test_panic_raises_its_own_type() -> None:
    failpoints.configure("replay.after_audit=panic")
    with pytest.raises(failpoints.FailpointPanic):
        failpoints.hit("replay.after_audit")


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("wal.befor_write=crash", "unknown failpoint 'wal.befor_write'"),
        ("wal.before_write", "needs '=ACTION'"),
        ("wal.before_write=explode", "bad task 'explode'"),
        ("wal.before_write=sleep", "only sleep takes an argument"),
        ("wal.before_write=crash(3)", "only sleep takes an argument"),
        ("wal.before_write=x*off", "bad task"),
    ],
)
def test_bad_specs_name_the_problem(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        failpoints.configure(spec)
    assert needle in str(info.value)
    assert "FLK_FAILPOINTS" in str(info.value)


def test_settings_loader_checks_the_variable() -> None:
    assert failpoints_from_env({}) is None
    assert failpoints_from_env({"FLK_FAILPOINTS": "wal.after_fsync=crash"}) == (
        "wal.after_fsync=crash"
    )
    with pytest.raises(ConfigError):
        failpoints_from_env({"FLK_FAILPOINTS": "nope=crash"})


def test_crash_is_a_real_sigkill() -> None:
    code = (
        "from fractal_lba import failpoints\n"
        "failpoints.configure('inbox.after_admit=1*off->crash')\n"
        "failpoints.hit('inbox.after_admit')\n"
        "print('survived first', flush=True)\n"
        "failpoints.hit('inbox.after_admit')\n"
        "print('survived second', flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout == "survived first\n"


def test_every_flk_process_arms_failpoints_at_start() -> None:
    """The CLI entry reads FLK_FAILPOINTS (through the settings loader): a typo stops it."""
    import os
    from pathlib import Path

    flk = Path(sys.executable).with_name("flk")
    env = {**os.environ, "FLK_FAILPOINTS": "wal.no_such_point=crash"}
    done = subprocess.run(
        [str(flk), "version"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "unknown failpoint 'wal.no_such_point'" in done.stderr
    assert "Traceback" not in done.stderr
