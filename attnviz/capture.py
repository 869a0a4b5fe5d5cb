"""Capture what timm ``Attention`` layers attend to, reduced on the fly to bounded memory.

A full attention map of the released ViTime is 12 x 2465 x 2465 floats (~290 MB) per block, so
keeping all 13 blocks costs gigabytes, and switching the fused kernel off costs ~2x time.  This
module therefore reduces every map inside the hook to what the caller asked for (time maps,
head-fused token maps; see :mod:`attnviz.reducers`) and drops it.  Two ways of getting the
probabilities sit behind one interface:

``exact``
    ``fused_attn`` is switched off for that call only and the probabilities are read where
    timm's unfused path forms them: the input of ``attn.attn_drop`` (the softmax, before
    dropout).  The output changes only by float rounding (unfused vs fused kernel).
``chunked``
    The model keeps its fused kernel, so its output is bitwise unchanged.  A forward hook on
    ``attn.qkv`` reads the q and k the forward computes anyway and recomputes
    ``softmax(q_norm(q) * scale @ k_norm(k)^T + mask)`` one head and one block of query rows at
    a time; each block is reduced and overwritten, so the extra memory is a few MiB per thread at
    any sequence length and batch.  Blocks are sized to stay in cache (``chunk_bytes``) and, on
    the CPU, spread over ``torch.get_num_threads()`` worker threads that each run
    single-threaded kernels: thousands of small ops then cost no OpenMP hand-offs, which on a
    busy CPU cost milliseconds each.  Used only where it is provably faithful (the module runs
    timm's own ``Attention.forward`` with the default scale); elsewhere the layer falls back to
    ``exact`` with a :class:`CaptureFallbackWarning`.
``auto`` (default)
    ``chunked`` when the full map of a call would exceed :data:`AUTO_CHUNK_THRESHOLD_BYTES`
    (``B * H * S * S * 4`` bytes) and the module uses the fused kernel, else ``exact`` (small
    maps are cheap, and a model that already runs unfused materialises the map anyway).

Every hook is removed and every ``fused_attn`` flag restored when the ``with`` block ends, also
when it raises.
"""
from __future__ import annotations

import fnmatch
import functools
import math
import threading
import warnings
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from timm.layers import Attention
from torch import nn

from .grid import TokenGrid
from .reducers import (
    HEAD_FUSIONS,
    TIME_CONVENTIONS,
    BlockReducer,
    ReductionSpec,
    check_grid_fits,
    reduce_full,
)

__all__ = [
    "AttentionRollout",
    "AttentionCapture",
    "CaptureFallbackWarning",
    "STRATEGIES",
    "AUTO_CHUNK_THRESHOLD_BYTES",
    "DEFAULT_CHUNK_BYTES",
]

STRATEGIES: tuple[str, ...] = ("auto", "exact", "chunked")
#: ``auto`` picks ``chunked`` when one call's full map (B*H*S*S float32) is larger than this:
#: below it the unfused kernel is as fast (measured on CPU at 1.6 MiB exact wins, at 12 MiB chunked
#: does) and its map is small; above it exact costs time (~2x at released ViTime size) and memory.
AUTO_CHUNK_THRESHOLD_BYTES: int = 8 * 2**20
#: Bytes of one head's block of logits in ``chunked`` (the probabilities take as much again, per
#: worker thread).  Small enough that the block is reduced while still in cache, large enough for
#: an efficient q @ k^T (2 MiB, ~210 query rows of released ViTime, measured fastest on CPU).
#: Blocks have at least :data:`MIN_BLOCK_ROWS` query rows so that very long sequences keep BLAS busy.
DEFAULT_CHUNK_BYTES: int = 2 * 2**20
MIN_BLOCK_ROWS: int = 8


class CaptureFallbackWarning(UserWarning):
    """A layer asked to be captured ``chunked`` is captured ``exact`` instead (see message)."""


