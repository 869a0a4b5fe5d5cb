"""VisionTSForecaster: a user's ``visionts.VisionTS`` (or ``VisionTSpp``) behind attnviz's interface.

The forecast is visionts' own: ``predict`` calls ``model.update_config(context_len, pred_len,
periodicity=...)`` and then ``model(x)``, nothing else.  What attnviz adds is the geometry of
the call (:class:`~attnviz.forecasters.visionts.geometry.FoldedGrid`), read from the same
``update_config`` run on a stand-in object (so asking for a grid never changes the model), and
the encoder's token order of the call, observed from the model's own ``random_masking``.

visionts is an optional dependency (``pip install attnviz[visionts]``); it is imported when a
forecaster is made, never when attnviz is.
"""
from __future__ import annotations

import contextlib
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from ...grid import TokenGrid
from ...validation import as_horizon, as_series
from ..vitime.checkpoint import CheckpointError
from .geometry import FoldedGrid, padding_sources, resize_weights

__all__ = ["VisionTSForecast", "VisionTSForecaster", "import_visionts", "untrained_reason"]

INSTALL_HINT = "pip install attnviz[visionts]"
#: The model families ``from_pretrained`` builds: VisionTS (an ImageNet MAE) and VisionTS++.
VARIANTS = ("visionts", "visiontspp")


