"""Hand-built attention maps with known answers, shared by the module tests and test_analysis.

Not a test module (pytest collects only ``test_*.py``); the tests import it by name because
pytest puts this folder on ``sys.path`` (no ``__init__.py`` here).
"""
from __future__ import annotations

import numpy as np

from attnviz.grid import TokenGrid


def grid_300_200(rows: int = 4, cols: int = 25) -> TokenGrid:
    """300 history + 200 horizon on 25 columns: 20 samples per column (not 16)."""
    return TokenGrid.for_call(rows=rows, cols=cols, prefix_tokens=1, history_length=300, horizon=200)


def grid_77(history: int, horizon: int, rows: int = 2) -> TokenGrid:
    """The released model's 77 token columns (+ CLS) for ``history + horizon`` samples:
    512 + 720 give 16 samples per column, 300 + 200 give 500/77 ~ 6.49."""
    return TokenGrid.for_call(rows=rows, cols=77, prefix_tokens=1, history_length=history, horizon=horizon)


SMALL_GRID = TokenGrid(rows=2, cols=3, prefix_tokens=1, history_cols=2, samples_per_col=1.0)
# The time map of ``hand_tokens()``: column q sends 0.9 to column q + 1 (mod 3), 0.1 to CLS.
HAND_TIME_MAP = np.array([[0, 0.9, 0], [0, 0, 0.9], [0.9, 0, 0]])


def hand_tokens() -> np.ndarray:
    """Token map on ``SMALL_GRID`` (2 rows x 3 cols + CLS): query (r, q) sends 0.1 to CLS and 0.9
    to key (1 - r, q + 1 mod 3), the other row of the next column.  The CLS query puts all its
    mass on one patch token (prefix queries must not reach a time map)."""
    g = SMALL_GRID
    a = np.zeros((g.seq_len, g.seq_len))
    a[0, g.token_index(1, 2)] = 1.0
    for r in range(g.rows):
        for q in range(g.cols):
            a[g.token_index(r, q), 0] = 0.1
            a[g.token_index(r, q), g.token_index(1 - r, (q + 1) % 3)] = 0.9
    return a


def tokens_from_time(kernel: np.ndarray, grid: TokenGrid, prefix_mass: np.ndarray | float = 0.0) -> np.ndarray:
    """Token map whose query (r, q) spreads kernel[q, k] evenly over the rows of key column k and
    prefix_mass[q] over the prefix tokens; prefix queries attend uniformly.  Rows sum to 1 when
    each kernel row sums to 1 - prefix_mass."""
    r, c, p = grid.rows, grid.cols, grid.prefix_tokens
    pm = np.broadcast_to(np.asarray(prefix_mass, dtype=float), (c,))
    s = grid.seq_len
    a = np.zeros((s, s))
    a[:p] = 1.0 / s
    body = np.repeat(kernel[:, None, :], r, axis=1) / r  # (q, r', k) -> key token (r', k)
    block = np.tile(body.reshape(c, r * c), (r, 1))  # query token (row, q) -> row-major
    a[p:, p:] = block
    if p:
        a[p:, :p] = np.tile(pm, r)[:, None] / p
    return a


def row_normalise(k: np.ndarray, total: np.ndarray | float = 1.0) -> np.ndarray:
    """Rows of ``k`` scaled to sum to ``total`` (a scalar or one value per row)."""
    return k / k.sum(axis=1, keepdims=True) * np.asarray(total, dtype=float).reshape(-1, 1)


def shifted_identity(cols: int, shift: int, mass: float = 1.0) -> np.ndarray:
    """Time map where every query column q >= shift sends ``mass`` to column q - shift; the first
    ``shift`` columns send it to themselves (lag 0, which no lag curve reports)."""
    t = np.zeros((cols, cols))
    for q in range(cols):
        t[q, q - shift if q >= shift else q] = mass
    return t


def periodic_kernel(grid: TokenGrid, period: float, amp: float = 0.6, decay: float = 150.0) -> np.ndarray:
    """Time map with locality plus bumps at multiples of ``period`` samples of lag."""
    q = np.arange(grid.cols)
    lag = (q[:, None] - q[None, :]) * grid.samples_per_col
    k = np.exp(-np.abs(lag) / decay) + amp * (1 + np.cos(2 * np.pi * lag / period)) * np.exp(
        -np.abs(lag) / 1500.0
    )
    return row_normalise(k)


def dense_rollout(fused: list[np.ndarray], discard_ratio: float, prefix: int) -> np.ndarray:
    """Attention rollout written out with numpy: discard (stable order), (A + I) / 2, rows / sums."""
    joint = np.eye(fused[0].shape[-1])
    for a in fused:
        a = a.copy()
        if discard_ratio:
            body = a[:, prefix:].ravel()
            n = int(body.size * discard_ratio)
            order = np.argsort(body, kind="stable")[:n]
            body[order] = 0.0
            a[:, prefix:] = body.reshape(a.shape[0], -1)
        a = (a + np.eye(a.shape[0])) / 2
        a = a / a.sum(axis=1)[:, None]
        joint = a @ joint
    return joint
