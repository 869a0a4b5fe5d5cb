"""ViTimeConfig: every upstream argument that changes the network or the series<->image mapping.

Upstream ViTime stores its settings in an ``argparse.Namespace`` (``checkpoint['args']``).  We
keep the same meaning under explicit, typed names and can rebuild the upstream names for
round-trips.  Sizes follow upstream ``modelSize`` (embed 1024*m, depth 12*m, heads 16*m; the
decoder has half the width and half the depth) unless explicit dimensions are given.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

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
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        if len(self.size) != 3:
            raise ValueError(f"size must have 3 entries (history, label, horizon), got {self.size!r}")
        if len(self.patch_size) != 2:
            raise ValueError(f"patch_size must be (bins, columns), got {self.patch_size!r}")
        if self.h < 2:
            raise ValueError(f"h (value bins) must be >= 2, got {self.h!r}")
        if not self.max_scal > 0:
            raise ValueError(f"maxScal must be > 0, got {self.max_scal!r}")
        ph, pw = self.patch_size
        if self.h % ph:
            raise ValueError(f"h={self.h} is not divisible by the patch height {ph}")
        if self.width % pw:
            raise ValueError(f"image width {self.width} is not divisible by the patch width {pw}")
        if self.model_size is None and None in (self.embed_dim, self.depth, self.num_heads):
            raise ValueError("give either modelSize or embed_dim, depth and num_heads")
        if self.enc_embed_dim % self.enc_num_heads:
            raise ValueError(
                f"embed dim {self.enc_embed_dim} is not divisible by {self.enc_num_heads} heads"
            )
        if self.dec_embed_dim % self.dec_num_heads:
            raise ValueError(
                f"decoder dim {self.dec_embed_dim} is not divisible by {self.dec_num_heads} heads"
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
