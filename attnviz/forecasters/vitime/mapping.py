"""Series <-> image mapping of ViTime, reproducing upstream ``InferenceInterface`` step by step.

1. the history (L samples) of a call with horizon H is resampled onto int(L / (L+H) * W) columns;
2. mu / std of that resampled history (``muNorm`` changes mu as upstream does);
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
        c = self.config
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
    def location_scale(self, history: np.ndarray) -> tuple[float, float]:
        """mu and std of the resampled history, as upstream computes them."""
        std = float(np.std(history)) + STD_EPS
        p = self.config.mu_norm
        if p is None:
            mu = float(np.mean(history))
        else:
            with np.errstate(invalid="ignore"):
                signed = np.power(history, p) * np.sign(history)
            mu0 = float(np.mean(signed)) + STD_EPS
            mu = float(np.sqrt(np.abs(mu0)) * np.sign(mu0))
            if not np.isfinite(mu):
                raise ValueError(
                    f"muNorm={p} gives no finite mean for this series (negative values raised to a "
                    f"fractional power); use a checkpoint without muNorm or shift the series"
                )
        return mu, std

    # ----- geometry --------------------------------------------------------------------------------
    def history_width(self, length: int, horizon: int) -> int:
        return int(length / (length + horizon) * self.config.width)

    def grid_for(self, length: int, horizon: int) -> TokenGrid:
        c = self.config
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
        """Series (validated, 1-D float) + horizon -> blurred input image and decode state."""
        length = series.shape[0]
        hist_width = self.history_width(length, horizon)
        if hist_width < 1:
            raise ValueError(
                f"history of {length} samples is too short for horizon {horizon}: it would cover "
                f"no image column (width {self.config.width}); use a longer history or shorter horizon"
            )
        history = resample(series, hist_width)
        mu, std = self.location_scale(history)
        image = self.one_hot((history - mu) / std)
        full = np.zeros((self.config.h, self.config.width), dtype=np.float64)
        full[:, :hist_width] = image
        blurred = gaussian_blur(full)
        return PreparedSeries(blurred, mu, std, hist_width, self.grid_for(length, horizon))

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