@dataclass
class AttentionCapture:
    """What one ``with rollout.capture(...)`` block saw; filled when the block ends.

    Every tensor is float32 on the CPU, with the batches of several forward calls concatenated
    along the first axis.  Layers whose module never ran are absent from the dicts.
    """

    layer_names: list[str]
    grid: TokenGrid | None = None
    keep_full: bool = False
    head_fusion: str | None = None
    time_convention: str = "sum"
    #: {layer: (B, H, S, S)} probabilities, only with ``keep_full=True``.
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    #: {layer: (B, H, C, C)} query column x key column, only with a grid.
    time_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    #: {layer: (B, H, C)} mass each query column puts on the prefix tokens, only with a grid.
    prefix_mass: dict[str, torch.Tensor] = field(default_factory=dict)
    #: {layer: (B, S, S)} heads fused with ``head_fusion``, only when it is given.
    token_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    #: {layer: "exact" | "chunked"} what the last call of that layer used.
    strategies: dict[str, str] = field(default_factory=dict)
    #: {layer: forward calls seen}.
    calls: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:  # the default would print every tensor
        shapes = {
            name: {layer: tuple(t.shape) for layer, t in getattr(self, name).items()}
            for name in ("maps", "time_maps", "prefix_mass", "token_maps")
            if getattr(self, name)
        }
        return (
            f"AttentionCapture({len(self.layer_names)} layers, calls={self.calls}, "
            f"strategies={self.strategies}, shapes={shapes})"
        )


@dataclass
class _Call:
    """State of one in-flight forward call of one attention module."""

    batch: int
    seq_len: int
    strategy: str
    attn_mask: torch.Tensor | None
    is_causal: bool
    handled: bool = False


@dataclass
class _Probe:
    """Per-layer bookkeeping of one capture session."""

    name: str
    module: Attention
    chunk_blocker: str | None
    original_fused: bool
    calls: int = 0
    seen: int = 0
    current: _Call | None = None
    results: list[dict[str, torch.Tensor]] = field(default_factory=list)
    last_strategy: str | None = None
    warned: bool = False


