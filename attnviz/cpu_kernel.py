"""A small compiled CPU kernel for the blockwise capture: softmax and key-column sums in one pass.

Why: at released ViTime size the ``single`` strategy's extra cost over the model's fused
attention was the softmax (a precise ``exp`` over every logit, then a division pass) and the
key-column sums read back from the probability block.  ``csrc/softmax_columns.c`` does both in two
passes per row with a cheaper exp (relative error ~2e-7, like the fused kernel's own) and leaves
the division to the small ``(E @ v)`` and column results, which is what a fused kernel does too.

It is plain C, built at first use with the system's C compiler (``$CC``, else ``cc``, ``gcc`` or
``clang``) into a per-user cache and checked against torch before use.  Where there is no compiler,
the build fails, or the check disagrees, :func:`active` returns None and the capture computes the
same thing with torch ops (slower, equally exact); :func:`status` says which.
``ATTNVIZ_CPU_KERNEL=0`` switches it off.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

SOURCE = Path(__file__).with_name("csrc") / "softmax_columns.c"
#: Set to 0, off, false or no to compute with torch ops only.
ENV_SWITCH = "ATTNVIZ_CPU_KERNEL"
#: Where built kernels are cached (default: $XDG_CACHE_HOME/attnviz, else ~/.cache/attnviz).
ENV_CACHE = "ATTNVIZ_CACHE_DIR"
#: Largest disagreement with torch's softmax and column sums accepted by the self-check.
CHECK_ATOL = 2e-6
_COMMON_FLAGS = (
    "-O3", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math", "-fno-signed-zeros", "-fassociative-math",
)
_LOCK = threading.Lock()


@dataclass(frozen=True)
class KernelBuild:
    """The outcome of building and checking the kernel once in this process."""

    kernel: "SoftmaxColumns | None"
    detail: str  # the library's path, or why there is no kernel


def enabled_by_env() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "off", "false", "no"}


def active() -> "SoftmaxColumns | None":
    """The kernel when it is built, checked and not switched off, else None (use torch ops)."""
    if not enabled_by_env():
        return None
    return _build().kernel


def status() -> str:
    """One line: which path the CPU capture's softmax takes, and why."""
    if not enabled_by_env():
        return f"torch ops ({ENV_SWITCH} switches the compiled kernel off)"
    build = _build()
    if build.kernel is None:
        return f"torch ops (no compiled kernel: {build.detail})"
    return f"compiled kernel ({build.detail})"


class SoftmaxColumns:
    """``softmax_columns(logits, prefix, rows, cols, per_col, prefix_mass, inv_sum)`` on CPU tensors.

    ``logits`` (m, n) float32 contiguous, with ``n = prefix + rows * cols`` keys in row-major
    patch order, becomes ``exp(logits - row max)`` (not normalised); ``per_col`` (m, cols),
    ``prefix_mass`` (m) get the probability mass on each key column and on the prefix keys,
    ``inv_sum`` (m) gets 1 / row sum.  Every tensor is checked before its pointer is handed over.
    """

    def __init__(self, function: Callable[..., int]) -> None:
        self._function = function

    def __call__(
        self,
        logits: torch.Tensor,
        prefix: int,
        rows: int,
        cols: int,
        per_col: torch.Tensor,
        prefix_mass: torch.Tensor,
        inv_sum: torch.Tensor,
    ) -> None:
        m, n = logits.shape
        expected = {"logits": (m, n), "per_col": (m, cols), "prefix_mass": (m,), "inv_sum": (m,)}
        for name, t in (("logits", logits), ("per_col", per_col), ("prefix_mass", prefix_mass), ("inv_sum", inv_sum)):
            if tuple(t.shape) != expected[name] or t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
                raise ValueError(
                    f"softmax_columns: {name} must be a contiguous CPU float32 tensor of shape {expected[name]}, "
                    f"got {t.dtype} {tuple(t.shape)} on {t.device} (contiguous: {t.is_contiguous()})"
                )
        if n != prefix + rows * cols:
            raise ValueError(f"softmax_columns: {n} keys, expected prefix {prefix} + {rows} x {cols}")
        code = self._function(
            logits.data_ptr(), m, n, prefix, rows, cols, per_col.data_ptr(), prefix_mass.data_ptr(), inv_sum.data_ptr()
        )
        if code != 0:  # pragma: no cover - the checks above make the C checks redundant
            raise RuntimeError(f"softmax_columns refused its arguments (code {code})")


# ----- building, once per process ------------------------------------------------------------------
def _build() -> KernelBuild:
    with _LOCK:
        return _build_once()


