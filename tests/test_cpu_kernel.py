"""The compiled softmax + key-column kernel: known answers against torch, the capture paths that use
it against the ones that do not, and every way it can be missing (no compiler, a failing build, a
failing self-check, switched off) falling back to torch ops that compute the same thing."""
from __future__ import annotations

import os
import stat
import tempfile

import numpy as np
import pytest
import torch
from timm.layers import Attention

from attnviz import cpu_kernel
from attnviz.capture import AttentionRollout
from attnviz.capture_strategies import BlockPlan, BlockRunner, single_pass_forward
from attnviz.grid import TokenGrid
from attnviz.reducers import BlockReducer, ReductionSpec, time_maps_from_probs

HORIZON = 720


@pytest.fixture
def kernel():
    found = cpu_kernel.active()
    if found is None:
        pytest.skip(f"no compiled CPU kernel here: {cpu_kernel.status()}")
    return found


class Counting:
    """The kernel, counting its calls (from the block workers too)."""

    def __init__(self, kernel) -> None:
        self.kernel, self.calls = kernel, 0

    def __call__(self, *args) -> None:
        self.calls += 1
        self.kernel(*args)


@pytest.fixture
def counted(kernel, monkeypatch):
    """``cpu_kernel.active()`` hands out a counting kernel (None when switched off, as it would)."""
    wrapper = Counting(kernel)
    monkeypatch.setattr(cpu_kernel, "active", lambda: wrapper if cpu_kernel.enabled_by_env() else None)
    return wrapper


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """A build of its own (own cache folder), forgotten again after the test."""
    monkeypatch.setenv(cpu_kernel.ENV_CACHE, str(tmp_path / "cache"))
    cpu_kernel._build_once.cache_clear()
    yield tmp_path
    cpu_kernel._build_once.cache_clear()


def reference(logits: torch.Tensor, prefix: int, rows: int, cols: int):
    p = torch.softmax(logits.double(), -1)
    return p, p[:, prefix:].reshape(len(p), rows, cols).sum(1), p[:, :prefix].sum(-1)


def run_kernel(kernel, logits: torch.Tensor, prefix: int, rows: int, cols: int):
    m = len(logits)
    work, per_col, head, inv = logits.clone(), torch.empty(m, cols), torch.empty(m), torch.empty(m)
    kernel(work, prefix, rows, cols, per_col, head, inv)
    return work * inv[:, None], per_col, head


# ----- known answers -------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix,rows,cols", [(0, 1, 1), (1, 32, 77), (1, 3, 16), (4, 5, 17), (2, 7, 33), (0, 14, 15)])
@pytest.mark.parametrize("spread", [0.1, 5.0, 60.0])
def test_kernel_equals_torch_softmax_and_column_sums(kernel, prefix, rows, cols, spread):
    gen = torch.Generator().manual_seed(rows * 100 + cols)
    logits = torch.randn(9, prefix + rows * cols, generator=gen) * spread + 40.0
    probs, per_col, head = run_kernel(kernel, logits, prefix, rows, cols)
    want_p, want_cols, want_head = reference(logits, prefix, rows, cols)
    torch.testing.assert_close(probs.double(), want_p, atol=1e-7, rtol=2e-6)
    torch.testing.assert_close(per_col.double(), want_cols, atol=2e-7, rtol=2e-6)
    torch.testing.assert_close(head.double(), want_head, atol=2e-7, rtol=2e-6)
    np.testing.assert_allclose(per_col.sum(-1) + head, 1.0, atol=1e-6)


def test_kernel_exp_is_accurate_down_to_underflow(kernel):
    """One row of logits from 0 to -100: every probability float32 holds as a normal number has a
    relative error under 1e-6; where exp(logit - max) is below exp(-87.3) it is exactly 0 (torch
    keeps a subnormal there: an error under 1.2e-38)."""
    logits = torch.linspace(-100.0, 0.0, 4001).unsqueeze(0)
    probs, _, _ = run_kernel(kernel, logits, 0, 1, 4001)
    want = torch.softmax(logits.double(), -1)[0]
    got = probs[0].double()
    held = want > 1e-37
    assert ((got[held] - want[held]).abs() / want[held]).max().item() < 1e-6
    assert torch.all(got[logits[0] < -87.4] == 0)


