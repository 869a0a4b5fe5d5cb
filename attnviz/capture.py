"""Capture what timm ``Attention`` layers attend to, reduced on the fly to bounded memory.

A full attention map of the released ViTime is 12 x 2465 x 2465 floats (~290 MB) per block, so
keeping all 13 blocks costs gigabytes, and switching the fused kernel off costs ~2x time.  This
module therefore reduces every map as it is formed to what the caller asked for (time maps,
head-fused token maps; see :mod:`attnviz.reducers`) and drops it.  Three ways of getting the
probabilities sit behind one interface (the arithmetic is in :mod:`attnviz.capture_strategies`):

``single`` (single pass)
    For the call, the module's forward is replaced by timm's ``Attention.forward`` computed one
    block of query rows at a time: each block's ``softmax(q k^T * scale + mask)`` is formed once,
    reduced, and multiplied by ``v`` into the layer's output, which then goes through the module's
    own ``norm``/``proj``/``proj_drop``.  Attention is computed once, as in a plain forward, and
    nothing of size S x S is kept.  The output equals the fused kernel's up to float rounding:
    per layer within ``atol=1e-5, rtol=1e-5`` (tested; measured at released ViTime size: 1.2e-6
    absolute, 6e-7 of the layer's largest output, value-bin probabilities within 1e-7, forecasts
    identical, time maps within 4e-9 of a float64 softmax).  Used only where that is provably
    faithful: the module runs timm's own ``Attention.forward`` (not overridden or patched, no
    unknown submodules, default scale, no q/k norm with running statistics), the installed timm's
    forward equals ours on a self-check, and per call no attention dropout is active, autograd is
    not recording and ``torch.autocast`` is off (the fused kernel would compute in its lower
    precision).  Elsewhere ``chunked`` (or ``exact``).
``chunked``
    The model keeps its fused kernel, so its output is bitwise unchanged.  A forward hook on
    ``attn.qkv`` reads the q and k the forward computes anyway and recomputes the probabilities
    block by block: the second ``q k^T`` is the price (~1.35x a plain forward at released
    ViTime size).  Used where ``single`` is not faithful but the recompute is: timm's own
    ``Attention.forward`` with the default scale.
``exact``
    ``fused_attn`` is switched off for that call only and the probabilities are read where
    timm's unfused path forms them: the input of ``attn.attn_drop`` (the softmax, before
    dropout).  Works for any forward that reaches ``attn_drop``; the output changes only by float
    rounding (unfused vs fused kernel); the whole (B, H, S, S) map exists for the call.
``auto`` (default), by the size of one series' map ``H * S * S * 4`` bytes (blocks cost per
series and head, so a batch of small maps stays cheapest whole) and of the call's, ``B`` times that:
    * nothing to compute (only counting calls): the model runs untouched;
    * above :data:`AUTO_SINGLE_THRESHOLD_BYTES` (8 MiB) per series, or above
      :data:`AUTO_EXACT_MAX_BYTES` (256 MiB) per call, where ``single`` is faithful: ``single``;
    * else above the same sizes where the module uses the fused kernel: ``chunked`` (a model that
      runs unfused materialises the map anyway);
    * else ``exact``: small maps are cheap and the unfused kernel is as fast or faster there.
      A large map captured ``exact`` because neither blockwise strategy is faithful comes with a
      :class:`CaptureFallbackWarning`.

A ``single`` or ``chunked`` request that cannot be faithful for a layer falls back (``single``
to ``chunked``, then ``exact``) with a :class:`CaptureFallbackWarning` naming the reason.

On the CPU, when a call wants only time maps and prefix mass, each block's softmax and key-column
sums run in one pass of a small compiled kernel (:mod:`attnviz.cpu_kernel`: built at first use,
checked against torch; torch ops compute the same where there is no C compiler, slower); the
layer's output is then ``(E @ v) / row sum``, as a fused kernel forms it.

Blocks are sized to stay in cache (``chunk_bytes``: one head's block of logits on the CPU) and,
on the CPU, spread over ``torch.get_num_threads()`` worker threads that each run single-threaded
kernels: thousands of small ops then cost no OpenMP hand-offs, which on a busy CPU cost
milliseconds each.  On an accelerator all heads of a block go in one batched kernel and blocks
are larger (:data:`DEFAULT_DEVICE_CHUNK_BYTES`).  Blocks are per (series, query rows).

Every hook is removed, every replaced forward restored and every ``fused_attn`` flag reset when
the ``with`` block ends, also when it raises.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import functools
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
from timm.layers import Attention
from torch import nn

from .capture_strategies import (
    BlockPlan,
    BlockRunner,
    attend_blocks,
    block_rows,
    call_blocker,
    chunk_blocker,
    single_blocker,
    single_pass_forward,
)
from .grid import GridProvider, TokenGrid, check_grid_provider, layer_grid
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
    "AUTO_EXACT_MAX_BYTES",
    "AUTO_SINGLE_THRESHOLD_BYTES",
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_DEVICE_CHUNK_BYTES",
]

STRATEGIES: tuple[str, ...] = ("auto", "exact", "chunked", "single")
#: ``auto`` picks ``single`` above this size of one series' map (H*S*S float32).  Measured on CPU
#: (2 threads, ViTime predicts), single / exact: 1.47 at 1 MiB, 1.2 at 4, 1.09 at 8, 0.74 at 16,
#: ~0.5 at 64; batches of 1-32 0.7 MiB maps: 1.6-2.4 whatever their total.
AUTO_SINGLE_THRESHOLD_BYTES: int = 8 * 2**20
#: ``chunked`` where single is not faithful, per series (chunked / exact: 0.93 at 8, 0.75 at 16 MiB).
AUTO_CHUNK_THRESHOLD_BYTES: int = 8 * 2**20
#: Blockwise above this per call whatever the series' size: ``exact`` would hold it all at once.
AUTO_EXACT_MAX_BYTES: int = 256 * 2**20
#: Bytes of one head's block of logits on the CPU (the probabilities take as much again, per
#: worker thread).  Small enough that the block is reduced while still in cache, large enough for
#: an efficient q @ k^T (2 MiB, ~210 query rows of released ViTime, measured fastest on CPU).
#: Blocks have at least :data:`MIN_BLOCK_ROWS` query rows so that very long sequences keep BLAS busy.
DEFAULT_CHUNK_BYTES: int = 2 * 2**20
#: Bytes of one block of logits (all heads) on an accelerator: few, large kernels.
DEFAULT_DEVICE_CHUNK_BYTES: int = 256 * 2**20
MIN_BLOCK_ROWS: int = 8


class CaptureFallbackWarning(UserWarning):
    """A layer is captured with a slower strategy than asked (``single`` or ``chunked`` could not
    be faithful there; the message says why)."""


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
    #: {layer: TokenGrid} the grid each layer's (last) call was reduced over, only with a grid.
    grids: dict[str, TokenGrid] = field(default_factory=dict)
    #: {layer: (B, H, S, S)} probabilities, only with ``keep_full=True``.
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    #: {layer: (B, H, C, C)} query column x key column, only with a grid.
    time_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    #: {layer: (B, H, C)} mass each query column puts on the prefix tokens, only with a grid.
    prefix_mass: dict[str, torch.Tensor] = field(default_factory=dict)
    #: {layer: (B, S, S)} heads fused with ``head_fusion``, only when it is given.
    token_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    #: {layer: "exact" | "chunked" | "single"} what the last call of that layer used.
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
    spec: ReductionSpec
    handled: bool = False


@dataclass
class _Probe:
    """Per-layer bookkeeping of one capture session."""

    name: str
    module: Attention
    chunk_blocker: str | None
    original_fused: bool
    #: Why ``single`` cannot run on this module (None: it can); only looked at when asked for.
    single_blocker: str | None = "not asked for"
    #: The forward installed on the module for this session (removed at the end).
    forward: Any = None
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
        grid: GridProvider | None = None,
        head_fusion: str | None = None,
        strategy: str = "auto",
        chunk_size: int | None = None,
        time_convention: str = "sum",
        chunk_bytes: int | None = None,
    ) -> "_CaptureSession":
        """Context manager yielding an :class:`AttentionCapture`, filled when the block ends.

        keep_full: also keep every (B, H, S, S) map (memory grows with S^2; off by default).
        grid: reduce each map to time maps and prefix mass over this token grid; or, per layer,
            a mapping {layer: TokenGrid} or a callable ``layer -> TokenGrid`` asked when that
            layer's forward starts (layers whose sequences differ, e.g. VisionTS' encoder and
            decoder; see :data:`attnviz.grid.GridProvider`).
        head_fusion: "mean", "max" or "min" over heads -> ``token_maps`` (B, S, S).
        strategy: "auto", "single", "chunked" or "exact" (see the module docstring).
        chunk_size: query rows per block in ``single`` and ``chunked``; default: as many as fit
            ``chunk_bytes``.
        time_convention: "sum" (rows of T sum to 1 - prefix mass) or "mean" (T / rows).
        chunk_bytes: byte budget of one block of logits in ``single`` and ``chunked`` (one head
            on the CPU, all heads elsewhere); default :data:`DEFAULT_CHUNK_BYTES` on the CPU,
            :data:`DEFAULT_DEVICE_CHUNK_BYTES` on an accelerator.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if head_fusion is not None and head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS} or None, got {head_fusion!r}")
        if time_convention not in TIME_CONVENTIONS:
            raise ValueError(f"time_convention must be one of {TIME_CONVENTIONS}, got {time_convention!r}")
        if chunk_size is not None and not _is_positive_int(chunk_size):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        if chunk_bytes is not None and not _is_positive_int(chunk_bytes):
            raise ValueError(f"chunk_bytes must be a positive int or None, got {chunk_bytes!r}")
        check_grid_provider(grid)
        spec = ReductionSpec(
            keep_full=bool(keep_full), grid=grid if isinstance(grid, TokenGrid) else None,
            head_fusion=head_fusion, time_convention=time_convention,
        )
        return _CaptureSession(self, spec, strategy, chunk_size, chunk_bytes, grid)

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
        chunk_bytes: int | None,
        grids: GridProvider | None = None,
    ) -> None:
        self.rollout, self.spec = rollout, spec
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
        self.grids = grids  # per-layer grids, resolved when each layer starts (spec.grid: one for all)
        self._probes: list[_Probe] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._model_calls = 0
        self._runner = BlockRunner(torch.get_num_threads())
        #: Blocks as on an accelerator (all heads in one batched kernel, softmax into its own
        #: buffer): None = on accelerators only; True lets the CPU tests run that layout.
        self._accelerator_layout: bool | None = None

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
                    chunk_blocker=chunk_blocker(module),
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
                if self.strategy in ("auto", "single"):
                    probe.single_blocker = single_blocker(module)
                    if probe.single_blocker is None:  # scoped like the hooks: removed in _cleanup
                        probe.forward = bind(self._attention_forward, probe)
                        module.forward = probe.forward
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
            if probe.forward is not None and vars(probe.module).get("forward") is probe.forward:
                del probe.module.forward
            probe.forward = None
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
        spec = self.spec
        if self.grids is not None and not isinstance(self.grids, TokenGrid):
            spec = dataclasses.replace(spec, grid=layer_grid(self.grids, probe.name))
        if spec.grid is not None:
            check_grid_fits(spec.grid, seq_len, f"layer {probe.name!r}")
            self.result.grids[probe.name] = spec.grid
        strategy = self._pick_strategy(probe, x, spec)
        probe.calls += 1
        probe.last_strategy = strategy
        probe.current = _Call(batch, seq_len, strategy, attn_mask, bool(is_causal), spec)
        if hasattr(module, "fused_attn"):
            module.fused_attn = False if strategy == "exact" else probe.original_fused

    def _on_attention_end(self, probe: _Probe, module: Attention, args: tuple, output: Any) -> None:
        call, probe.current = probe.current, None
        if call is not None and call.handled:
            probe.seen += 1
        if hasattr(module, "fused_attn"):
            module.fused_attn = probe.original_fused

    def _attention_forward(self, probe: _Probe, *args: Any, **kwargs: Any) -> Any:
        """The module's forward during the session: single-pass when this call was given it."""
        call = probe.current
        if call is None or call.handled or call.strategy != "single":
            return Attention.forward(probe.module, *args, **kwargs)
        call.handled = True
        x = args[0] if args else kwargs["x"]
        heads = int(probe.module.num_heads)
        reducer = (
            BlockReducer(call.spec, call.batch, heads, call.seq_len, x.device) if call.spec.wants_anything else None
        )
        plan = self._block_plan(x.device, call.batch, heads, call.seq_len)
        out = single_pass_forward(probe.module, x, call.attn_mask, call.is_causal, reducer, plan, self._runner)
        if reducer is not None:
            probe.results.append(self._runner.call(reducer.finish, x.device))
        return out

    def _on_qkv(self, probe: _Probe, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        call = probe.current
        if call is None or call.handled or call.strategy != "chunked":
            return
        call.handled = True
        if call.spec.wants_anything:
            with torch.no_grad():
                probe.results.append(self._reduce_chunked(probe.module, call, output))

    def _on_softmax(self, probe: _Probe, module: nn.Module, args: tuple) -> None:
        call = probe.current
        if call is None or call.handled or call.strategy != "exact":
            return
        call.handled = True
        if not call.spec.wants_anything:
            return
        # An in-place dropout (training) would overwrite the map after this hook: copy it then.
        borrowed = not (module.training and getattr(module, "inplace", False))
        with torch.no_grad():
            probe.results.append(reduce_full(call.spec, args[0], borrowed=borrowed))

    # ----- strategies --------------------------------------------------------------------------
    def _pick_strategy(self, probe: _Probe, x: torch.Tensor, spec: ReductionSpec) -> str:
        wanted = self.strategy
        if wanted == "auto":
            if not spec.wants_anything:  # only counting calls: keep the model untouched
                return "chunked" if probe.chunk_blocker is None else "exact"
            batch, seq_len = int(x.shape[0]), int(x.shape[1])
            map_bytes = int(probe.module.num_heads) * seq_len * seq_len * 4  # one series
            whole = batch * map_bytes <= AUTO_EXACT_MAX_BYTES
            if map_bytes <= AUTO_SINGLE_THRESHOLD_BYTES and whole:
                return "exact"
            if probe.single_blocker is None and call_blocker(probe.module, x) is None:
                return "single"
            if (map_bytes <= AUTO_CHUNK_THRESHOLD_BYTES and whole) or not probe.original_fused:
                return "exact"
            wanted = "chunked"
        if wanted == "single":
            reason = probe.single_blocker or call_blocker(probe.module, x)
            if reason is None:
                return "single"
            wanted = "chunked" if probe.chunk_blocker is None else "exact"
            self._warn_once(probe, "single-pass", reason, wanted)
        if wanted == "chunked" and probe.chunk_blocker is not None:
            self._warn_once(probe, "chunked", probe.chunk_blocker, "exact (fused attention off)")
            wanted = "exact"
        return wanted

    def _warn_once(self, probe: _Probe, what: str, reason: str, instead: str) -> None:
        if not probe.warned:
            warnings.warn(
                f"layer {probe.name!r}: {what} capture cannot be faithful ({reason}); capturing "
                f"it {instead} instead",
                CaptureFallbackWarning,
                stacklevel=3,
            )
            probe.warned = True

    def _reduce_chunked(
        self, module: Attention, call: _Call, qkv_out: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Recompute this call's probabilities block by block from the forward's own qkv."""
        b, n = call.batch, call.seq_len
        heads, head_dim = int(module.num_heads), int(module.head_dim)
        qkv = qkv_out.detach().reshape(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        # Same ops as timm's unfused path: q_norm, k_norm, then q * scale (done per block).
        q, k = _maybe(module.q_norm, qkv[0]).float(), _maybe(module.k_norm, qkv[1]).float()
        reducer = BlockReducer(call.spec, b, heads, n, q.device)
        plan = self._block_plan(q.device, b, heads, n)
        attend_blocks(q, k, float(module.scale), plan, self._runner, reducer, call.attn_mask, call.is_causal)
        return self._runner.call(reducer.finish, q.device)

    def _block_plan(self, device: torch.device, batch: int, heads: int, seq_len: int) -> BlockPlan:
        """Query rows and heads per block: the byte budget, but enough blocks for every worker."""
        on_cpu = device.type == "cpu"
        accelerator = not on_cpu if self._accelerator_layout is None else self._accelerator_layout
        group = heads if accelerator else 1
        if self.chunk_size is not None:
            return BlockPlan(min(self.chunk_size, seq_len), group, in_place=not accelerator)
        budget = self.chunk_bytes or (DEFAULT_CHUNK_BYTES if on_cpu else DEFAULT_DEVICE_CHUNK_BYTES)
        rows = max(MIN_BLOCK_ROWS, budget // (group * seq_len * 4))
        workers = self._runner.workers if on_cpu else 1
        return BlockPlan(block_rows(seq_len, batch, workers, rows), group, in_place=not accelerator)


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


def _maybe(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``, skipping the call for ``nn.Identity`` (keeps ``x`` a view)."""
    return x if isinstance(norm, nn.Identity) else norm(x)


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
