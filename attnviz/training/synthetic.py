"""Seeded synthetic series in the spirit of ViTime's RealTS, with a difficulty knob for curricula.

Series are generated directly on the image's column grid (one time unit = one image column),
which is what the model sees after ViTime's resampling.  ``difficulty`` in [0, 1] widens the
data gradually: at 0 only single sinusoids whose periods are whole token columns (a model can
forecast those by copying whole tokens); the easy periods then move off the column grid
(``easy_jitter``, full by ``jitter_ramp``) so the model has to learn periods between columns,
which it does not generalise to from whole-column periods alone (measured); at 1 the
full mix of 1-3 sinusoids with short to long periods, square / triangle / sawtooth and step
waves, additive and multiplicative trends, random walks and noise.  Easy series always stay
in the mix, because small models fall back onto the mean-forecast plateau when they vanish.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAMILIES = ("sinusoids", "shaped_waves", "steps", "random_walk")


@dataclass(frozen=True)
class SyntheticSpec:
    """Ranges of the generator, in image columns (px).

    col_width: image columns per token column (the patch width); easy periods are multiples.
    min_period / max_period: period range at full difficulty.
    easy_fraction: share of easy single sinusoids kept at every difficulty.
    easy_jitter: largest relative deviation of easy periods from whole columns (0 = exact).
    jitter_ramp: difficulty at which the easy jitter reaches ``easy_jitter`` (0 = from the start).
    """

    col_width: int = 32
    easy_period_cols: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
    start_min_period: float = 56.0
    min_period: float = 10.0
    max_period: float = 480.0
    max_components: int = 3
    easy_fraction: float = 0.25
    other_family_fraction: float = 0.3
    max_noise: float = 0.15
    easy_jitter: float = 0.5
    jitter_ramp: float = 0.15

    def __post_init__(self) -> None:
        # Checked here so the Python API refuses what the CLI refuses: a mix above 1 would leave
        # no room for sinusoid mixtures and silently train on something else.
        for name in ("easy_fraction", "other_family_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.easy_fraction + self.other_family_fraction > 1.0:
            raise ValueError(
                f"easy_fraction {self.easy_fraction} + other_family_fraction {self.other_family_fraction} "
                "exceed 1 (the rest of each batch is sinusoid mixtures)"
            )
        if not self.easy_period_cols or min(self.easy_period_cols) < 1:
            raise ValueError(f"easy_period_cols must be whole columns >= 1, got {self.easy_period_cols}")


class SyntheticSeries:
    """Reproducible batches of synthetic series: ``SyntheticSeries(seed).batch(n, length, d)``."""

    def __init__(self, seed: int = 0, spec: SyntheticSpec | None = None) -> None:
        self.spec = spec or SyntheticSpec()
        self.rng = np.random.default_rng(seed)

    # ----- building blocks (all vectorised over the batch) ----------------------------------
    def _periods(self, n: int, k: int, lo: float, hi: float) -> np.ndarray:
        return np.exp(self.rng.uniform(np.log(lo), np.log(hi), size=(n, k)))

    def _sinusoids(self, t: np.ndarray, n: int, k: int, lo: float, hi: float) -> np.ndarray:
        periods = self._periods(n, k, lo, hi)
        phases = self.rng.uniform(0, 2 * np.pi, size=(n, k))
        amps = self.rng.uniform(0.3, 1.0, size=(n, k))
        # Random number of active components per series (1..k).
        active = np.arange(k)[None, :] < self.rng.integers(1, k + 1, size=(n, 1))
        amps = amps * active
        angle = 2 * np.pi * t[None, None, :] / periods[..., None] + phases[..., None]
        return np.einsum("nk,nkt->nt", amps, np.sin(angle))

    def _easy(self, t: np.ndarray, n: int, difficulty: float) -> np.ndarray:
        spec = self.spec
        cols = self.rng.choice(np.asarray(spec.easy_period_cols), size=(n, 1))
        period = cols * spec.col_width
        if spec.easy_jitter > 0:  # (no draw at all without jitter: runs made before it replay exactly)
            ramp = 1.0 if spec.jitter_ramp <= 0 else min(1.0, difficulty / spec.jitter_ramp)
            period = period * (1.0 + spec.easy_jitter * ramp * self.rng.uniform(-1.0, 1.0, size=(n, 1)))
        phase = self.rng.uniform(0, 2 * np.pi, size=(n, 1))
        amp = self.rng.uniform(0.5, 1.0, size=(n, 1))
        return amp * np.sin(2 * np.pi * t[None, :] / period + phase)

    def _shaped_waves(self, t: np.ndarray, n: int, lo: float, hi: float) -> np.ndarray:
        period = self._periods(n, 1, max(lo, 16.0), hi)
        phase = self.rng.uniform(0, 1, size=(n, 1))
        frac = np.mod(t[None, :] / period + phase, 1.0)
        square = np.where(frac < 0.5, 1.0, -1.0)
        triangle = 1.0 - 4.0 * np.abs(frac - 0.5)
        sawtooth = 2.0 * frac - 1.0
        kind = self.rng.integers(0, 3, size=(n, 1))
        wave = np.where(kind == 0, square, np.where(kind == 1, triangle, sawtooth))
        # Often on top of a sinusoid, as real seasonal shapes are rarely pure.
        return wave + self.rng.uniform(0, 0.6, size=(n, 1)) * self._sinusoids(t, n, 1, lo, hi)

    def _steps(self, t: np.ndarray, n: int) -> np.ndarray:
        length = t.shape[0]
        n_change = self.rng.integers(2, 12, size=n)
        out = np.empty((n, length))
        for i in range(n):  # a handful of change points per series; cheap
            cuts = np.sort(self.rng.integers(1, length, size=n_change[i]))
            levels = self.rng.normal(0, 1, size=n_change[i] + 1)
            out[i] = levels[np.searchsorted(cuts, t, side="right")]
        return out

    def _random_walk(self, t: np.ndarray, n: int) -> np.ndarray:
        steps = self.rng.normal(0, 1, size=(n, t.shape[0]))
        return np.cumsum(steps, axis=1) / np.sqrt(t.shape[0])

    def _trend(self, t: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = t[None, :] / t[-1]
        slope = self.rng.normal(0, 1.0, size=(n, 1))
        curve = self.rng.normal(0, 0.5, size=(n, 1))
        additive = slope * x + curve * x**2
        multiplicative = 1.0 + self.rng.uniform(-0.6, 1.5, size=(n, 1)) * x
        return additive, multiplicative

    # ----- the mix -------------------------------------------------------------------------------
    def batch(self, n: int, length: int, difficulty: float = 1.0) -> np.ndarray:
        """``n`` series of ``length`` columns at curriculum ``difficulty`` in [0, 1]."""
        return self.batch_with_labels(n, length, difficulty)[0]

    def batch_with_labels(
        self, n: int, length: int, difficulty: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like ``batch``, plus a mask of the series that are sums of sinusoids (predictable)."""
        if n < 1 or length < 2:
            raise ValueError(f"need n >= 1 and length >= 2, got n={n}, length={length}")
        d = float(np.clip(difficulty, 0.0, 1.0))
        spec = self.spec
        t = np.arange(length, dtype=np.float64)
        lo = float(np.exp(np.log(spec.start_min_period) + d * np.log(spec.min_period / spec.start_min_period)))
        hi = spec.max_period
        k = 1 + int(round(d * (spec.max_components - 1)))

        easy_share = max(spec.easy_fraction, 1.0 - 2.0 * d)
        other_share = spec.other_family_fraction * d
        choice = self.rng.uniform(size=n)
        family = np.where(
            choice < easy_share, -1, np.where(choice < easy_share + other_share, 1, 0)
        )
        out = self._sinusoids(t, n, k, lo, hi)
        easy = family == -1
        if easy.any():
            out[easy] = self._easy(t, int(easy.sum()), d)
        other = family == 1
        if other.any():
            m = int(other.sum())
            kind = self.rng.integers(0, 3, size=m)
            parts = [
                self._shaped_waves(t, m, lo, hi),
                self._steps(t, m),
                self._random_walk(t, m) + 0.5 * self._sinusoids(t, m, 1, lo, hi),
            ]
            out[other] = np.choose(kind[:, None], parts)

        # Trends and noise grow with difficulty; easy series stay clean.
        hard = ~easy
        if hard.any() and d > 0:
            m = int(hard.sum())
            additive, multiplicative = self._trend(t, m)
            use_add = self.rng.uniform(size=(m, 1)) < 0.3 * d
            use_mul = self.rng.uniform(size=(m, 1)) < 0.2 * d
            x = out[hard]
            x = np.where(use_mul, x * multiplicative, x)
            x = np.where(use_add, x + additive * x.std(axis=1, keepdims=True), x)
            noise = self.rng.uniform(0, spec.max_noise * d, size=(m, 1))
            x = x + noise * x.std(axis=1, keepdims=True) * self.rng.normal(size=x.shape)
            out[hard] = x

        # RealTS augmentations: random time reversal and sign flip.
        flip_time = self.rng.uniform(size=n) < 0.5
        out[flip_time] = out[flip_time, ::-1]
        out *= np.where(self.rng.uniform(size=(n, 1)) < 0.5, -1.0, 1.0)
        out += self.rng.normal(0, 2.0, size=(n, 1))  # arbitrary offsets: normalisation must handle them
        return out, family != 1
