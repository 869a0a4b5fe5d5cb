"""Memory a ViTime config will ask for, estimated from the config alone, checked before building.

A 300-byte JSON can describe a network of terabytes (``depth`` 100000) or an image of billions of
tokens (``size`` 1e9); building it first and failing later takes the machine down.  So every
loader estimates, from the config's numbers only:

* parameters: the exact count of ``ViTimeMAE``'s parameters (float32), held twice while a
  checkpoint loads (the file's tensors and the model's);
* one forward at the config's geometry, batch 1: the widest block's token activations and its
  attention logits + probabilities (heads x tokens^2, as an exact attention capture keeps them),
  and the float64 series image with its blurred copies;
* one training step (``training_step_parts``): parameters with gradients and two AdamW moments,
  every block's activations kept for the backward pass (attention maps only when attention is
  not fused), the synthetic batch and the loss terms.

The estimates lean high, measured on CPU: a released-size ViTime (modelSize 0.75, 74 M
parameters) peaks at 1.0 GB loading + analysing with exact capture (0.6 GB auto) against 1.3 GB
estimated; ``attnviz train``'s default model peaks at 5.8 GB for batch 512 against 7.9 GB.  The limit is ``attnviz.limits``' (4 GB unless ``max_memory_gb=`` or the
``ATTNVIZ_MAX_MEMORY_GB`` environment variable raises it).
"""
from __future__ import annotations

from dataclasses import dataclass

from ...limits import GB, LIMIT_HINT, format_bytes, memory_limit_gb
from .config import ViTimeConfig

__all__ = [
    "MemoryPart",
    "check_memory",
    "check_model_memory",
    "check_training_memory",
    "format_bytes",
    "forward_parts",
    "memory_limit_gb",
    "model_parts",
    "parameter_count",
    "parameter_parts",
    "training_step_parts",
]

_F32, _F64 = 4, 8
_IMAGE_COPIES = 6  # one-hot, full image, two blur passes, float32 model input, decoded probabilities
_BLOCK_TOKEN_FLOATS = 8  # per token x width in one block: residual, norm, qkv (3), attention out, proj, norm
_TRAIN_TOKEN_FLOATS = 12  # the same kept for backward, plus their gradients' working copies
_TRAIN_ATTENTION_MAPS = 3  # logits, probabilities and their gradient


@dataclass(frozen=True)
class MemoryPart:
    """One term of an estimate: what it is, its bytes, and the config fields that drive it."""

    what: str
    bytes: float
    fields: str


def _block_params(dim: int, mlp_ratio: float) -> int:
    """Parameters of one timm ``Block`` (qkv bias, no layer scale): norms, attention, MLP."""
    hidden = int(dim * mlp_ratio)
    return 2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + 2 * dim + (
        dim * hidden + hidden
    ) + (hidden * dim + dim)


def _tokens(c: ViTimeConfig) -> int:
    return c.rows * c.cols + 1


def parameter_parts(c: ViTimeConfig) -> list[MemoryPart]:
    """float32 bytes of the network's parameter groups, with the fields behind each."""
    e, d = c.enc_embed_dim, c.dec_embed_dim
    ph, pw = c.patch_size
    n = _tokens(c)
    ratio = "" if c.mlp_ratio == 4.0 else f", mlp_ratio={c.mlp_ratio:g}"
    return [
        MemoryPart(
            "encoder parameters",
            _F32 * (c.enc_depth * _block_params(e, c.mlp_ratio) + 2 * e),
            f"embed_dim={e}{_derived(c, 'embed_dim')} with depth={c.enc_depth}"
            f"{_derived(c, 'depth')}{ratio}",
        ),
        MemoryPart(
            "decoder parameters",
            _F32 * (c.dec_depth * _block_params(d, c.mlp_ratio) + 2 * d),
            f"decoder_embed_dim={d} with decoder_depth={c.dec_depth}{ratio}",
        ),
        MemoryPart(
            "position tables",
            _F32 * (n * (e + d) + e + d),  # pos_embed, decoder_pos_embed, cls and mask tokens
            f"{_geometry(c)} with embed_dim={e} and decoder_embed_dim={d}",
        ),
        MemoryPart(
            "patch projections",
            _F32 * ((ph * pw * e + e) + (e * d + d) + (d * ph * pw + ph * pw)),
            f"patch_size={list(c.patch_size)} with embed_dim={e} and decoder_embed_dim={d}",
        ),
    ]


def parameter_count(c: ViTimeConfig) -> int:
    """Exact number of parameters ``ViTimeMAE(c)`` will hold (position tables included)."""
    return int(sum(p.bytes for p in parameter_parts(c))) // _F32


