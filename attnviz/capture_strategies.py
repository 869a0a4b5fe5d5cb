"""The arithmetic behind :mod:`attnviz.capture`'s ``chunked`` and ``single`` strategies.

Both walk one call's attention one block of query rows at a time (``attend_blocks``):
``softmax(q * scale @ k^T + mask)`` for a block of rows and a group of heads, handed to a
:class:`~attnviz.reducers.BlockReducer` and, for ``single``, multiplied by ``v`` into the layer's
output.  ``chunked`` feeds it the q and k the model's own forward computed (the model keeps its
fused kernel); ``single`` replaces the forward of timm's ``Attention`` by
:func:`single_pass_forward`, which computes each probability block once for both.

What may run which strategy is decided here too (:func:`chunk_blocker`, :func:`single_blocker`,
:func:`call_blocker`): a reason string when a strategy could compute something else than the
model's own forward, ``None`` when it is faithful.
"""
from __future__ import annotations

import contextlib
import functools
import math
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from timm.layers import Attention
from torch import nn

from . import cpu_kernel
from .reducers import BlockReducer

#: The submodules timm's ``Attention.forward`` uses (``gate`` and ``norm`` only in newer timm).
#: A module with other children is something :func:`single_pass_forward` does not know.
ATTENTION_CHILDREN = frozenset({"qkv", "q_norm", "k_norm", "attn_drop", "norm", "gate", "proj", "proj_drop"})


@dataclass(frozen=True)
class BlockPlan:
    """How :func:`attend_blocks` cuts a call: query rows and heads per block (1 on the CPU, all
    heads on an accelerator), and whether the softmax overwrites the logits (the CPU, where the
    block should stay in cache; elsewhere it gets its own buffer)."""

    rows: int
    heads: int
    in_place: bool = True


