"""Geometric signals over a point cloud (SPEC section 3): N_j, D_hat, coh_star / v_star.

Everything is vectorised with numpy; no Python loop runs over points.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fractal_lba.signals.errors import SignalError

FloatArray = npt.NDArray[np.float64]

DEFAULT_DIRECTIONS = 100
DEFAULT_BINS = 20
# Cell coordinates must stay exact in float64 and int64.
_MAX_CELL = float(2**52)
# Occupancy bitmaps are used instead of sorting when the cell grid is at most this large.
_MAX_BITMAP = 1 << 24
_FLOAT_MAX = float(np.finfo(np.float64).max)
_BLOCK_VALUES = 1 << 19


def as_points(points: npt.ArrayLike) -> FloatArray:
    """Validate and convert to a C-contiguous ``(n, 3)`` float64 array of finite values."""
    arr = np.ascontiguousarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise SignalError(f"points must have shape (n, 3), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise SignalError("points must be finite")
    return arr


def check_scales(scales: Sequence[int]) -> list[int]:
    """Scales as a list of ints: at least 2, each >= 1, strictly increasing."""
    out = [int(s) for s in scales]
    if any(o != s for o, s in zip(out, scales, strict=True)):
        raise SignalError("scales must be integers")
    if len(out) < 2:
        raise SignalError("at least 2 scales are needed")
    if out[0] < 1 or any(b <= a for a, b in itertools.pairwise(out)):
        raise SignalError("scales must be >= 1 and strictly increasing")
    return out


def _distinct_rows(cells: npt.NDArray[np.int64]) -> int:
    """Number of distinct rows of an ``(n, 3)`` int64 array (exact, no hashing)."""
    lo = cells.min(axis=0)
    span = [int(v) + 1 for v in cells.max(axis=0) - lo]
    size = span[0] * span[1] * span[2]
    if size >= 2**63:
        return int(np.unique(cells, axis=0).shape[0])
    shifted = cells - lo
    key = (shifted[:, 0] * span[1] + shifted[:, 1]) * span[2] + shifted[:, 2]
    if size <= max(_MAX_BITMAP, 8 * len(key)) and size <= 1 << 27:
        seen = np.zeros(size, dtype=np.bool_)
        seen[key] = True
        return int(np.count_nonzero(seen))
    return int(np.unique(key).shape[0])


def box_count(points: npt.ArrayLike, scale: float) -> int:
    """N for one scale: the number of distinct integer cells ``floor(p * scale)``."""
    pts = as_points(points)
    if len(pts) == 0:
        return 0
    cells = np.floor(pts * scale)
    if not np.isfinite(cells).all() or np.abs(cells).max() >= _MAX_CELL:
        raise SignalError("point coordinates are too large for the scale")
    return _distinct_rows(cells.astype(np.int64))


def box_counts(points: npt.ArrayLike, scales: Sequence[int]) -> dict[int, int]:
    """N_j for every scale (scale -> count). Non-decreasing when each scale divides the next."""
    pts = as_points(points)
    return {int(s): box_count(pts, s) for s in scales}


def d_hat(scales: Sequence[float], counts: Sequence[int]) -> float:
    """Theil-Sen slope of ``(log2 s, log2 max(1, N))``: the median of all pairwise slopes.

    The median of an even number of slopes is the mean of the two middle values. Pure Python
    on purpose: there are at most a few dozen scales, and the verifier recomputes it.
    """
    if len(scales) != len(counts):
        raise SignalError("scales and counts differ in length")
    if len(scales) < 2:
        raise SignalError("D_hat needs at least 2 scales")
    xs = [math.log2(s) for s in scales]
    ys = [math.log2(max(1, n)) for n in counts]
    slopes: list[float] = []
    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            dx = xs[j] - xs[i]
            if dx == 0:
                raise SignalError("scales must be distinct")
            slopes.append((ys[j] - ys[i]) / dx)
    slopes.sort()
    mid = len(slopes) // 2
    if len(slopes) % 2:
        return slopes[mid]
    return (slopes[mid - 1] + slopes[mid]) / 2.0


def directions(seed: int, m: int = DEFAULT_DIRECTIONS) -> FloatArray:
    """The ``m`` unit directions of :func:`coherence`, a contract of this implementation.

    ``np.random.default_rng(seed).standard_normal((m, 3))``, each row divided by its
    Euclidean norm ``sqrt(x*x + y*y + z*z)``.
    """
    if m < 1:
        raise SignalError("need at least one direction")
    g = np.random.default_rng(seed).standard_normal((m, 3))
    norms = np.sqrt(g[:, 0] * g[:, 0] + g[:, 1] * g[:, 1] + g[:, 2] * g[:, 2])
    if not (norms > 0).all():  # probability zero, but never divide by zero
        raise SignalError("degenerate direction drawn")
    out: FloatArray = g / norms[:, None]
    return out


def coherence_profile(
    points: npt.ArrayLike, dirs: npt.ArrayLike, bins: int = DEFAULT_BINS, *, block: int = 0
) -> FloatArray:
    """Coherence of each direction: largest bin count / number of points.

    Projections are ``x*d0 + y*d1 + z*d2`` computed element-wise (no BLAS, so results do not
    depend on the BLAS build). Bin of value ``p`` is ``floor((p - min) * (bins / (max - min)))``
    with the value ``bins`` (p == max) folded into the last bin; a zero range puts every
    point in one bin (coherence 1.0). ``block`` directions are processed per numpy pass
    (0: as many as keep a pass near half a million values, which stays cache friendly).
    """
    pts = as_points(points)
    d = np.ascontiguousarray(dirs, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != 3:
        raise SignalError("directions must have shape (m, 3)")
    n = len(pts)
    if n == 0:
        raise SignalError("coherence needs at least one point")
    if bins < 1:
        raise SignalError("need at least one bin")
    x, y, z = (np.ascontiguousarray(pts[:, k]) for k in range(3))
    out = np.empty(len(d), dtype=np.float64)
    width = bins + 1
    if block <= 0:
        block = max(1, _BLOCK_VALUES // n)
    for start in range(0, len(d), block):
        db = d[start : start + block]
        c = len(db)
        proj = db[:, 0, None] * x
        proj += db[:, 1, None] * y
        proj += db[:, 2, None] * z
        lo = proj.min(axis=1)
        hi = proj.max(axis=1)
        span = hi - lo
        if not (np.isfinite(lo).all() and np.isfinite(span).all()):
            raise SignalError("point coordinates are too large to project")
        scale = np.zeros(c, dtype=np.float64)
        # A span so small that bins / span overflows (subnormal coordinates) is a point
        # cloud of one position along that direction: treated as zero span, one bin.
        nz = span > bins / _FLOAT_MAX
        scale[nz] = bins / span[nz]
        proj -= lo[:, None]
        proj *= scale[:, None]
        idx = proj.astype(np.int64)
        idx += (np.arange(c, dtype=np.int64) * width)[:, None]
        counts = np.bincount(idx.ravel(), minlength=c * width).reshape(c, width)
        counts[:, bins - 1] += counts[:, bins]
        out[start : start + c] = counts[:, :bins].max(axis=1) / n
    return out


def coherence(
    points: npt.ArrayLike,
    seed: int,
    *,
    m: int = DEFAULT_DIRECTIONS,
    bins: int = DEFAULT_BINS,
) -> tuple[float, list[float]]:
    """``(coh_star, v_star)``: the best coherence over ``m`` seeded directions and its direction.

    Ties go to the first direction drawn. Same seed + same points => same result, bit for bit.
    """
    dirs = directions(seed, m)
    prof = coherence_profile(points, dirs, bins)
    best = int(np.argmax(prof))
    return float(prof[best]), [float(v) for v in dirs[best]]