def forward_parts(c: ViTimeConfig, batch: int = 1) -> list[MemoryPart]:
    """Working memory of one inference forward at the config's geometry (bytes)."""
    n = _tokens(c)
    width = max(c.enc_embed_dim, c.dec_embed_dim)
    hidden = int(width * c.mlp_ratio)
    heads = max(c.enc_num_heads, c.dec_num_heads)
    return [
        MemoryPart(
            "attention maps of one forward",
            batch * 2 * heads * n * n * _F32,
            f"num_heads={heads} over {n:,} tokens ({_geometry(c)})",
        ),
        MemoryPart(
            "token activations of one forward",
            batch * n * (_BLOCK_TOKEN_FLOATS * width + 2 * hidden) * _F32,
            f"{n:,} tokens ({_geometry(c)}) x embed_dim={width}",
        ),
        MemoryPart(
            "series image",
            batch * _IMAGE_COPIES * c.h * c.width * _F64,
            f"h={c.h} value bins x {c.width:,} image columns (size={list(c.size)})",
        ),
    ]


def model_parts(c: ViTimeConfig) -> list[MemoryPart]:
    """Loading (parameters twice) plus one forward, in bytes."""
    return [MemoryPart(p.what, 2 * p.bytes, p.fields) for p in parameter_parts(c)] + forward_parts(c)


def training_step_parts(
    c: ViTimeConfig, batch_size: int, fused_attention: bool | None = None
) -> list[MemoryPart]:
    """One optimiser step of ``attnviz train`` at ``batch_size`` (bytes).

    ``fused_attention`` (default: timm's setting): a fused kernel keeps no heads x tokens^2 map
    for the backward pass, the unfused one keeps logits, probabilities and their gradient.
    """
    if fused_attention is None:
        from timm.layers import use_fused_attn

        fused_attention = bool(use_fused_attn())
    maps_kept = 0 if fused_attention else _TRAIN_ATTENTION_MAPS
    n = _tokens(c)
    b = int(batch_size)
    blocks = c.enc_depth + c.dec_depth
    width = max(c.enc_embed_dim, c.dec_embed_dim)
    hidden = int(width * c.mlp_ratio)
    heads = max(c.enc_num_heads, c.dec_num_heads)
    params = parameter_count(c) * _F32 * 4  # weights, gradients, two AdamW moments
    geometry = f"--batch-size {b} x {n:,} tokens x {blocks} blocks"
    return [
        MemoryPart("parameters, gradients and optimiser state", params, "the model's size"),
        MemoryPart(
            "activations kept for the backward pass",
            b * blocks * n * (_TRAIN_TOKEN_FLOATS * width + 3 * hidden) * _F32,
            f"{geometry} x embed_dim={width}",
        ),
        MemoryPart(
            "attention maps kept for the backward pass",
            b * blocks * maps_kept * heads * n * n * _F32,
            f"{geometry} x num_heads={heads}",
        ),
        MemoryPart(
            "synthetic batch, images and loss",
            b * c.width * (8 * _F64 + 6 * c.h * _F32),
            f"--batch-size {b} x h={c.h} x {c.width:,} image columns",
        ),
    ]


def _derived(c: ViTimeConfig, name: str) -> str:
    return f" (from modelSize={c.model_size:g})" if getattr(c, name) is None else ""


def _geometry(c: ViTimeConfig) -> str:
    return f"h={c.h}, size={list(c.size)}, patch_size={list(c.patch_size)}"


def check_memory(
    parts: list[MemoryPart],
    origin: str,
    max_memory_gb: float | None = None,
    task: str = "",
    hint: str = LIMIT_HINT,
) -> float:
    """Raise a one-line ValueError when ``parts`` add up to more than the limit; return the sum.

    The message names the largest part's fields and values, its estimate, the total and how to
    raise the limit (``hint``).
    """
    limit = memory_limit_gb(max_memory_gb)
    total = sum(p.bytes for p in parts)  # an int: exact however absurd the sizes
    if total <= limit * GB:
        return total
    worst = max(parts, key=lambda p: p.bytes)
    doing = f" {task}" if task else ""
    prefix = f"{origin}: " if origin else ""
    raise ValueError(
        f"{prefix}{worst.fields} needs ~{format_bytes(worst.bytes)} of {worst.what} "
        f"(~{format_bytes(total)} in all{doing}; limit {limit:g} GB; raise it with {hint})"
    )


def check_model_memory(
    config: ViTimeConfig, origin: str = "model config", max_memory_gb: float | None = None
) -> float:
    """Refuse a config whose loading plus one forward would pass the limit (before building)."""
    return check_memory(model_parts(config), origin, max_memory_gb, "to load and run once")


def check_training_memory(
    config: ViTimeConfig, batch_size: int, max_memory_gb: float | None = None
) -> float:
    """Refuse a training run whose one step would pass the limit (before anything is built)."""
    return check_memory(
        training_step_parts(config, batch_size),
        "",
        max_memory_gb,
        "for one training step",
        f"--max-memory-gb, {LIMIT_HINT}",
    )
