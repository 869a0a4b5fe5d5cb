"""Series <-> image mapping of ViTime, reproducing upstream ``InferenceInterface`` step by step.

1. the history (L samples) of a call with horizon H is resampled onto int(L / (L+H) * W) columns;
2. mu / std of that resampled history (``muNorm`` changes mu as upstream does), computed on the
   history divided by a power of two so any scale works, with a scale-relative zero-std guard
   (upstream adds an absolute 1e-7, which hides a series of amplitude 1e-9);
3. values clipped to [-maxScal, maxScal] and one-hot binned into h bins, future columns zero;
4. the OpenCV ``GaussianBlur((31, 31), 0) * 31`` (sigma 5, BORDER_REFLECT_101), done with scipy;
5. decoding per column by argmax (upstream default) or expectation, de-normalised, resampled
   back to L + H samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import correlate1d

from ...grid import TokenGrid
from .config import ViTimeConfig

BLUR_KERNEL_SIZE = 31
STD_EPS = 1e-7
FLAT_EPS = 1e-12  # std guard of a constant history, relative to its magnitude
MIN_HISTORY_COLS = 2  # a history must cover at least this many token columns
_FLOAT_MAX = float(np.finfo(np.float64).max)


def magnitude_scale(values: np.ndarray) -> float:
    """The power of two that brings max |values| into [1, 2) (1.0 for all zeros).

    Dividing by it is exact, so normalising a series and its 2**k multiple gives the same bits.
    """
    top = float(np.max(np.abs(values))) if len(values) else 0.0
    if top == 0.0 or not np.isfinite(top):
        return 1.0
    return float(np.ldexp(1.0, int(np.frexp(top)[1]) - 1))


def opencv_gaussian_kernel(ksize: int, sigma: float = 0.0) -> np.ndarray:
    """The 1-D kernel OpenCV's ``getGaussianKernel`` builds in double precision."""
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be a positive odd integer, got {ksize!r}")
    if sigma <= 0:
        sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    offsets = np.arange(ksize, dtype=np.float64) - (ksize - 1) * 0.5
    kernel = np.exp(-(offsets**2) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def gaussian_blur(image: np.ndarray, ksize: int = BLUR_KERNEL_SIZE, gain: float | None = None) -> np.ndarray:
    """Separable Gaussian blur over the last two axes, equal to OpenCV's with BORDER_REFLECT_101.

    ``gain`` multiplies the result; upstream multiplies by the kernel size (31).
    """
    kernel = opencv_gaussian_kernel(ksize)
    out = correlate1d(np.asarray(image, dtype=np.float64), kernel, axis=-1, mode="mirror")
    out = correlate1d(out, kernel, axis=-2, mode="mirror")
    return out * (ksize if gain is None else gain)


def resample(values: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling of a 1-D sequence onto ``length`` evenly spaced points (end points kept)."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] == length:
        return values.copy()
    if values.shape[0] == 1:
        return np.full(length, values[0])
    old = np.arange(values.shape[0], dtype=np.float64)
    new = np.linspace(0.0, values.shape[0] - 1, length)
    return np.interp(new, old, values)


@dataclass(frozen=True)
class PreparedSeries:
    """The model input of one call and what is needed to decode its output."""

    image: np.ndarray  # (h, W) float64, blurred history, future columns zero
    mu: float
    std: float
    history_width: int  # image columns that carry the history
    grid: TokenGrid


class SeriesImageMapper:
    """Maps a series to ViTime's input image and the model's output back to values."""

    def __init__(self, config: ViTimeConfig) -> None:
        self.config = config

    # ----- value binning ---------------------------------------------------------------------
    def value_to_bin(self, normalised: np.ndarray) -> np.ndarray:
        """Bin index of each normalised value; NaN is refused (it would index out of the image)."""
        c = self.config
        normalised = np.asarray(normalised, dtype=np.float64)
        if not np.isfinite(normalised).all():
            bad = int(np.flatnonzero(~np.isfinite(normalised.ravel()))[0])
            raise ValueError(
                f"normalised value {normalised.ravel()[bad]} at index {bad} cannot be binned "
                f"(expected finite values; scale the series)"
            )
        clipped = np.clip(normalised, -c.max_scal, c.max_scal)
        bins = np.floor((clipped + c.max_scal) / c.resolution)
        return np.clip(bins, 0, c.h - 1).astype(np.int64)

    def bin_to_value(self, bins: np.ndarray) -> np.ndarray:
        return np.asarray(bins, dtype=np.float64) * self.config.resolution - self.config.max_scal

    def one_hot(self, normalised: np.ndarray) -> np.ndarray:
        """(T,) normalised values -> (h, T) one-hot image."""
        bins = self.value_to_bin(normalised)
        image = np.zeros((self.config.h, bins.shape[0]), dtype=np.float64)
        image[bins, np.arange(bins.shape[0])] = 1.0
        return image

    # ----- normalisation -------------------------------------------------------------------------
    def scaled_location_scale(self, scaled: np.ndarray, scale: float) -> tuple[float, float]:
        """mu and std of ``scaled`` = history / ``scale`` (``magnitude_scale``), in scaled units.

        Working on |values| in [1, 2) keeps every square finite at any scale.  upstream adds 1e-7
        to std in the caller's units, which swamps a 1e-9 series; here the guard against a zero
        std is relative: 1e-7 of the history's range (1e-7 for a unit-range series, as upstream)
        and at least 1e-12 of its magnitude (a constant history).  ``muNorm``'s mean follows
        upstream's formula in the caller's units (it is not scale-free for powers other than 2).
        """
        spread = float(np.max(scaled) - np.min(scaled))
        std = float(np.std(scaled)) + max(STD_EPS * spread, FLAT_EPS)
        p = self.config.mu_norm
        if p is None:
            return float(np.mean(scaled)), std
        history = scaled * scale
        with np.errstate(invalid="ignore", over="ignore"):
            signed = np.power(history, p) * np.sign(history)
            mu0 = float(np.mean(signed)) + STD_EPS
        mu = float(np.sqrt(np.abs(mu0)) * np.sign(mu0))
        if not np.isfinite(mu):
            raise ValueError(
                f"muNorm={p} gives no finite mean for this series (negative values raised to a "
                f"fractional power, or values up to {float(np.max(np.abs(history))):.3g} overflowing "
                f"the power); use a checkpoint without muNorm, or shift or rescale the series"
            )
        return mu / scale, std

    # ----- geometry --------------------------------------------------------------------------------
    def history_width(self, length: int, horizon: int) -> int:
        return int(length / (length + horizon) * self.config.width)

    def check_coverage(self, length: int, horizon: int) -> None:
        """Refuse a call whose history covers fewer than ``MIN_HISTORY_COLS`` token columns.

        With less than two columns of history there is no lag to attend over and no period to
        find: the forecast and every score would be noise, so every caller gets this error.
        """
        c = self.config
        pw = c.patch_size[1]
        covered = self.history_width(length, horizon) / pw
        if covered >= MIN_HISTORY_COLS:
            return
        per_col = (length + horizon) / c.cols
        need = MIN_HISTORY_COLS * pw
        # smallest history / largest horizon with int(L / (L + H) * W) >= need (W > need assumed)
        min_length = int(np.ceil(need * horizon / max(c.width - need, 1)))
        while self.history_width(min_length, horizon) < need:  # int() rounding: a step or two
            min_length += 1
        max_horizon = int(np.floor(length * (c.width - need) / need))
        while max_horizon >= 1 and self.history_width(length, max_horizon) < need:
            max_horizon -= 1
        hint = f"give at least {min_length} history samples"
        if max_horizon >= 1:
            hint += f" or a horizon of at most {max_horizon}"
        raise ValueError(
            f"history of {length} samples with horizon {horizon} covers {covered:.2f} token "
            f"columns (one column = {per_col:.6g} samples here), fewer than the "
            f"{MIN_HISTORY_COLS} needed to forecast or explain; {hint}"
        )

    def grid_for(self, length: int, horizon: int) -> TokenGrid:
        c = self.config
        self.check_coverage(length, horizon)
        width = self.history_width(length, horizon)
        return TokenGrid.for_call(
            rows=c.rows,
            cols=c.cols,
            prefix_tokens=1,
            history_length=length,
            horizon=horizon,
            history_boundary=width / c.patch_size[1],
        )

    # ----- forward mapping -------------------------------------------------------------------------
    def prepare(self, series: np.ndarray, horizon: int) -> PreparedSeries:
        """Series (validated, 1-D float) + horizon -> blurred input image and decode state.

        Scale and shift are taken out in float64 on the history divided by a power of two, so a
        series times 1e-9 or 1e200 draws the image of the unit series; only a series whose
        forecast range cannot be held in float64 is refused (one line naming the values).
        """
        length = series.shape[0]
        grid = self.grid_for(length, horizon)
        hist_width = self.history_width(length, horizon)
        scale = magnitude_scale(series)
        scaled = resample(series / scale, hist_width)  # interpolating first could overflow at 1e308
        mu, std = self.scaled_location_scale(scaled, scale)
        reach = abs(mu) + self.config.max_scal * std  # largest decoded magnitude, scaled units
        if reach * (scale / _FLOAT_MAX) >= 0.999:
            exponent = np.log10(reach) + np.log10(scale)
            raise ValueError(
                f"series values up to {float(np.max(np.abs(series))):.3g} would forecast values up "
                f"to ~{10 ** (exponent % 1):.2f}e+{int(exponent)} (mean + {self.config.max_scal:g} "
                f"std), beyond the float64 range ({_FLOAT_MAX:.3g}); divide the series by a "
                f"constant first"
            )
        image = self.one_hot((scaled - mu) / std)
        full = np.zeros((self.config.h, self.config.width), dtype=np.float64)
        full[:, :hist_width] = image
        blurred = gaussian_blur(full)
        return PreparedSeries(blurred, mu * scale, std * scale, hist_width, grid)

    def target_bins(self, normalised_full: np.ndarray) -> np.ndarray:
        """Bins of a normalised full-width sequence (training targets)."""
        return self.value_to_bin(normalised_full)

    # ----- inverse mapping -------------------------------------------------------------------------
    def decode(
        self, probs: np.ndarray, prepared: PreparedSeries, method: str = "max"
    ) -> np.ndarray:
        """Per-column bin probabilities (W, h) -> L + H values in the caller's units."""
        if method == "max":
            index = np.argmax(probs, axis=-1).astype(np.float64)
        elif method in ("expectation", "mean"):
            p = probs / (np.sum(probs, axis=-1, keepdims=True) + 1e-8)
            index = p @ np.arange(probs.shape[-1], dtype=np.float64)
        else:
            raise ValueError(f"decode method must be 'max' or 'expectation', got {method!r}")
        values = self.bin_to_value(index) * prepared.std + prepared.mu
        grid = prepared.grid
        return resample(values, grid.history_length + grid.horizon)
