"""ViTimeConfig: every upstream argument that changes the network or the series<->image mapping.

Upstream ViTime stores its settings in an ``argparse.Namespace`` (``checkpoint['args']``).  We
keep the same meaning under explicit, typed names and can rebuild the upstream names for
round-trips.  Sizes follow upstream ``modelSize`` (embed 1024*m, depth 12*m, heads 16*m; the
decoder has half the width and half the depth) unless explicit dimensions are given.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import numpy as np

# Upstream argument name -> our field name, for the args that matter at inference or training.
_UPSTREAM_NAMES = {
    "h": "h",
    "maxScal": "max_scal",
    "size": "size",
    "patch_size": "patch_size",
    "modelSize": "model_size",
    "ROPE": "rope",
    "dNorm": "d_norm",
    "expandData": "expand_data",
    "upscal": "upscal",
    "muNorm": "mu_norm",
}


@dataclass(frozen=True)
class ViTimeConfig:
    """Geometry, value mapping and network sizes of one ViTime model.

    h: value bins (image height).  max_scal: normalised values are clipped to [-max_scal, max_scal].
    size: (history width, label length, horizon width) in image columns; the image is
    (size[0] + size[2]) * expand_data columns wide.  patch_size: (value bins, columns) per token.
    """

    h: int = 128
    max_scal: float = 3.5
    size: tuple[int, int, int] = (1024, 0, 1440)
    patch_size: tuple[int, int] = (4, 32)
    model_size: float | None = 0.75
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    decoder_embed_dim: int | None = None
    decoder_depth: int | None = None
    decoder_num_heads: int | None = None
    mlp_ratio: float = 4.0
    rope: bool = False
    d_norm: float = 1.0
    expand_data: int = 1
    upscal: bool = False
    mu_norm: float | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # Field by field first (types, signs), so that nothing below divides by 0 or builds a
        # negative size; ``budget.check_model_memory`` then bounds what the sizes would allocate.
        set_ = object.__setattr__
        set_(self, "h", _integer("h", self.h, 2))
        set_(self, "max_scal", _real("maxScal", self.max_scal, positive=True))
        size = _sequence("size", self.size, 3, "(history, label, horizon) widths")
        set_(self, "size", (_integer("size[0]", size[0], 1), _integer("size[1]", size[1], 0),
                            _integer("size[2]", size[2], 0)))
        patch = _sequence("patch_size", self.patch_size, 2, "(value bins, columns)")
        set_(self, "patch_size", (_integer("patch_size[0]", patch[0], 1),
                                  _integer("patch_size[1]", patch[1], 1)))
        if self.model_size is not None:
            set_(self, "model_size", _real("modelSize", self.model_size, positive=True))
        for name, least in (("embed_dim", 1), ("depth", 1), ("num_heads", 1), ("decoder_embed_dim", 1),
                            ("decoder_depth", 0), ("decoder_num_heads", 1)):
            if getattr(self, name) is not None:
                set_(self, name, _integer(name, getattr(self, name), least))
        set_(self, "mlp_ratio", _real("mlp_ratio", self.mlp_ratio, positive=True))
        set_(self, "d_norm", _real("dNorm", self.d_norm, positive=True))
        set_(self, "expand_data", _integer("expandData", self.expand_data, 1))
        if self.mu_norm is not None:
            set_(self, "mu_norm", _real("muNorm", self.mu_norm))
        if self.model_size is None and None in (self.embed_dim, self.depth, self.num_heads):
            raise ValueError("give either modelSize or embed_dim, depth and num_heads")
        # Sizes derived from modelSize (upstream truncates) must be usable too.
        for name, field_name, least in (
            ("enc_embed_dim", "embed_dim", 4), ("enc_depth", "depth", 1), ("enc_num_heads", "num_heads", 1),
            ("dec_embed_dim", "decoder_embed_dim", 4), ("dec_depth", "decoder_depth", 0),
            ("dec_num_heads", "decoder_num_heads", 1),
        ):
            value = getattr(self, name)
            if value < least:
                raise ValueError(
                    f"{field_name}={value} (from modelSize={self.model_size!r}) must be >= {least}"
                )
        if int(self.enc_embed_dim * self.mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio={self.mlp_ratio!r} leaves the MLP no hidden units")
        ph, pw = self.patch_size
        if self.h % ph:
            raise ValueError(f"h={self.h} is not divisible by the patch height patch_size[0]={ph}")
        if self.width % pw:
            raise ValueError(
                f"image width {self.width} ((size[0] + size[2]) x expandData) is not divisible by "
                f"the patch width patch_size[1]={pw}"
            )
        if self.enc_embed_dim % self.enc_num_heads:
            raise ValueError(
                f"embed_dim={self.enc_embed_dim} is not divisible by num_heads={self.enc_num_heads}"
            )
        if self.dec_embed_dim % self.dec_num_heads:
            raise ValueError(
                f"decoder_embed_dim={self.dec_embed_dim} is not divisible by "
                f"decoder_num_heads={self.dec_num_heads}"
            )
        for name in ("enc_embed_dim", "dec_embed_dim"):
            if getattr(self, name) % 4:
                raise ValueError(f"{name}={getattr(self, name)} must be divisible by 4 (2-D sin-cos)")

    # ----- derived geometry -------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Image width in columns: (history + horizon) * expandData, as upstream builds it."""
        return (self.size[0] + self.size[2]) * self.expand_data

    @property
    def rows(self) -> int:
        return self.h // self.patch_size[0]

    @property
    def cols(self) -> int:
        return self.width // self.patch_size[1]

    @property
    def resolution(self) -> float:
        """Value step of one bin in normalised units."""
        return 2.0 * self.max_scal / (self.h - 1)

    # ----- derived sizes (upstream int() truncation kept on purpose) ---------------------------
    @property
    def enc_embed_dim(self) -> int:
        return self.embed_dim if self.embed_dim is not None else int(1024 * self.model_size)

    @property
    def enc_depth(self) -> int:
        return self.depth if self.depth is not None else int(12 * self.model_size)

    @property
    def enc_num_heads(self) -> int:
        return self.num_heads if self.num_heads is not None else int(16 * self.model_size)

    @property
    def dec_embed_dim(self) -> int:
        if self.decoder_embed_dim is not None:
            return self.decoder_embed_dim
        return int(self.enc_embed_dim / 2)

    @property
    def dec_depth(self) -> int:
        return self.decoder_depth if self.decoder_depth is not None else int(self.enc_depth / 2)

    @property
    def dec_num_heads(self) -> int:
        return self.decoder_num_heads if self.decoder_num_heads is not None else self.enc_num_heads

    # ----- conversions ---------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, args: Mapping[str, Any] | Any) -> "ViTimeConfig":
        """Build from upstream-style args (Namespace or dict) or from our own field names."""
        raw = dict(vars(args)) if not isinstance(args, Mapping) else dict(args)
        ours = {f.name for f in fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in raw.items():
            name = _UPSTREAM_NAMES.get(key, key)
            if name in ours:
                kwargs[name] = value
            else:
                extra[key] = value
        if "size" not in kwargs:
            raise ValueError("config needs 'size' (history, label, horizon widths)")
        if "rope" in kwargs:
            kwargs["rope"] = bool(kwargs["rope"])
        if "upscal" in kwargs:
            kwargs["upscal"] = bool(kwargs["upscal"])
        if kwargs.get("mu_norm") is not None and isinstance(kwargs["mu_norm"], bool):
            kwargs["mu_norm"] = float(kwargs["mu_norm"])
        kwargs["extra"] = _jsonable(extra)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Our field names, JSON-friendly (used by the native format)."""
        data = asdict(self)
        data["size"] = list(self.size)
        data["patch_size"] = list(self.patch_size)
        return data

    def to_upstream_args(self) -> dict[str, Any]:
        """Upstream argument names for the fields upstream knows."""
        back = {ours: theirs for theirs, ours in _UPSTREAM_NAMES.items()}
        data = {back[k]: v for k, v in self.to_dict().items() if k in back and v is not None}
        data["size"] = list(self.size)
        data["patch_size"] = list(self.patch_size)
        return data

    def describe(self) -> str:
        return (
            f"ViTime h={self.h} patch={self.patch_size} width={self.width} "
            f"({self.rows}x{self.cols} tokens + CLS), encoder {self.enc_embed_dim}d x "
            f"{self.enc_depth} blocks x {self.enc_num_heads} heads, decoder {self.dec_embed_dim}d x "
            f"{self.dec_depth} x {self.dec_num_heads}{', ROPE pos-embed' if self.rope else ''}"
        )


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """Keep the plain values of unknown upstream args (for provenance); drop the rest."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, (bool, int, str)) or value is None:
            out[key] = value
        elif isinstance(value, float) and math.isfinite(value):
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(
            isinstance(v, (bool, int, float, str)) for v in value
        ):
            out[key] = list(value)
    return out


def _integer(name: str, value: Any, least: int) -> int:
    """``value`` as an int >= ``least``; whole floats (1024.0, 1e9) pass, bools and text do not."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if not isinstance(value, numbers.Integral) and not (
        math.isfinite(value) and float(value).is_integer()
    ):
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def _real(name: str, value: Any, positive: bool = False) -> float:
    """``value`` as a finite float (> 0 when ``positive``); bools and text are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _sequence(name: str, value: Any, length: int, meaning: str) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != length:
        raise ValueError(f"{name} must be {length} integers {meaning}, got {value!r}")
    return tuple(value)