class AttentionRollout:
    """Finds the timm ``Attention`` layers of a model and captures their attention.

    ``model`` is any ``nn.Module`` (a timm ViT, ``ViTimeMAE``) or an object with a ``.model``
    module (a :class:`~attnviz.forecasters.vitime.ViTimeForecaster`).  ``layers`` selects module
    paths with fnmatch pattern(s) such as ``"blocks.*.attn"``; ``None`` takes all of them.
    Layers are found by ``isinstance(module, timm.layers.Attention)``, subclasses included.

    This is the capture base of the rollout: head-fused ``token_maps`` from :meth:`capture` feed
    the cross-layer rollout in :mod:`attnviz.rollout`.
    """

    def __init__(self, model: Any, layers: str | Sequence[str] | None = None) -> None:
        self.model: nn.Module = _as_module(model)
        self.patterns: tuple[str, ...] | None = _as_patterns(layers)
        self._modules: dict[str, Attention] = _find_attention(self.model, self.patterns)
        self._active = False

    @property
    def layer_names(self) -> list[str]:
        """Module paths of the captured layers, in model order."""
        return list(self._modules)

    @property
    def num_heads(self) -> dict[str, int]:
        return {name: int(m.num_heads) for name, m in self._modules.items()}

    @property
    def modules(self) -> dict[str, Attention]:
        return dict(self._modules)

    def capture(
        self,
        keep_full: bool = False,
        grid: TokenGrid | None = None,
        head_fusion: str | None = None,
        strategy: str = "auto",
        chunk_size: int | None = None,
        time_convention: str = "sum",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> "_CaptureSession":
        """Context manager yielding an :class:`AttentionCapture`, filled when the block ends.

        keep_full: also keep every (B, H, S, S) map (memory grows with S^2; off by default).
        grid: reduce each map to time maps and prefix mass over this token grid.
        head_fusion: "mean", "max" or "min" over heads -> ``token_maps`` (B, S, S).
        strategy: "auto", "exact" or "chunked" (see the module docstring).
        chunk_size: query rows per recomputed block in ``chunked`` (one head at a time);
            default: as many as fit ``chunk_bytes``.
        time_convention: "sum" (rows of T sum to 1 - prefix mass) or "mean" (T / rows).
        chunk_bytes: byte budget of one block of logits in ``chunked``.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if head_fusion is not None and head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS} or None, got {head_fusion!r}")
        if time_convention not in TIME_CONVENTIONS:
            raise ValueError(f"time_convention must be one of {TIME_CONVENTIONS}, got {time_convention!r}")
        if chunk_size is not None and not _is_positive_int(chunk_size):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        if not _is_positive_int(chunk_bytes):
            raise ValueError(f"chunk_bytes must be a positive int, got {chunk_bytes!r}")
        spec = ReductionSpec(
            keep_full=bool(keep_full), grid=grid, head_fusion=head_fusion, time_convention=time_convention
        )
        return _CaptureSession(self, spec, strategy, chunk_size, chunk_bytes)

    def __repr__(self) -> str:
        return f"AttentionRollout({type(self.model).__name__}, {len(self._modules)} layers)"


class _CaptureSession:
    """The hooks of one ``with`` block; owns nothing after ``__exit__``."""

    def __init__(
        self,
        rollout: AttentionRollout,
        spec: ReductionSpec,
        strategy: str,
        chunk_size: int | None,
        chunk_bytes: int,
    ) -> None:
        self.rollout = rollout
        self.spec = spec
        self.strategy = strategy
        self.chunk_size = chunk_size
        self.chunk_bytes = chunk_bytes
        self.result = AttentionCapture(
            layer_names=rollout.layer_names,
            grid=spec.grid,
            keep_full=spec.keep_full,
            head_fusion=spec.head_fusion,
            time_convention=spec.time_convention,
        )
        self._probes: list[_Probe] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._model_calls = 0
        self._runner = _BlockRunner(torch.get_num_threads())

    # ----- context manager ---------------------------------------------------------------------
    def __enter__(self) -> AttentionCapture:
        if self.rollout._active:
            raise RuntimeError(
                "this AttentionRollout is already capturing; nested captures are not supported"
            )
        self.rollout._active = True
        try:
            self._handles.append(self.rollout.model.register_forward_pre_hook(self._count_model_call))
            for name, module in self.rollout._modules.items():
                probe = _Probe(
                    name=name,
                    module=module,
                    chunk_blocker=_chunk_blocker(module),
                    original_fused=bool(getattr(module, "fused_attn", False)),
                )
                self._probes.append(probe)
                bind = functools.partial
                self._handles += [
                    module.register_forward_pre_hook(bind(self._on_attention_start, probe), with_kwargs=True),
                    module.register_forward_hook(bind(self._on_attention_end, probe), always_call=True),
                    module.qkv.register_forward_hook(bind(self._on_qkv, probe)),
                    module.attn_drop.register_forward_pre_hook(bind(self._on_softmax, probe)),
                ]
        except BaseException:
            self._cleanup()
            raise
        return self.result

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._cleanup()
        if exc_type is not None:
            return None  # never mask the caller's exception with ours
        self._finalize()
        missed = [p for p in self._probes if p.calls > p.seen or (self._model_calls and not p.calls)]
        if missed:
            detail = ", ".join(f"{p.name} (ran {p.calls}x, probabilities seen {p.seen}x)" for p in missed)
            raise RuntimeError(
                f"attention probabilities were not captured for layers: {detail}. Their forward "
                "bypasses the path the hooks read (timm Attention's unfused softmax through "
                "`attn_drop`, or `qkv` for the chunked strategy) - e.g. an Attention subclass "
                "that calls scaled_dot_product_attention directly, or a block that skips `attn`."
            )
        return None

    def _cleanup(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for probe in self._probes:
            if hasattr(probe.module, "fused_attn"):
                probe.module.fused_attn = probe.original_fused
            probe.current = None
        self._runner.close()
        self.rollout._active = False

    def _finalize(self) -> None:
        res = self.result
        for probe in self._probes:
            if not probe.calls:
                continue
            res.calls[probe.name] = probe.calls
            if probe.last_strategy is not None:
                res.strategies[probe.name] = probe.last_strategy
            for key, target in (
                ("full", res.maps),
                ("time", res.time_maps),
                ("prefix", res.prefix_mass),
                ("tokens", res.token_maps),
            ):
                parts = [r[key] for r in probe.results if key in r]
                if parts:
                    target[probe.name] = _concat_batches(parts, probe.name)
            probe.results.clear()

    # ----- hooks -------------------------------------------------------------------------------
    def _count_model_call(self, module: nn.Module, args: Any) -> None:
        self._model_calls += 1

    def _on_attention_start(self, probe: _Probe, module: Attention, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs.get("x")
        attn_mask = args[1] if len(args) > 1 else kwargs.get("attn_mask")
        is_causal = args[2] if len(args) > 2 else kwargs.get("is_causal", False)
        batch, seq_len = int(x.shape[0]), int(x.shape[1])
        if self.spec.grid is not None:
            check_grid_fits(self.spec.grid, seq_len, f"layer {probe.name!r}")
        strategy = self._pick_strategy(probe, batch, seq_len)
        probe.calls += 1
        probe.last_strategy = strategy
        probe.current = _Call(batch, seq_len, strategy, attn_mask, bool(is_causal))
        if hasattr(module, "fused_attn"):
            module.fused_attn = probe.original_fused if strategy == "chunked" else False

    def _on_attention_end(self, probe: _Probe, module: Attention, args: tuple, output: Any) -> None:
        call, probe.current = probe.current, None
        if call is not None and call.handled:
            probe.seen += 1
        if hasattr(module, "fused_attn"):
            module.fused_attn = probe.original_fused

    def _on_qkv(self, probe: _Probe, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        call = probe.current
        if call is None or call.handled or call.strategy != "chunked":
            return
        call.handled = True
        if self.spec.wants_anything:
            with torch.no_grad():
                probe.results.append(self._reduce_chunked(probe.module, call, output))

    def _on_softmax(self, probe: _Probe, module: nn.Module, args: tuple) -> None:
        call = probe.current
        if call is None or call.handled or call.strategy != "exact":
            return
        call.handled = True
        if not self.spec.wants_anything:
            return
        # An in-place dropout (training) would overwrite the map after this hook: copy it then.
        borrowed = not (module.training and getattr(module, "inplace", False))
        with torch.no_grad():
            probe.results.append(reduce_full(self.spec, args[0], borrowed=borrowed))

    # ----- strategies --------------------------------------------------------------------------
    def _pick_strategy(self, probe: _Probe, batch: int, seq_len: int) -> str:
        wanted = self.strategy
        if wanted == "auto":
            if not self.spec.wants_anything:  # only counting calls: keep the model untouched
                return "chunked" if probe.chunk_blocker is None else "exact"
            full_bytes = batch * int(probe.module.num_heads) * seq_len * seq_len * 4
            big = full_bytes > AUTO_CHUNK_THRESHOLD_BYTES
            wanted = "chunked" if big and probe.original_fused else "exact"
        if wanted == "chunked" and probe.chunk_blocker is not None:
            if not probe.warned:
                warnings.warn(
                    f"layer {probe.name!r}: chunked capture cannot be faithful "
                    f"({probe.chunk_blocker}); capturing it exact (fused attention off) instead",
                    CaptureFallbackWarning,
                    stacklevel=2,
                )
                probe.warned = True
            wanted = "exact"
        return wanted

    def _reduce_chunked(
        self, module: Attention, call: _Call, qkv_out: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Recompute this call's probabilities block by block from the forward's own qkv."""
        b, n = call.batch, call.seq_len
        heads, head_dim = int(module.num_heads), int(module.head_dim)
        qkv = qkv_out.detach().reshape(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        # Same ops as timm's unfused path: q_norm, k_norm, then q * scale (done per block below).
        # Views where possible: on a busy CPU every extra multi-threaded op costs milliseconds.
        q, k = _maybe(module.q_norm, qkv[0]), _maybe(module.k_norm, qkv[1])
        q, k = q.float(), k.float()
        scale = module.scale
        reducer = BlockReducer(self.spec, b, heads, n, q.device)
        rows = self._block_rows(b, n)
        runner = self._runner

        def reduce_block(item: tuple[int, int]) -> None:
            bi, q0 = item
            m = min(rows, n - q0)
            with torch.no_grad():  # grad mode is per thread
                logits_buf, probs_buf, q_buf = runner.scratch(rows * n, rows * head_dim, q.device)
                logits, probs = logits_buf[: m * n].view(m, n), probs_buf[: m * n].view(m, n)
                q_block = q_buf[: m * head_dim].view(m, head_dim)
                causal = _causal_bias(q0, m, n, q.device) if call.is_causal else None
                for h in range(heads):
                    torch.mul(q[bi, h, q0 : q0 + m], scale, out=q_block)
                    torch.mm(q_block, k[bi, h].t(), out=logits)
                    bias = causal if call.is_causal else _mask_block(call.attn_mask, bi, h, q0, m)
                    if bias is not None:
                        logits.add_(bias)
                    torch.softmax(logits, dim=-1, out=probs)
                    reducer.add(bi, h, q0, probs)

        runner.map(reduce_block, [(bi, q0) for bi in range(b) for q0 in range(0, n, rows)], q.device)
        return reducer.finish()

    def _block_rows(self, batch: int, seq_len: int) -> int:
        """Query rows per block: the byte budget, but enough blocks to keep every worker busy."""
        if self.chunk_size is not None:
            return min(self.chunk_size, seq_len)
        rows = max(MIN_BLOCK_ROWS, self.chunk_bytes // (seq_len * 4))
        per_batch = -(-self._runner.workers // batch)  # blocks each batch element should give
        return max(1, min(rows, seq_len, -(-seq_len // per_batch)))


class _BlockRunner:
    """Runs block tasks on worker threads that use single-threaded torch kernels (CPU only).

    The tasks are many small ops; with torch's intra-op OpenMP each would hand work to the other
    cores and wait for them, which on a loaded machine costs a scheduler slice per op.  Worker
    threads instead take whole blocks each (torch releases the GIL inside ops).  Elsewhere (CUDA)
    or with one thread the tasks run inline.  Scratch buffers are per thread and reused.
    """

    def __init__(self, workers: int) -> None:
        self.workers = max(1, int(workers))
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()

    def scratch(self, block: int, q_block: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """This thread's (logits, probabilities, scaled q) buffers, grown when too small."""
        bufs = getattr(self._local, "bufs", None)
        if bufs is None or bufs[0].numel() < block or bufs[2].numel() < q_block or bufs[0].device != device:
            f32 = dict(dtype=torch.float32, device=device)
            bufs = (torch.empty(block, **f32), torch.empty(block, **f32), torch.empty(q_block, **f32))
            self._local.bufs = bufs
        return bufs

    def map(self, fn: Callable[[Any], None], items: list, device: torch.device) -> None:
        if device.type != "cpu" or self.workers == 1 or len(items) == 1:
            for item in items:
                fn(item)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.workers,
                thread_name_prefix="attnviz-capture",
                initializer=torch.set_num_threads,
                initargs=(1,),
            )
        threads = torch.get_num_threads()
        try:
            done, _ = wait([self._pool.submit(fn, item) for item in items], return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # re-raise a worker's exception here
        finally:
            torch.set_num_threads(threads)  # a worker's set_num_threads(1) also sets the default

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._local = threading.local()


# ----- helpers -----------------------------------------------------------------------------------
def _as_module(model: Any) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module):
        return inner
    raise TypeError(
        f"AttentionRollout needs a torch nn.Module or an object with a .model module "
        f"(e.g. a ViTimeForecaster), got {type(model).__name__}"
    )


def _as_patterns(layers: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if layers is None:
        return None
    patterns = (layers,) if isinstance(layers, str) else tuple(layers)
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"layers must be None, a pattern string or a list of them, got {layers!r}")
    return patterns


def _find_attention(model: nn.Module, patterns: tuple[str, ...] | None) -> dict[str, Attention]:
    """Module path -> timm Attention (subclasses included), in model order, filtered by pattern."""
    found = {name: m for name, m in model.named_modules() if isinstance(m, Attention)}
    if not found:
        kinds = sorted({type(m).__name__ for m in model.modules()})
        attn_like = [n for n, _ in model.named_modules() if "attn" in n.rsplit(".", 1)[-1].lower()][:10]
        raise ValueError(
            f"{type(model).__name__} has no timm Attention modules (timm.layers.Attention or "
            f"subclasses); module types present: {kinds}"
            + (f"; modules named like attention: {attn_like}" if attn_like else "")
        )
    if patterns is None:
        return found
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in found)]
    if unmatched:
        raise ValueError(
            f"layers pattern(s) {unmatched} match none of the timm Attention layers of "
            f"{type(model).__name__}: {_abbreviate(found)}"
        )
    return {n: m for n, m in found.items() if any(fnmatch.fnmatchcase(n, p) for p in patterns)}


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _abbreviate(names: Iterable[str], limit: int = 20) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)} layers)"


def _chunk_blocker(module: Attention) -> str | None:
    """Why recomputing this module's probabilities from its qkv output could differ, or None."""
    if type(module).forward is not Attention.forward:
        return f"{type(module).__name__} overrides timm Attention.forward, so q/k handling is unknown"
    if not isinstance(getattr(module, "qkv", None), nn.Linear):
        return "its qkv projection is not an nn.Linear"
    if not math.isclose(float(module.scale), int(module.head_dim) ** -0.5, rel_tol=1e-6):
        return (
            f"its scale {float(module.scale)!r} differs from head_dim ** -0.5, which timm's fused "
            "kernel uses instead"
        )
    for norm_name in ("q_norm", "k_norm"):
        norm = getattr(module, norm_name)
        if any(True for _ in norm.buffers()):
            return f"its {norm_name} ({type(norm).__name__}) keeps running statistics"
    return None


def _maybe(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``, skipping the call for ``nn.Identity`` (keeps ``x`` a view)."""
    return x if isinstance(norm, nn.Identity) else norm(x)


def _causal_bias(q0: int, rows: int, n: int, device: torch.device) -> torch.Tensor:
    """-inf above the diagonal for query rows ``q0 .. q0 + rows`` (timm/SDPA ``is_causal``)."""
    q_idx = torch.arange(q0, q0 + rows, device=device)[:, None]
    k_idx = torch.arange(n, device=device)[None, :]
    return torch.zeros(rows, n, device=device).masked_fill_(k_idx > q_idx, float("-inf"))


def _mask_block(mask: torch.Tensor | None, b: int, h: int, q0: int, rows: int) -> torch.Tensor | None:
    """Additive bias of batch ``b``, head ``h``, query rows ``q0 .. q0 + rows`` of an SDPA-style
    mask (bool: True = attend; float: added), broadcastable to (rows, S)."""
    if mask is None:
        return None
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    mask = mask[b if mask.shape[0] > 1 else 0, h if mask.shape[1] > 1 else 0]
    if mask.shape[0] > 1:
        mask = mask[q0 : q0 + rows]
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, float("-inf"))
    return mask.float()


def _concat_batches(parts: list[torch.Tensor], layer: str) -> torch.Tensor:
    if len(parts) == 1:
        return parts[0]
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1:
        raise ValueError(
            f"layer {layer!r} saw calls of different shapes {sorted(shapes)}; capture them in "
            "separate with-blocks"
        )
    return torch.cat(parts, dim=0)