def import_visionts() -> Any:
    """The ``visionts`` module, or an ImportError saying how to install it."""
    try:
        import visionts
    except ImportError as exc:
        raise ImportError(
            f"VisionTS support needs the visionts package ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return visionts


@dataclass(frozen=True, eq=False)
class VisionTSForecast:
    """Result of one ``predict`` call.

    forecast: the next ``horizon`` values (visionts' output, float64).  grid: TokenGrid of the
    decoder layers (all tokens, natural order).  geometry: the FoldedGrid of the call, with its
    ``ids_restore``.  mu, std: mean and standard deviation (visionts' ``+ 1e-5`` guard) of the
    context; visionts divides by ``std / norm_const``.  quantile_heads: VisionTS++ only, the
    other quantile heads' forecasts (heads, horizon) in the order visionts returns them
    (upstream does not document which level each head is).
    """

    forecast: np.ndarray
    grid: TokenGrid
    geometry: FoldedGrid
    mu: float
    std: float
    norm_const: float
    quantile_heads: np.ndarray | None = None
    decode: str = "visionts"


class _ConfigProbe:
    """Stands in for ``self`` in visionts' ``update_config``: keeps what it sets, changes no model."""

    def __init__(self, vision_model: nn.Module) -> None:
        self.vision_model = vision_model

    def register_buffer(self, name: str, tensor: torch.Tensor, persistent: bool = True) -> None:
        setattr(self, name, tensor)


class VisionTSForecaster:
    """A VisionTS / VisionTS++ model plus the periodicity it folds series with.

    model: a ``visionts.VisionTS`` or ``visionts.VisionTSpp`` (with its quantile heads, the
    default).  periodicity: samples per period ``P`` (1: no folding).  allow_random_weights:
    accept a model whose weights are a fresh random init (visionts continues with random weights
    when its checkpoint fails to load; tests and planted models pass True).  norm_const,
    align_const, interpolation: passed to ``update_config`` when given (visionts' defaults
    otherwise).  The model is put in eval mode; ``predict`` re-configures it for each call.
    """

    def __init__(
        self,
        model: Any,
        periodicity: int,
        *,
        allow_random_weights: bool = False,
        norm_const: float | None = None,
        align_const: float | None = None,
        interpolation: str | None = None,
    ) -> None:
        vt = import_visionts()
        if not isinstance(model, (vt.VisionTS, vt.VisionTSpp)):
            raise TypeError(
                f"model must be a visionts.VisionTS or visionts.VisionTSpp, got "
                f"{type(model).__module__}.{type(model).__name__}; build one with "
                f"VisionTSForecaster.from_pretrained(periodicity, arch, ckpt_dir)"
            )
        if isinstance(model, vt.VisionTSpp) and not getattr(model, "quantile", False):
            raise ValueError(
                "VisionTSpp(quantile=False) is not supported: visionts 1.0.1's forward then returns "
                "the decoder output of the first patch (B, H, 768) instead of the forecast; use "
                "quantile=True (its default)"
            )
        self.periodicity = _as_periodicity(periodicity)
        if not allow_random_weights:
            reason = untrained_reason(model.vision_model)
            if reason is not None:
                raise ValueError(
                    f"this {type(model).__name__} has freshly initialised, random weights ({reason}): "
                    f"its checkpoint did not load (visionts prints 'Bad checkpoint file' and goes on); "
                    f"load it with VisionTSForecaster.from_pretrained(...) or pass "
                    f"allow_random_weights=True to explain random weights on purpose"
                )
        self.model = model.eval()
        self._ids_restore: torch.Tensor | None = None  # the running call's, see layer_grids
        self.options = {
            k: v
            for k, v in dict(
                norm_const=norm_const, align_const=align_const, interpolation=interpolation
            ).items()
            if v is not None
        }

    # ----- construction ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        periodicity: int,
        arch: str = "mae_base",
        ckpt_dir: str | Path = "./ckpt/",
        *,
        variant: str = "visionts",
        download: bool = True,
        trust_checkpoint: bool = False,
        device: str | torch.device | None = None,
        **options: Any,
    ) -> "VisionTSForecaster":
        """Build visionts' model of ``arch`` with the weights in ``ckpt_dir``.

        variant: "visionts" (an ImageNet MAE: ``mae_base``, ``mae_large``, ``mae_huge``) or
        "visiontspp" (VisionTS++, quantile heads).  A missing file is fetched with visionts' own
        download when ``download`` (from Meta's MAE release or visionts' Hugging Face repository),
        else refused.  VisionTS weights are read here with ``torch.load(weights_only=True)`` and
        loaded strictly, so a bad file is an error, never random weights; ``trust_checkpoint=True``
        allows a full pickle load of a file you trust.  VisionTS++ is loaded by visionts (which
        raises on a bad file).  ``options`` go to the constructor (norm_const, ...).
        """
        vt = import_visionts()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        table = vt.model.MAE_ARCH
        if arch not in table:
            raise ValueError(f"arch must be one of {sorted(table)}, got {arch!r}")
        ckpt_dir = Path(ckpt_dir)
        if variant == "visiontspp":
            model = _load_visiontspp(vt, arch, ckpt_dir, download)
        else:
            path = ckpt_dir / table[arch][1]
            if not path.is_file():
                url = vt.model.MAE_DOWNLOAD_URL + table[arch][1]
                if not download:
                    raise CheckpointError(
                        f"no VisionTS checkpoint at {path}; put {table[arch][1]} there (from {url}) "
                        f"or pass download=True"
                    )
                _download(vt, url, path)
            model = vt.VisionTS(arch=arch, ckpt_dir=str(ckpt_dir), load_ckpt=False)
            _load_mae_weights(model.vision_model, path, arch, trust_checkpoint)
        if device is not None:
            model = model.to(device)
        return cls(model, periodicity, **options)

    # ----- geometry ----------------------------------------------------------------------------------
    def _configure(self, target: Any, length: int, horizon: int) -> None:
        """visionts' ``update_config`` for this call, on the model or on a stand-in."""
        try:
            type(self.model).update_config(
                target, context_len=length, pred_len=horizon, periodicity=self.periodicity, **self.options
            )
        except KeyError as exc:  # its interpolation table
            raise ValueError(
                f"interpolation {self.options.get('interpolation')!r} is not one visionts knows "
                f"(unknown key {exc})"
            ) from None
        except RuntimeError as exc:  # e.g. an align_const that gives the context > 14 columns
            raise ValueError(
                f"visionts cannot lay out a context of {length} samples and horizon={horizon} with "
                f"periodicity={self.periodicity} and {self.options or 'its default options'} "
                f"({_first_line(exc)})"
            ) from None

    def geometry(self, length: int, horizon: int) -> FoldedGrid:
        """FoldedGrid of a call with ``length`` context samples and ``horizon`` (no token order yet).

        Raises a ValueError naming the limit when the context is shorter than one period or the
        image cannot hold the horizon.
        """
        length, horizon = _as_length(length), as_horizon(horizon)
        p = self.periodicity
        if length < p:
            raise ValueError(
                f"the context has {length} samples, shorter than one period (periodicity={p}): "
                f"VisionTS folds whole periods, so it needs at least {p} samples (or a smaller periodicity)"
            )
        cfg = _ConfigProbe(self.model.vision_model)
        self._configure(cfg, length, horizon)
        size, patch = int(cfg.image_size), int(cfg.patch_size)
        n_in = int(cfg.num_patch_input)
        input_resize = getattr(cfg, "input_resize", None) or _safe_resize(
            (size, int(size * cfg.adjust_input_ratio)), cfg.interpolation
        )
        output_resize = getattr(cfg, "output_resize", None) or _safe_resize(
            (p, int(round(size * cfg.scale_x))), cfg.interpolation
        )
        pad_left = int(cfg.pad_left)
        periods_in = (pad_left + length) // p
        periods_out = int(output_resize.size[1])
        room = p * periods_out - pad_left - length
        if horizon > room or n_in >= int(cfg.num_patch):
            raise ValueError(
                f"horizon={horizon} does not fit the image: with a context of {length} samples and "
                f"periodicity={p}, visionts gives the context {n_in} of {cfg.num_patch} patch columns "
                f"and the image ends {max(room, 0)} samples after the context; use a horizon of at "
                f"most {max(room, 0)}, a longer context or a smaller periodicity"
            )
        return FoldedGrid(
            periodicity=p,
            context_length=length,
            horizon=horizon,
            pad_left=pad_left,
            image_size=size,
            patch_size=patch,
            input_cols=n_in,
            periods_in=periods_in,
            periods_out=periods_out,
            input_row_weights=resize_weights(input_resize, p, "rows"),
            input_col_weights=resize_weights(input_resize, periods_in, "cols"),
            output_row_weights=resize_weights(output_resize, size, "rows"),
            output_col_weights=resize_weights(output_resize, size, "cols"),
            pad_sources=padding_sources(length, pad_left, getattr(cfg, "padding_mode", "replicate")),
        )

    def grid(self, length: int, horizon: int) -> TokenGrid:
        """TokenGrid of the decoder layers for a call (see :meth:`FoldedGrid.decoder_grid`)."""
        return self.geometry(length, horizon).decoder_grid()

    def layer_grids(self, length: int, horizon: int) -> Callable[[str], TokenGrid]:
        """Per-layer TokenGrids of a call, for ``capture(grid=...)``: a callable ``layer name ->
        TokenGrid``.  Decoder layers get :meth:`grid`; encoder layers (``*.blocks.N.attn``, not
        ``decoder_blocks``) get :meth:`FoldedGrid.encoder_call_grid` in the token order of the
        running call, which ``predict`` publishes when visionts' ``random_masking`` returns
        (before the first encoder block starts)."""
        plan = self.geometry(length, horizon)
        decoder = plan.decoder_grid()

        def grid_of(layer: str) -> TokenGrid:
            if ".blocks." not in f".{layer}":
                return decoder
            ids = self._ids_restore
            if ids is None:
                raise RuntimeError(
                    f"encoder layer {layer!r} ran outside VisionTSForecaster.predict (or before "
                    f"random_masking): its token order is unknown"
                )
            ids = ids.reshape(ids.shape[0], -1)
            if not bool((ids == ids[:1]).all()):
                raise ValueError("the series of this batch got different encoder token orders; analyse them one at a time")
            return plan.with_ids_restore(ids[0]).encoder_call_grid()

        return grid_of

    # ----- inference ---------------------------------------------------------------------------------
    def predict(self, series: Any, horizon: Any) -> VisionTSForecast:
        """Forecast ``horizon`` steps after ``series`` with visionts' own forward."""
        x = as_series(series)
        h = as_horizon(horizon)
        plan = self.geometry(len(x), h)
        self._configure(self.model, len(x), h)
        vision = self.model.vision_model
        ref = vision.cls_token
        inputs = torch.as_tensor(x, dtype=ref.dtype, device=ref.device)[None, :, None]
        self._ids_restore = None
        try:
            with _observe_masking(vision, self._publish_restore) as restores, torch.no_grad():
                out = self.model(inputs)
        finally:
            self._ids_restore = None
        quantile_heads = None
        if isinstance(out, (list, tuple)):  # VisionTS++: [median, [other quantile heads]]
            out, others = out
            quantile_heads = np.stack([_series_of(q) for q in others])
        if not restores:
            raise RuntimeError("visionts' forward did not run random_masking; cannot know its token order")
        geometry = plan.with_ids_restore(restores[-1][0])
        norm_const = float(getattr(self.model, "norm_const", np.nan))
        return VisionTSForecast(
            forecast=_series_of(out),
            grid=geometry.decoder_grid(),
            geometry=geometry,
            mu=float(x.mean()),
            std=float(np.sqrt(x.var() + 1e-5)),
            norm_const=norm_const,
            quantile_heads=quantile_heads,
        )

    def _publish_restore(self, ids_restore: torch.Tensor) -> None:
        """Called by the observed ``random_masking``: the running call's token order."""
        self._ids_restore = ids_restore

    def __repr__(self) -> str:
        return (
            f"VisionTSForecaster({type(self.model).__name__}, periodicity={self.periodicity}, "
            f"device={self.model.vision_model.cls_token.device})"
        )