def block_rows(seq_len: int, batch: int, workers: int, rows: int) -> int:
    """Query rows per block: at most ``rows``, enough blocks for every worker, and blocks of one
    size in a number the workers share out evenly (none waits for a last, odd block)."""
    per_batch = -(-workers // batch)  # blocks each batch element should give
    rows = max(1, min(rows, seq_len, -(-seq_len // per_batch)))
    if workers > 1 and seq_len > 0:
        blocks = -(-seq_len // rows)
        while (batch * blocks) % workers and blocks < seq_len:
            blocks += 1
        rows = -(-seq_len // blocks)
    return rows


# ----- which strategy is faithful where ------------------------------------------------------------
def chunk_blocker(module: Attention) -> str | None:
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


def single_blocker(module: Attention) -> str | None:
    """Why replacing this module's forward by :func:`single_pass_forward` could change its output."""
    reason = chunk_blocker(module)
    if reason is not None:
        return reason
    if "forward" in vars(module):
        return "its forward is replaced on the instance"
    extra = sorted({name for name, _ in module.named_children()} - ATTENTION_CHILDREN)
    if extra:
        return f"it has submodules timm's Attention.forward does not use: {extra}"
    if not timm_forward_mirrored():
        import timm

        return f"timm {timm.__version__}'s Attention.forward computes something single_pass_forward does not"
    return None


def call_blocker(module: Attention, x: torch.Tensor) -> str | None:
    """Why one call cannot run single-pass (dropout on the probabilities, autograd, autocast), or None."""
    if module.training and float(module.attn_drop.p) > 0:
        return "attention dropout is active (training mode)"
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters())):
        return "autograd is recording (run under torch.no_grad() or torch.inference_mode())"
    if autocast_enabled(x.device.type):
        return (
            f"torch.autocast is on for {x.device.type} ({autocast_dtype(x.device.type)}): the model's kernel "
            "would compute attention in that precision, single-pass computes it in float32"
        )
    return None


def autocast_enabled(device_type: str) -> bool:
    """Is ``torch.autocast`` active for ``device_type`` in this thread?"""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # pragma: no cover - torch < 2.4 takes no device type
        if device_type == "cpu":
            return bool(torch.is_autocast_cpu_enabled())
        return device_type == "cuda" and bool(torch.is_autocast_enabled())


def autocast_dtype(device_type: str) -> str:
    try:
        return str(torch.get_autocast_dtype(device_type)).replace("torch.", "")
    except (AttributeError, TypeError, RuntimeError):  # pragma: no cover - torch < 2.4
        return "lower precision"


@functools.lru_cache(maxsize=None)
def timm_forward_mirrored() -> bool:
    """Does :func:`single_pass_forward` equal the installed timm's ``Attention.forward``?

    Checked once per process on a tiny module (CPU, float32, global RNG untouched), with the
    fused kernel and without, so that a timm release that changes its forward switches the
    ``single`` strategy off instead of silently computing something else (also when the check
    itself fails to run there).  Autocast is off for the check: a first capture under a caller's
    autocast must not switch ``single`` off for the whole process.
    """
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), torch.autocast("cpu", enabled=False):
            torch.manual_seed(0)
            module = Attention(16, num_heads=2, qkv_bias=True).eval()
            x = torch.randn(2, 7, 16)
            ours = single_pass_forward(module, x, None, False, None, BlockPlan(rows=3, heads=1), BlockRunner(1))
            outputs = []
            for flag in (True, False):
                module.fused_attn = flag
                outputs.append(module(x))
    except Exception:  # noqa: BLE001 - any failure means "not known to be mirrored"
        return False
    return all(torch.allclose(out, ours, atol=1e-6, rtol=1e-5) for out in outputs)


# ----- the block kernel ----------------------------------------------------------------------------
def attend_blocks(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: float,
    plan: BlockPlan,
    runner: "BlockRunner",
    reducer: BlockReducer | None = None,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    v: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> None:
    """Walk ``softmax(q * scale @ k^T + mask)`` block by block; q, k, v are (B, H, S, d) float32.

    Each probability block (``plan.heads`` heads x ``plan.rows`` query rows) goes to ``reducer``
    and, with ``v``, its ``P @ v`` to ``out`` (B, S, H * d) at the heads' columns, which is
    timm's ``(P @ v).transpose(1, 2).reshape(B, S, H * d)``.  Blocks live in per-thread scratch
    buffers (the softmax in place on the CPU, where the block should stay in cache); nothing of
    size S x S is kept.  Per block and head group: one matmul, the softmax, the reductions and
    one matmul straight into ``out``.  Where only time maps are wanted on the CPU, the compiled
    kernel of :mod:`attnviz.cpu_kernel` does the softmax and the reductions in one pass and
    ``out`` gets ``(E @ v) / row sum``.
    """
    batch, heads, n, _ = q.shape
    rows, group = plan.rows, plan.heads
    k_t = _prepare(k, runner)
    in_place = plan.in_place
    kernel = _column_kernel(q.device, plan, reducer, attn_mask, is_causal)
    grid = None if reducer is None else reducer.spec.grid
    # Per (batch, head group) views made once: a block then costs a handful of torch calls (each
    # ~3 us of Python), not the dozens that indexing 4-D tensors per block would.  One head is a
    # 2-D problem (plain mm, the CPU case); a group of heads a batched one.
    groups = [(h0, min(group, heads - h0)) for h0 in range(0, heads, group)]
    outs = None if out is None else out.view(batch, n, heads, -1)
    views = [
        [
            (
                _heads(q, bi, h0, g),
                _heads(k_t, bi, h0, g),
                None if v is None else _heads(v, bi, h0, g),
                None if outs is None else _heads(outs.transpose(1, 2), bi, h0, g),
            )
            for h0, g in groups
        ]
        for bi in range(batch)
    ]

    def run(item: tuple[int, int]) -> None:
        bi, q0 = item
        m = min(rows, n - q0)
        with torch.no_grad():  # grad mode is per thread
            size = group * rows * n
            logits_buf, probs_buf, inv_buf = runner.scratch((size, 0 if in_place else size, rows), q.device)
            causal = _causal_bias(q0, m, n, q.device) if is_causal else None
            for (h0, g), (q_h, k_h, v_h, out_h) in zip(groups, views[bi]):
                shape = (m, n) if g == 1 else (g, m, n)
                logits = logits_buf[: g * m * n].view(shape)
                probs = logits if in_place else probs_buf[: g * m * n].view(shape)
                _matmul(q_h.narrow(-2, q0, m), k_h, logits, alpha=scale)
                if kernel is not None:
                    # exp(logits - max) in place, the column sums straight into the reducer's
                    # targets, and P @ v as (E @ v) / row sum
                    inv = inv_buf[:m]
                    kernel(logits, grid.prefix_tokens, grid.rows, grid.cols, *reducer.column_targets(bi, h0, q0, m), inv)
                    if v_h is not None:
                        out_block = out_h.narrow(-2, q0, m)
                        _matmul(logits, v_h, out_block)
                        out_block.mul_(inv.unsqueeze(-1))
                    continue
                bias = causal if is_causal else _mask_block(attn_mask, bi, h0, g, q0, m)
                if bias is not None:
                    logits.add_(bias if g > 1 or bias.dim() < 3 else bias[0])
                torch.softmax(logits, dim=-1, out=probs)
                if reducer is not None:
                    reducer.add(bi, h0, q0, probs)
                if v_h is not None:
                    _matmul(probs, v_h, out_h.narrow(-2, q0, m))

    runner.map(run, [(bi, q0) for bi in range(batch) for q0 in range(0, n, rows)], q.device)


def _column_kernel(
    device: torch.device,
    plan: BlockPlan,
    reducer: BlockReducer | None,
    attn_mask: torch.Tensor | None,
    is_causal: bool,
) -> cpu_kernel.SoftmaxColumns | None:
    """The compiled softmax + column-sum kernel where it computes exactly what is asked: CPU
    blocks of one head, softmax in place, no mask, only time maps / prefix mass wanted."""
    if device.type != "cpu" or not plan.in_place or plan.heads != 1 or attn_mask is not None or is_causal:
        return None
    if reducer is None or not reducer.columns_only:
        return None
    return cpu_kernel.active()


def _prepare(k: torch.Tensor, runner: "BlockRunner") -> torch.Tensor:
    """Once per call: ``k^T`` as a transposed view of a contiguous copy of ``k`` per head.

    The forward's q, k, v are strided views of its qkv output.  BLAS takes q and v as they are,
    but every block of query rows multiplies by all of ``k^T``: left strided, it is read from all
    over the qkv output each time (measured at released ViTime size with two workers: slower per
    layer than copying it once).  A plain copy of ``k`` is cheap and BLAS reads its transpose at
    full speed; a transposing copy would cost twice as much.  The copies run on the block workers,
    a share of the heads each: with torch's own threads, on a busy CPU, they cost 1.5x to 4x more.
    """
    batch, heads = k.shape[:2]
    k_c = torch.empty(k.shape, dtype=torch.float32, device=k.device)
    step = -(-heads // runner.workers) if k.device.type == "cpu" else heads

    def copy(item: tuple[int, int]) -> None:
        b, h0 = item
        hs = slice(h0, h0 + step)
        with torch.no_grad():
            k_c[b, hs].copy_(k[b, hs])

    runner.map(copy, [(b, h0) for b in range(batch) for h0 in range(0, heads, step)], k.device)
    return k_c.transpose(-1, -2)


def _heads(t: torch.Tensor, b: int, h0: int, g: int) -> torch.Tensor:
    """Batch ``b``, heads ``h0 .. h0 + g`` of a (B, H, ...) tensor: 2-D for one head, else 3-D."""
    return t[b, h0] if g == 1 else t[b, h0 : h0 + g]


def single_pass_forward(
    module: Attention,
    x: torch.Tensor,
    attn_mask: torch.Tensor | None,
    is_causal: bool,
    reducer: BlockReducer | None,
    plan: BlockPlan,
    runner: "BlockRunner",
) -> torch.Tensor:
    """timm's ``Attention.forward`` with the attention computed by :func:`attend_blocks`.

    Same modules in the same order (gate, qkv, q_norm/k_norm, attention, norm, gate, proj,
    proj_drop), so hooks on them see what they see in the model's own forward.  The attention is
    computed in float32 and cast back to the dtype of ``v``.  Use only where
    :func:`single_blocker` and :func:`call_blocker` return None.
    """
    batch, n, _ = x.shape
    heads, head_dim = int(module.num_heads), int(module.head_dim)
    gate_layer = getattr(module, "gate", None)
    gate = gate_layer(x).sigmoid() if gate_layer is not None else None
    qkv = module.qkv(x).reshape(batch, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = module.q_norm(q), module.k_norm(k)
    out = torch.empty(batch, n, heads * head_dim, dtype=torch.float32, device=x.device)
    attend_blocks(
        q.float(), k.float(), float(module.scale), plan, runner, reducer, attn_mask, is_causal, v.float(), out
    )
    y = out.to(v.dtype)
    norm = getattr(module, "norm", None)
    if norm is not None:
        y = norm(y)
    if gate is not None:
        y = y * gate
    return module.proj_drop(module.proj(y))


def _matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, alpha: float = 1.0) -> None:
    """``alpha * (a @ b)`` for (m, k) @ (k, n) or (g, m, k) @ (g, k, n), into ``out`` (a strided view
    is written in place).  ``alpha`` is BLAS's own factor: the scale costs no pass of its own, and
    is applied after the product, as the fused attention kernel applies it."""
    if a.dim() == 2:
        torch.addmm(out, a, b, beta=0, alpha=alpha, out=out)
    else:
        torch.baddbmm(out, a, b, beta=0, alpha=alpha, out=out)


def _causal_bias(q0: int, rows: int, n: int, device: torch.device) -> torch.Tensor:
    """-inf above the diagonal for query rows ``q0 .. q0 + rows`` (timm/SDPA ``is_causal``)."""
    q_idx = torch.arange(q0, q0 + rows, device=device)[:, None]
    k_idx = torch.arange(n, device=device)[None, :]
    return torch.zeros(rows, n, device=device).masked_fill_(k_idx > q_idx, float("-inf"))


def _mask_block(
    mask: torch.Tensor | None, b: int, h0: int, heads: int, q0: int, rows: int
) -> torch.Tensor | None:
    """Additive bias of batch ``b``, heads ``h0 .. h0 + heads``, query rows ``q0 .. q0 + rows``
    of an SDPA-style mask (bool: True = attend; float: added), broadcastable to (heads, rows, S)."""
    if mask is None:
        return None
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    mask = mask[b if mask.shape[0] > 1 else 0]
    mask = mask[h0 : h0 + heads] if mask.shape[0] > 1 else mask
    if mask.shape[1] > 1:
        mask = mask[:, q0 : q0 + rows]
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, float("-inf"))
    return mask.float()


# ----- running blocks ------------------------------------------------------------------------------
class BlockRunner:
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

    def scratch(self, sizes: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
        """This thread's float32 buffers of at least ``sizes`` elements, grown when too small."""
        bufs = getattr(self._local, "bufs", None)
        if (
            bufs is None
            or len(bufs) != len(sizes)
            or bufs[0].device != device
            or any(buf.numel() < size for buf, size in zip(bufs, sizes))
        ):
            bufs = tuple(torch.empty(size, dtype=torch.float32, device=device) for size in sizes)
            self._local.bufs = bufs
        return bufs

    def map(self, fn: Callable[[Any], None], items: list, device: torch.device) -> None:
        """``fn(item)`` for every item, on the workers (CPU) or inline."""
        if device.type != "cpu" or self.workers == 1 or len(items) == 1:
            for item in items:
                fn(item)
            return
        with self._pooled() as pool:
            done, _ = wait([pool.submit(fn, item) for item in items], return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # re-raise a worker's exception here

    def call(self, fn: Callable[[], Any], device: torch.device) -> Any:
        """``fn()`` on one worker (CPU), else inline: a few small ops, which with torch's own
        threads would each wait for a busy core."""
        if device.type != "cpu" or self.workers == 1:
            return fn()
        with self._pooled() as pool:
            return pool.submit(fn).result()

    @contextlib.contextmanager
    def _pooled(self) -> Iterator[ThreadPoolExecutor]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.workers,
                thread_name_prefix="attnviz-capture",
                initializer=torch.set_num_threads,
                initargs=(1,),
            )
        threads = torch.get_num_threads()
        try:
            yield self._pool
        finally:
            torch.set_num_threads(threads)  # a worker's set_num_threads(1) also sets the default

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._local = threading.local()