def test_kernel_masked_and_nan_rows_follow_torch(kernel):
    logits = torch.randn(3, 1 + 2 * 8, generator=torch.Generator().manual_seed(3))
    logits[0, 5:9] = float("-inf")  # masked keys get exactly 0
    logits[1, 3] = float("nan")  # a NaN row is NaN throughout, as torch's softmax makes it
    probs, per_col, head = run_kernel(kernel, logits, 1, 2, 8)
    want = torch.softmax(logits, -1)
    torch.testing.assert_close(probs[0], want[0], atol=1e-7, rtol=2e-6)
    assert torch.all(probs[0, 5:9] == 0)
    assert torch.isnan(probs[1]).all() and torch.isnan(per_col[1]).all() and torch.isnan(head[1])
    torch.testing.assert_close(probs[2], want[2], atol=1e-7, rtol=2e-6)


@pytest.mark.parametrize(
    "bad,message",
    [
        ("dtype", "logits must be a contiguous CPU float32"),
        ("strided", "logits must be a contiguous CPU float32"),
        ("per_col", r"per_col must be .* of shape \(4, 5\)"),
        ("keys", "23 keys, expected prefix 1 \\+ 4 x 5"),
    ],
)
def test_kernel_refuses_wrong_tensors_before_touching_memory(kernel, bad, message):
    logits, per_col = torch.randn(4, 21), torch.empty(4, 5)
    if bad == "dtype":
        logits = logits.double()
    elif bad == "strided":
        logits = torch.randn(21, 4).t()
    elif bad == "per_col":
        per_col = torch.empty(4, 6)
    elif bad == "keys":
        logits = torch.randn(4, 23)
    with pytest.raises(ValueError, match=message):
        kernel(logits, 1, 4, 5, per_col, torch.empty(4), torch.empty(4))