# ----- helpers -------------------------------------------------------------------------------------
def untrained_reason(vision_model: nn.Module) -> str | None:
    """Why the MAE looks like a fresh init (every LayerNorm weight 1 and bias 0, every Linear bias
    0, as ``initialize_weights`` leaves them), or None when any of them was trained."""
    norms = linears = 0
    for module in vision_model.modules():
        if isinstance(module, nn.LayerNorm):
            if module.weight is not None and not bool(torch.all(module.weight == 1)):
                return None
            if module.bias is not None and bool(torch.any(module.bias != 0)):
                return None
            norms += 1
        elif isinstance(module, nn.Linear) and module.bias is not None:
            if bool(torch.any(module.bias != 0)):
                return None
            linears += 1
    if not norms and not linears:
        return None
    return f"all {norms} LayerNorms are (1, 0) and all {linears} Linear biases are 0"


@contextlib.contextmanager
def _observe_masking(
    vision_model: nn.Module, publish: Callable[[torch.Tensor], None] | None = None
) -> Iterator[list[torch.Tensor]]:
    """Record ``ids_restore`` of every ``random_masking`` call in the block (and hand it to
    ``publish`` at once); always undone."""
    seen: list[torch.Tensor] = []
    original = vision_model.random_masking
    shadowed = "random_masking" in vision_model.__dict__
    previous = vision_model.__dict__.get("random_masking")

    def observed(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        seen.append(result[2].detach().cpu())
        if publish is not None:
            publish(seen[-1])
        return result

    vision_model.__dict__["random_masking"] = observed
    try:
        yield seen
    finally:
        if shadowed:
            vision_model.__dict__["random_masking"] = previous
        else:
            del vision_model.__dict__["random_masking"]


def _series_of(out: torch.Tensor) -> np.ndarray:
    """(1, H, 1) model output -> (H,) float64."""
    return out[0, :, 0].detach().cpu().double().numpy()


def _safe_resize(size: tuple[int, int], interpolation: Any) -> Any:
    return import_visionts().util.safe_resize(size, interpolation=interpolation)


def _as_periodicity(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(
            f"periodicity must be a positive integer (samples per period; 1 folds nothing), got {value!r}"
        )
    return int(value)


def _as_length(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"length must be a positive integer number of samples, got {value!r}")
    return int(value)


def _download(vt: Any, url: str, path: Path) -> None:
    try:
        vt.util.download_file(url, str(path))
    except Exception as exc:  # requests' errors, a read-only folder, ...
        raise CheckpointError(
            f"could not download {url} to {path} ({type(exc).__name__}: {_first_line(exc)}); "
            f"download it yourself into that folder"
        ) from None


def _load_mae_weights(vision_model: nn.Module, path: Path, arch: str, trust: bool) -> None:
    """Strictly load an MAE checkpoint (``{'model': state_dict}``) into ``vision_model``."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as exc:
        foreign = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if foreign:
            raise CheckpointError(
                f"{path} pickles {foreign.group(1)}, which a weights-only load refuses; only if you "
                f"trust this file, pass trust_checkpoint=True"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        raise CheckpointError(
            f"{path} is not a readable VisionTS checkpoint ({type(exc).__name__}: "
            f"{detail.group(1).strip() if detail else _first_line(exc)}); delete it and let visionts "
            f"download it again"
        ) from None
    state = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path} has no 'model' state dict (got {type(payload).__name__}); it is not an MAE "
            f"checkpoint for visionts"
        )
    try:
        result = vision_model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        raise CheckpointError(
            f"{path} does not fit visionts' {arch}: {_first_line(exc)}; delete it and let visionts "
            f"download it again"
        ) from None
    problems = [
        f"{len(keys)} {kind} keys (e.g. {keys[0]!r})"
        for kind, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys))
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"{path} does not fit visionts' {arch}: {' and '.join(problems)}; delete it and let "
            f"visionts download it again"
        )


def _load_visiontspp(vt: Any, arch: str, ckpt_dir: Path, download: bool) -> nn.Module:
    path = ckpt_dir / "visiontspp_model.ckpt"
    if not path.is_file() and not download:
        raise CheckpointError(
            f"no VisionTS++ checkpoint at {path}; pass download=True to fetch it from Hugging Face "
            f"({vt.model.VISIONTSPP_REPO_ID})"
        )
    try:  # visionts downloads a missing file and raises on a bad one
        return vt.VisionTSpp(arch=arch, ckpt_dir=str(ckpt_dir), load_ckpt=True, quantile=True)
    except Exception as exc:
        raise CheckpointError(
            f"visionts could not load VisionTS++ from {path} ({type(exc).__name__}: {_first_line(exc)})"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
