"""The agent loop's stop handling and its input helpers (expansion, epochs)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from fractal_lba.agent import AgentError, Stopped, StopSignal, epoch_for, expand_inputs
from testkit import wait_until


def test_a_stop_outside_a_sleep_is_kept_for_the_next_safe_point() -> None:
    stop = StopSignal()
    stop.request()  # as a signal handler would, while an ack is being written: no raise
    assert stop()
    with pytest.raises(Stopped):
        stop.sleep(60)


def test_sigterm_cuts_a_sleep_short() -> None:
    stop = StopSignal()

    def send_when_sleeping() -> None:
        wait_until(lambda: stop._sleeping, what="the sleep to start")
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send_when_sleeping)
    with stop.installed():
        sender.start()
        with pytest.raises(Stopped):
            stop.sleep(120)
    sender.join(10)
    assert stop.requested
    assert signal.getsignal(signal.SIGTERM) is not stop.request  # handler restored


def test_expand_inputs_and_epochs(tmp_path: Path) -> None:
    for name in ("b-0002.csv", "a-0001.jsonl", "notes.txt", "c-3.ndjson"):
        (tmp_path / name).write_text("")
    single = tmp_path / "x.csv"
    files = expand_inputs([tmp_path, single])
    assert [p.name for p in files] == ["a-0001.jsonl", "b-0002.csv", "c-3.ndjson", "x.csv"]
    assert [epoch_for(p, i, None) for i, p in enumerate(files[:3])] == [1, 2, 3]
    assert [epoch_for(p, i, 10) for i, p in enumerate(files)] == [10, 11, 12, 13]
    with pytest.raises(AgentError, match="no epoch number in the file name"):
        epoch_for(single, 0, None)