@functools.lru_cache(maxsize=None)
def _build_once() -> KernelBuild:
    try:
        compiler = _compiler()
        flags = (*_COMMON_FLAGS, *_arch_flags())
        folder = _cache_folder()
        target = folder / f"softmax_columns-{_build_key(compiler, flags)}.so"
        if target.is_file():
            cached = _load_checked(target)
            if cached.kernel is not None:
                return cached
            # a stale or damaged file (say, cut short by a crash): build afresh, once
        fresh = _compile(compiler, flags, folder)
        try:
            built = _load_checked(fresh)  # loaded under its own name, so never the bad one again
            if built.kernel is not None:
                os.replace(fresh, target)
                return KernelBuild(built.kernel, str(target))
            return built
        finally:
            if fresh.exists():
                fresh.unlink()
    except _NoKernel as exc:
        return KernelBuild(None, str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure means "no kernel", never a failed capture
        return KernelBuild(None, f"{type(exc).__name__}: {exc}")


def _load_checked(path: Path) -> KernelBuild:
    try:
        kernel = SoftmaxColumns(_bind(path))
    except (OSError, AttributeError) as exc:
        return KernelBuild(None, f"{path} does not load: {exc}")
    problem = _self_check(kernel)
    if problem:
        return KernelBuild(None, f"built at {path} but its self-check failed: {problem}")
    return KernelBuild(kernel, str(path))


class _NoKernel(RuntimeError):
    """The kernel cannot be built here; the message says why."""


def _compiler() -> str:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and (found := shutil.which(name)):
            return found
    raise _NoKernel("no C compiler found ($CC, cc, gcc, clang)")


def _arch_flags() -> tuple[str, ...]:
    """AVX2 + FMA where torch says the CPU has them (x86-64); the baseline elsewhere."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return ()
    try:
        capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    except (AttributeError, RuntimeError):  # pragma: no cover - torch without the query
        return ()
    return ("-mavx2", "-mfma") if capability.startswith(("AVX2", "AVX512")) else ()


def _cache_dir() -> Path:
    root = os.environ.get(ENV_CACHE) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "attnviz"
    )
    return Path(root) / "kernels"


def _build_key(compiler: str, flags: tuple[str, ...]) -> str:
    """Names the library by everything that shapes it: source, compiler and its version, flags."""
    version = subprocess.run([compiler, "--version"], capture_output=True, timeout=30).stdout
    parts = [SOURCE.read_bytes(), compiler.encode(), " ".join(flags).encode(), version, platform.machine().encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def _cache_folder() -> Path:
    """The per-user cache folder, or a private one in the temp folder when that is not writable.

    A library is only ever loaded from a folder this user owns and nobody else can write to
    (checked for the temp folder, where another user could have created it first).
    """
    folder = _cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = Path(tempfile.gettempdir()) / f"attnviz-kernels-{uid if uid is not None else 'user'}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.stat()
    if uid is not None and (info.st_uid != uid or info.st_mode & 0o077):
        raise _NoKernel(f"{folder} is not private to this user (owner {info.st_uid}, mode {oct(info.st_mode & 0o777)})")
    return folder


def _compile(compiler: str, flags: tuple[str, ...], folder: Path) -> Path:
    """Build into a new file of ``folder`` (renamed into place by the caller once it loads and
    passes the self-check: processes starting together never see half a file)."""
    fd, name = tempfile.mkstemp(prefix=".softmax_columns-", suffix=".so", dir=folder)
    os.close(fd)
    built = Path(name)
    try:
        done = subprocess.run([compiler, *flags, str(SOURCE), "-o", name], capture_output=True, timeout=120)
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
            raise _NoKernel(f"{Path(compiler).name} exited with {done.returncode}: {message[-1]}")
        with open(built, "rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        built.unlink(missing_ok=True)
        raise
    return built


def _bind(path: Path) -> Callable[..., int]:
    library = ctypes.CDLL(str(path))  # a CDLL call releases the GIL: worker threads run in parallel
    function = library.attnviz_softmax_columns
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    function.argtypes = [ptr, i64, i64, i64, i64, i64, ptr, ptr, ptr]
    function.restype = ctypes.c_int
    return function


def _self_check(kernel: SoftmaxColumns) -> str | None:
    """Compare with torch on blocks that exercise the edges (prefix or none, odd widths, a wide
    logit range, -inf); a disagreement names the largest error.  Global RNG untouched."""
    generator = torch.Generator().manual_seed(0)
    for prefix, rows, cols, spread in ((1, 3, 5, 1.0), (0, 4, 19, 30.0), (3, 7, 33, 200.0)):
        n = prefix + rows * cols
        logits = torch.randn(6, n, generator=generator) * spread
        logits[0, -1] = float("-inf")
        want = torch.softmax(logits, -1)
        want_cols = want[:, prefix:].reshape(6, rows, cols).sum(1)
        per_col, head, inv = torch.empty(6, cols), torch.empty(6), torch.empty(6)
        work = logits.clone()
        kernel(work, prefix, rows, cols, per_col, head, inv)
        errors = {
            "probabilities": (work * inv[:, None] - want).abs().max().item(),
            "column mass": (per_col - want_cols).abs().max().item(),
            "prefix mass": (head - want[:, :prefix].sum(-1)).abs().max().item(),
        }
        worst = max(errors, key=errors.__getitem__)
        if not errors[worst] <= CHECK_ATOL:
            return f"{worst} differ from torch by {errors[worst]:.3g} (allowed {CHECK_ATOL:g})"
    return None