# ----- the capture paths that use it ---------------------------------------------------------------
def grid_for(rows: int, cols: int, prefix: int) -> TokenGrid:
    return TokenGrid(rows=rows, cols=cols, prefix_tokens=prefix, history_cols=cols // 2, samples_per_col=4.0)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("with_v", [True, False])
def test_single_pass_layer_with_kernel_equals_fused_and_exact(counted, workers, with_v):
    """One timm Attention at a grid of 1 + 6 x 7 tokens: the layer's output equals the fused kernel
    and the time maps equal those of the exact probabilities; the kernel really ran."""
    torch.manual_seed(0)
    module = Attention(32, num_heads=4, qkv_bias=True).eval()
    grid = grid_for(6, 7, 1)
    x = torch.randn(2, grid.seq_len, 32)
    reducer = BlockReducer(ReductionSpec(grid=grid), 2, 4, grid.seq_len, x.device)
    assert reducer.columns_only
    runner = BlockRunner(workers)
    try:
        with torch.no_grad():
            if with_v:
                got = single_pass_forward(module, x, None, False, reducer, BlockPlan(rows=5, heads=1), runner)
                torch.testing.assert_close(got, module(x), atol=1e-5, rtol=1e-5)
            else:  # chunked: probabilities recomputed from q and k, no output
                from attnviz.capture_strategies import attend_blocks

                qkv = module.qkv(x).reshape(2, grid.seq_len, 3, 4, 8).permute(2, 0, 3, 1, 4)
                attend_blocks(qkv[0], qkv[1], float(module.scale), BlockPlan(rows=5, heads=1), runner, reducer)
            out = reducer.finish()
            module.fused_attn = False
            probs = _exact_probs(module, x)
    finally:
        runner.close()
    assert counted.calls == 2 * 4 * 9, "the kernel did not compute every (series, head, block)"  # 43 rows / 5
    t, m = time_maps_from_probs(probs, grid)
    torch.testing.assert_close(out["time"], t, atol=1e-6, rtol=0)
    torch.testing.assert_close(out["prefix"], m, atol=1e-6, rtol=0)


def _exact_probs(module: Attention, x: torch.Tensor) -> torch.Tensor:
    b, n, _ = x.shape
    q, k, _ = module.qkv(x).reshape(b, n, 3, module.num_heads, module.head_dim).permute(2, 0, 3, 1, 4)
    return torch.softmax(q * module.scale @ k.transpose(-2, -1), -1)


@pytest.mark.parametrize("strategy", ["single", "chunked"])
def test_capture_with_and_without_kernel_agree(counted, monkeypatch, vitime_fixture_forecaster, strategy):
    """Whole ViTime forecasts under capture: the kernel and torch ops give the same maps (1e-6) and
    the same forecast as no capture at all (the fixture tolerance of test_capture_single)."""
    fc = vitime_fixture_forecaster
    n = np.arange(240, dtype=float)
    series = np.sin(2 * np.pi * n / 24) + 0.1 * np.cos(n / 3)
    grid = fc.grid(len(series), HORIZON)
    rollout = AttentionRollout(fc.model)
    results = {}
    for switch in ("1", "0"):
        monkeypatch.setenv(cpu_kernel.ENV_SWITCH, switch)
        before = counted.calls
        with rollout.capture(grid=grid, strategy=strategy) as cap:
            pred = fc.predict(series, HORIZON)
        results[switch] = cap, pred
        assert (counted.calls > before) == (switch == "1"), f"kernel calls with {cpu_kernel.ENV_SWITCH}={switch}"
    plain = fc.predict(series, HORIZON)
    (with_kernel, pred_k), (without, pred_t) = results["1"], results["0"]
    for layer in with_kernel.layer_names:
        torch.testing.assert_close(with_kernel.time_maps[layer], without.time_maps[layer], atol=1e-6, rtol=0)
        torch.testing.assert_close(with_kernel.prefix_mass[layer], without.prefix_mass[layer], atol=1e-6, rtol=0)
        rows = with_kernel.time_maps[layer].sum(-1) + with_kernel.prefix_mass[layer]
        torch.testing.assert_close(rows, torch.ones_like(rows), atol=1e-5, rtol=0)
    np.testing.assert_allclose(pred_k.probabilities, plain.probabilities, atol=1e-5, rtol=0)
    np.testing.assert_allclose(pred_t.probabilities, plain.probabilities, atol=1e-5, rtol=0)


def test_kernel_not_used_where_it_would_compute_less(monkeypatch, vitime_fixture_forecaster):
    """Full maps or a head-fused token map need every probability normalised: torch ops run."""
    fc = vitime_fixture_forecaster
    monkeypatch.setattr(cpu_kernel, "active", lambda: pytest.fail("kernel asked for"))
    series = np.sin(np.arange(240) / 4.0)
    with AttentionRollout(fc.model).capture(
        grid=fc.grid(240, HORIZON), keep_full=True, head_fusion="max", strategy="single"
    ) as cap:
        fc.predict(series, HORIZON)
    assert cap.maps and cap.token_maps


# ----- when there is no kernel ---------------------------------------------------------------------
def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv(cpu_kernel.ENV_SWITCH, "0")
    assert cpu_kernel.active() is None
    assert cpu_kernel.ENV_SWITCH in cpu_kernel.status()


def test_no_compiler_falls_back_with_the_reason(monkeypatch, fresh_build, vitime_fixture_forecaster):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(fresh_build))  # no cc, gcc or clang there
    assert cpu_kernel.active() is None
    assert cpu_kernel.status() == "torch ops (no compiled kernel: no C compiler found ($CC, cc, gcc, clang))"
    fc = vitime_fixture_forecaster
    series = np.sin(np.arange(240) / 4.0)
    with AttentionRollout(fc.model).capture(grid=fc.grid(240, HORIZON), strategy="single") as cap:
        fc.predict(series, HORIZON)
    for layer in cap.layer_names:  # torch ops computed the maps
        rows = cap.time_maps[layer].sum(-1) + cap.prefix_mass[layer]
        torch.testing.assert_close(rows, torch.ones_like(rows), atol=1e-5, rtol=0)


