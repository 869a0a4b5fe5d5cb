"""FoldedGrid: which samples each VisionTS token covers in one call (the token-to-time map).

VisionTS (Chen et al., ICML 2025) turns a context of ``L`` samples into an image:

1. normalise, then pad ``pad_left`` samples on the left so the length is a multiple of the
   period ``P`` (``replicate`` padding: the pad repeats the first sample);
2. fold: padded sample ``s = p * P + f`` goes to row ``f`` (phase in the period) and column
   ``p`` (period index), an image of ``P`` rows x ``periods_in`` columns;
3. resize that to ``image_size`` rows x ``input_cols * patch_size`` pixel columns; the rest of
   the ``image_size`` x ``image_size`` image is zero and masked;
4. cut into ``grid_size`` x ``grid_size`` patches (14 x 14 + CLS for the released MAEs).

The forecast is read back with a second resize of the whole reconstructed image to ``P`` rows x
``periods_out`` columns, unfolded, and sliced after the padded context.

Every resize is linear and separable, so each step is a weight matrix.  The matrices are read
from visionts' own resize objects (see ``attnviz.forecasters.visionts.forecaster``), never
re-derived here.  From them this module gives, per patch token in natural row-major order
(token ``k = row * grid_size + col``):

``input_weights`` (tokens, L)
    the token's mean pixel as a weighted sum of the normalised context samples: what a visible
    token reads.  Zero rows for masked tokens.
``output_weights`` (tokens, L + H)
    how much of each output sample (reconstructed context, then forecast) comes from the
    token's pixels: what a token writes.  Summed over tokens, each column is 1.
``sample_weights`` (tokens, L + H)
    the coverage used for time: ``input_weights`` (padded with zeros for the forecast) for
    visible tokens, ``output_weights`` for masked ones, each row normalised to sum 1 (a masked
    token that writes nothing inside the window keeps a zero row).

A token covers a phase range x a period range: not a contiguous span when ``P > 1``, and tokens
of one row are whole periods apart sample by sample.  One token column spans
``samples_per_col = P * periods_in / input_cols`` samples (not always a whole number of periods),
counted from the start of the *padded* context: column ``c`` starts at caller sample
``c * samples_per_col - pad_left``, which the TokenGrids record as ``sample_offset = -pad_left``.

The encoder sees only the visible tokens (the first ``input_cols`` columns, every row), in the
order ``argsort(noise)`` leaves them (ties broken by the sort, so not row-major, on the CPU
too).  ``ids_restore`` of the call, when known, gives that order; :meth:`FoldedGrid.to_natural`
puts an encoder attention map back into row-major order, where it matches
:meth:`FoldedGrid.encoder_grid`.  The decoder sees all tokens in natural order
(:meth:`FoldedGrid.decoder_grid`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Callable

import numpy as np

from ...grid import TokenGrid

__all__ = ["FoldedGrid", "resize_weights", "padding_sources"]

#: One-hot basis images pushed through a resize at a time (bounds the memory of reading weights).
_BASIS_CHUNK = 256


def resize_weights(resize: Callable[[Any], Any], length: int, axis: str) -> np.ndarray:
    """The linear weights of a 2-D ``resize`` along one axis, read by resizing one-hot images.

    ``axis="rows"``: images of ``length`` x 1 pixels with one hot row; ``axis="cols"``: 1 x
    ``length`` with one hot column.  The other axis has length 1, which any interpolation
    stretches to a constant, so the output along ``axis`` is the weight column of that input
    pixel.  Returns ``(out_length, length)`` float64: output pixel <- input pixel.
    """
    import torch

    if axis not in ("rows", "cols"):
        raise ValueError(f"axis must be 'rows' or 'cols', got {axis!r}")
    columns = []
    for start in range(0, length, _BASIS_CHUNK):
        stop = min(length, start + _BASIS_CHUNK)
        basis = torch.zeros(stop - start, 1, length, dtype=torch.float64)
        basis[torch.arange(stop - start), 0, torch.arange(start, stop)] = 1.0
        images = basis[:, :, :, None] if axis == "rows" else basis[:, :, None, :]
        out = resize(images)
        line = out[:, 0, :, 0] if axis == "rows" else out[:, 0, 0, :]
        columns.append(line.double().numpy())
    return np.concatenate(columns, axis=0).T


def padding_sources(length: int, pad_left: int, mode: str) -> np.ndarray:
    """Caller sample each padded position repeats (-1: a constant pad, no sample).

    Read from ``torch.nn.functional.pad`` itself on sample indices, so every mode visionts
    accepts (``replicate`` for VisionTS; VisionTS++'s ``padding_mode``) maps as it pads.
    """
    import torch
    import torch.nn.functional as F

    index = torch.arange(1, length + 1, dtype=torch.float64)[None, None]
    padded = index if pad_left == 0 else F.pad(index, (pad_left, 0), mode=mode)
    return padded[0, 0].numpy().astype(np.int64) - 1


@dataclass(frozen=True, eq=False)
class FoldedGrid:
    """Token-to-time map of one VisionTS call.  See the module doc.

    periodicity: P.  context_length, horizon: L and H of the call (samples).
    pad_left: samples padded before the context.  image_size, patch_size: pixels.
    input_cols: token columns holding the padded context (visible to the encoder).
    periods_in: periods in the padded context.  periods_out: periods the output resize unfolds
    the image into.
    input_row_weights (image_size, P), input_col_weights (input_cols * patch_size, periods_in):
    pixel <- (phase, period) of the input resize.  output_row_weights (P, image_size),
    output_col_weights (periods_out, image_size): (phase, period) <- pixel of the output resize.
    pad_sources (pad_left + L,): caller sample behind each padded position (-1: none).
    ids_restore (grid_size**2,): the call's restore indices (None until a call is observed).
    """

    periodicity: int
    context_length: int
    horizon: int
    pad_left: int
    image_size: int
    patch_size: int
    input_cols: int
    periods_in: int
    periods_out: int
    input_row_weights: np.ndarray
    input_col_weights: np.ndarray
    output_row_weights: np.ndarray
    output_col_weights: np.ndarray
    pad_sources: np.ndarray
    ids_restore: np.ndarray | None = None
    prefix_tokens: int = 1

    def __post_init__(self) -> None:
        p, g = self.periodicity, self.image_size
        expected = {
            "input_row_weights": (g, p),
            "input_col_weights": (self.input_cols * self.patch_size, self.periods_in),
            "output_row_weights": (p, g),
            "output_col_weights": (self.periods_out, g),
            "pad_sources": (self.pad_left + self.context_length,),
        }
        for name, shape in expected.items():
            got = np.shape(getattr(self, name))
            if got != shape:
                raise ValueError(f"FoldedGrid.{name} must have shape {shape}, got {got}")
        if self.ids_restore is not None and np.shape(self.ids_restore) != (self.num_patches,):
            raise ValueError(
                f"FoldedGrid.ids_restore must have shape ({self.num_patches},), "
                f"got {np.shape(self.ids_restore)}"
            )

    # ----- layout ----------------------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        """Token rows = token columns (14 for 224-pixel images in 16-pixel patches)."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def seq_len(self) -> int:
        """Tokens the decoder sees: prefix (CLS) + every patch."""
        return self.prefix_tokens + self.num_patches

    @property
    def num_visible(self) -> int:
        """Patch tokens the encoder sees: every row of the first ``input_cols`` columns."""
        return self.grid_size * self.input_cols

    @property
    def samples_per_col(self) -> float:
        """Samples one token column spans on the context side: ``P * periods_in / input_cols``."""
        return self.periodicity * self.periods_in / self.input_cols

    @property
    def visible(self) -> np.ndarray:
        """(num_patches,) bool, natural order: True for tokens the encoder sees."""
        return np.tile(np.arange(self.grid_size) < self.input_cols, self.grid_size)

    def token_index(self, row: int, col: int) -> int:
        """Natural index of the patch token at (row, col), prefix excluded."""
        return row * self.grid_size + col

    # ----- coverage --------------------------------------------------------------------------------
    def _token_blocks(self, weights: np.ndarray, count: int, axis: int, reduce: str) -> np.ndarray:
        """Per token row/column: mean (input side) or sum (output side) of its pixels' weights."""
        w = np.moveaxis(weights, axis, 0)[: count * self.patch_size]
        w = w.reshape((count, self.patch_size) + w.shape[1:])
        return w.mean(axis=1) if reduce == "mean" else w.sum(axis=1)

    @cached_property
    def input_weights(self) -> np.ndarray:
        """(num_patches, L): mean pixel of each visible token over the normalised context."""
        g, p, n = self.grid_size, self.periodicity, self.input_cols
        phase = self._token_blocks(self.input_row_weights, g, 0, "mean")  # (g rows, P)
        period = self._token_blocks(self.input_col_weights, n, 0, "mean")  # (n cols, periods_in)
        padded = np.einsum("cq,rf->rcqf", period, phase).reshape(g, n, self.periods_in * p)
        out = np.zeros((g, g, self.context_length))
        keep = self.pad_sources >= 0  # a constant pad reads no sample
        np.add.at(out[:, :n], (slice(None), slice(None), self.pad_sources[keep]), padded[..., keep])
        return out.reshape(self.num_patches, self.context_length)

    @cached_property
    def output_weights(self) -> np.ndarray:
        """(num_patches, L + H): share of each output sample that comes from each token."""
        g, p = self.grid_size, self.periodicity
        phase = self._token_blocks(self.output_row_weights, g, 1, "sum")  # (g rows, P)
        period = self._token_blocks(self.output_col_weights, g, 1, "sum")  # (g cols, periods_out)
        unfolded = np.einsum("cq,rf->rcqf", period, phase).reshape(g * g, self.periods_out * p)
        start = self.pad_left
        return unfolded[:, start : start + self.context_length + self.horizon].copy()

    @cached_property
    def sample_weights(self) -> np.ndarray:
        """(num_patches, L + H): reads for visible tokens, writes for masked ones, rows sum 1."""
        weights = self.output_weights.copy()
        vis = self.visible
        weights[vis] = 0.0
        weights[vis, : self.context_length] = self.input_weights[vis]
        total = weights.sum(axis=1, keepdims=True)
        return np.divide(weights, total, out=np.zeros_like(weights), where=total != 0)

    @cached_property
    def token_centers(self) -> np.ndarray:
        """(num_patches,) weighted mean sample of each token's coverage (NaN: none in the window)."""
        w = self.sample_weights
        total = w.sum(axis=1)
        centers = w @ np.arange(w.shape[1], dtype=np.float64)
        return np.divide(centers, total, out=np.full(len(w), np.nan), where=total != 0)

    # ----- token order and TokenGrids ---------------------------------------------------------------
    @property
    def encoder_tokens(self) -> np.ndarray | None:
        """Natural index of the patch token at each encoder position after CLS (None: no call)."""
        if self.ids_restore is None:
            return None
        return np.argsort(self.ids_restore, kind="stable")[: self.num_visible]

    @property
    def encoder_order(self) -> np.ndarray:
        """Encoder sequence positions in natural order: ``A[..., order, :][..., order]`` is
        row-major (CLS first).  Needs the call's ``ids_restore``."""
        tokens = self.encoder_tokens
        if tokens is None:
            raise ValueError(
                "this FoldedGrid has no ids_restore: the encoder's token order is known only "
                "after a call (use the geometry of a Forecast returned by predict)"
            )
        if not np.array_equal(np.sort(tokens), np.flatnonzero(self.visible)):
            raise ValueError(
                "ids_restore does not keep exactly the visible columns; it does not belong to "
                "this geometry"
            )
        return np.concatenate([np.arange(self.prefix_tokens), self.prefix_tokens + np.argsort(tokens)])

    def to_natural(self, encoder_attention: Any) -> np.ndarray:
        """Reorder an encoder map (..., S_enc, S_enc) so tokens are row-major (CLS first)."""
        arr = np.asarray(
            encoder_attention.detach().cpu() if hasattr(encoder_attention, "detach") else encoder_attention
        )
        s = self.prefix_tokens + self.num_visible
        if arr.ndim < 2 or arr.shape[-2:] != (s, s):
            raise ValueError(
                f"encoder attention must have shape (..., {s}, {s}) for this call "
                f"({self.prefix_tokens} prefix + {self.grid_size} rows x {self.input_cols} visible "
                f"columns), got {arr.shape}"
            )
        order = self.encoder_order
        return arr[..., order, :][..., order]

    def _token_grid(self, cols: int) -> TokenGrid:
        return TokenGrid(
            rows=self.grid_size, cols=cols, prefix_tokens=self.prefix_tokens, history_cols=self.input_cols,
            samples_per_col=self.samples_per_col, history_length=self.context_length, horizon=self.horizon,
            history_boundary=float(self.input_cols), sample_offset=float(-self.pad_left),
        )

    def decoder_grid(self) -> TokenGrid:
        """TokenGrid of the decoder layers: every token, natural order.  Column ``c`` starts at
        padded sample ``c * samples_per_col``, i.e. caller sample ``c * samples_per_col -
        pad_left``: the grid's ``sample_offset`` is ``-pad_left`` (see
        :meth:`TokenGrid.col_start_sample`)."""
        return self._token_grid(self.grid_size)

    def encoder_grid(self) -> TokenGrid:
        """TokenGrid of the encoder layers once put in natural order with :meth:`to_natural`."""
        return self._token_grid(self.input_cols)

    def encoder_call_grid(self) -> TokenGrid:
        """TokenGrid of the encoder layers as they run: the visible tokens in this call's order
        (``token_order``), so the reducers fold them into the natural columns of
        :meth:`encoder_grid` without :meth:`to_natural`.  Needs the call's ``ids_restore``."""
        self.encoder_order  # checks ids_restore keeps exactly the visible columns
        rows, cols = np.divmod(self.encoder_tokens, self.grid_size)
        return replace(self.encoder_grid(), token_order=tuple(int(i) for i in rows * self.input_cols + cols))

    def with_ids_restore(self, ids_restore: Any) -> "FoldedGrid":
        """A copy carrying a call's ``ids_restore`` (one row of it)."""
        ids = np.asarray(ids_restore.detach().cpu() if hasattr(ids_restore, "detach") else ids_restore)
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["ids_restore"] = ids.astype(np.int64).reshape(-1)
        return FoldedGrid(**fields)

    def to_dict(self) -> dict:
        """JSON-ready scalars (the weight matrices are left out)."""
        return {
            "periodicity": self.periodicity,
            "context_length": self.context_length,
            "horizon": self.horizon,
            "pad_left": self.pad_left,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "grid_size": self.grid_size,
            "input_cols": self.input_cols,
            "periods_in": self.periods_in,
            "periods_out": self.periods_out,
            "samples_per_col": self.samples_per_col,
            "prefix_tokens": self.prefix_tokens,
            "encoder_tokens": None if self.encoder_tokens is None else self.encoder_tokens.tolist(),
        }

    def __repr__(self) -> str:
        return (
            f"FoldedGrid(P={self.periodicity}, L={self.context_length}, H={self.horizon}, "
            f"pad_left={self.pad_left}, {self.grid_size}x{self.grid_size} tokens, "
            f"{self.input_cols} visible columns, {self.samples_per_col:g} samples per column)"
        )
