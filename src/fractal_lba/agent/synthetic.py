"""Synthetic event streams for walkthroughs, tests and benchmarks (pure numpy).

Shapes fill a set of known dimension inside the unit cube, so the PCS signals are easy to
sanity-check by eye: ``line`` gives D_hat near 1, ``plane`` near 2, ``cube`` near 3, and
``cluster`` (most points at one spot, the rest on a line) a high coh_star and the
``sticky`` regime.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from fractal_lba.agent.errors import AgentError

Shape = Literal["line", "plane", "cube", "cluster"]
SHAPES: tuple[str, ...] = ("line", "plane", "cube", "cluster")


def synthetic_points(shape: str, n: int, seed: int) -> npt.NDArray[np.float64]:
    """``n`` points in [0, 1)^3 filling ``shape``; the same seed gives the same points."""
    if n < 1:
        raise AgentError("--n must be at least 1")
    rng = np.random.default_rng(seed)
    t = rng.random((n, 3))
    if shape == "line":
        pts = np.column_stack([t[:, 0], 0.5 * t[:, 0] + 0.25, np.full(n, 0.5)])
    elif shape == "plane":
        pts = np.column_stack([t[:, 0], t[:, 1], 0.3 * t[:, 0] + 0.2])
    elif shape == "cube":
        pts = t
    elif shape == "cluster":
        # 90% of the events at one spot, the rest along a line: coherent and low-dimensional.
        line = np.column_stack([t[:, 0], 0.5 * t[:, 0] + 0.25, np.full(n, 0.5)])
        spot = 0.3 + 1e-4 * t
        pts = np.where((np.arange(n) % 10 != 0)[:, None], spot, line)
    else:
        raise AgentError(f"unknown shape {shape!r} (expected one of {', '.join(SHAPES)})")
    return np.round(pts, 6)


def synthetic_csv(shape: str, n: int, seed: int, *, t0: float = 1_700_000_000.0) -> bytes:
    """CSV bytes with header ``timestamp,x,y,z``, one event per millisecond from ``t0``."""
    pts = synthetic_points(shape, n, seed)
    ts = np.round(t0 + np.arange(n) * 0.001, 3)
    lines = ["timestamp,x,y,z"]
    lines.extend(
        f"{t!r},{x!r},{y!r},{z!r}" for t, x, y, z in zip(ts.tolist(), *pts.T.tolist(), strict=True)
    )
    return ("\n".join(lines) + "\n").encode("ascii")