def test_failing_compiler_falls_back_with_its_message(monkeypatch, fresh_build):
    fake = fresh_build / "fakecc"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo fakecc 1.0; exit 0; }\necho 'fakecc: cannot build' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CC", str(fake))
    assert cpu_kernel.active() is None
    assert cpu_kernel.status() == "torch ops (no compiled kernel: fakecc exited with 3: fakecc: cannot build)"
    assert not [p for p in (fresh_build / "cache" / "kernels").iterdir()], "a failed build left files behind"


def test_failing_self_check_disables_the_kernel(monkeypatch, fresh_build):
    monkeypatch.setattr(cpu_kernel, "CHECK_ATOL", -1.0)
    try:
        cpu_kernel._compiler()
    except cpu_kernel._NoKernel as exc:
        pytest.skip(str(exc))
    assert cpu_kernel.active() is None
    assert "its self-check failed: " in cpu_kernel.status() and "differ from torch by" in cpu_kernel.status()


def test_built_once_then_taken_from_the_cache(kernel, fresh_build):
    assert cpu_kernel.active() is not None
    built = list((fresh_build / "cache" / "kernels").glob("softmax_columns-*.so"))
    assert len(built) == 1
    stamp = os.stat(built[0]).st_mtime_ns
    cpu_kernel._build_once.cache_clear()
    assert cpu_kernel.active() is not None
    assert os.stat(built[0]).st_mtime_ns == stamp
    assert str(built[0]) in cpu_kernel.status()


def test_damaged_cached_library_is_built_again(kernel, fresh_build):
    """A cached file cut short (a crash, a full disk) is replaced by a good build, not trusted
    and not left to disable the kernel for good."""
    compiler = cpu_kernel._compiler()
    flags = (*cpu_kernel._COMMON_FLAGS, *cpu_kernel._arch_flags())
    folder = fresh_build / "cache" / "kernels"
    folder.mkdir(parents=True)
    target = folder / f"softmax_columns-{cpu_kernel._build_key(compiler, flags)}.so"
    target.write_bytes(b"\x7fELF cut short")
    assert cpu_kernel.active() is not None
    assert cpu_kernel.status() == f"compiled kernel ({target})"
    assert target.stat().st_size > 1000
    assert [p.name for p in folder.iterdir()] == [target.name]


def test_unwritable_cache_uses_a_private_temp_folder(kernel, monkeypatch, fresh_build):
    blocker = fresh_build / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(cpu_kernel.ENV_CACHE, str(blocker / "sub"))  # mkdir fails under a file
    monkeypatch.setattr(tempfile, "tempdir", str(fresh_build))
    assert cpu_kernel.active() is not None
    private = fresh_build / f"attnviz-kernels-{os.getuid()}"
    assert str(private) in cpu_kernel.status()
    assert private.stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no POSIX owners on this platform")
def test_shared_temp_folder_is_refused(kernel, monkeypatch, fresh_build):
    """A temp folder anyone can write to could hold a planted library: nothing is loaded from it."""
    blocker = fresh_build / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(cpu_kernel.ENV_CACHE, str(blocker / "sub"))
    monkeypatch.setattr(tempfile, "tempdir", str(fresh_build))
    shared = fresh_build / f"attnviz-kernels-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)
    assert cpu_kernel.active() is None
    assert f"{shared} is not private to this user" in cpu_kernel.status()
