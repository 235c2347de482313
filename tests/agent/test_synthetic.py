"""Synthetic event streams: deterministic, and their signals land where the shape says."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fractal_lba.agent import AgentError, load_events
from fractal_lba.agent.synthetic import synthetic_csv, synthetic_points
from fractal_lba.cli import main
from fractal_lba.signals import compute_signals


@pytest.mark.parametrize(
    ("shape", "lo", "hi", "regime"),
    [
        ("line", 0.8, 1.2, "mixed"),
        ("plane", 1.8, 2.2, "mixed"),
        ("cube", 2.7, 3.1, "non_sticky"),
        ("cluster", 0.5, 1.2, "sticky"),
    ],
)
def test_shapes_have_their_dimension(shape: str, lo: float, hi: float, regime: str) -> None:
    pts = synthetic_points(shape, 20_000, seed=3)
    sig = compute_signals(pts, list(range(len(pts))), [2, 4, 8, 16, 32], 42)
    assert lo <= sig.D_hat <= hi
    assert sig.regime == regime


def test_same_seed_same_stream_and_unknown_shape() -> None:
    assert synthetic_csv("plane", 50, 7) == synthetic_csv("plane", 50, 7)
    assert synthetic_csv("plane", 50, 7) != synthetic_csv("plane", 50, 8)
    with pytest.raises(AgentError, match="unknown shape"):
        synthetic_points("sphere", 10, 1)


def test_gen_events_cli_output_loads(tmp_path: Path) -> None:
    out = tmp_path / "ev.csv"
    res = CliRunner().invoke(
        main, ["gen-events", "--shape", "cube", "--n", "300", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    events = load_events(out)
    assert len(events.points) == 300
