"""Capture under a caller's torch.autocast: single-pass (float32 attention) is not faithful to the
fused kernel's lower precision there, so it falls back (chunked keeps the model's own kernel)."""
from __future__ import annotations

import warnings

import pytest
import torch
from timm.layers import Attention

from attnviz.capture import AttentionRollout, CaptureFallbackWarning
from attnviz.capture_strategies import call_blocker, timm_forward_mirrored

AUTOCAST = dict(device_type="cpu", dtype=torch.bfloat16)


class Wrapper(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.attn = Attention(64, num_heads=4, qkv_bias=True)
        self.eval()

    def forward(self, x):
        return self.attn(x)


@pytest.fixture
def model_and_input():
    generator = torch.Generator().manual_seed(1)
    return Wrapper(), torch.randn(2, 800, 64, generator=generator)  # 4 x 800^2 floats a series: above auto's thresholds


def test_call_blocker_names_autocast():
    module = Attention(16, num_heads=2).eval()
    x = torch.randn(1, 5, 16)
    with torch.no_grad():
        assert call_blocker(module, x) is None
        with torch.autocast(**AUTOCAST):
            reason = call_blocker(module, x)
    assert reason is not None and "autocast is on for cpu (bfloat16)" in reason


def test_single_under_autocast_falls_back_and_keeps_the_models_output(model_and_input):
    model, x = model_and_input
    with torch.no_grad(), torch.autocast(**AUTOCAST):
        plain = model(x)
        with pytest.warns(CaptureFallbackWarning, match=r"'attn': single-pass .*autocast is on for cpu.*chunked instead"):
            with AttentionRollout(model).capture(head_fusion="mean", strategy="single") as cap:
                captured = model(x)
    assert cap.strategies == {"attn": "chunked"}
    assert plain.dtype == torch.bfloat16 and torch.equal(captured, plain)  # the fused kernel ran, in bf16


def test_auto_under_autocast_never_picks_single_and_says_nothing(model_and_input):
    model, x = model_and_input
    with torch.no_grad(), torch.autocast(**AUTOCAST):
        plain = model(x)
        with warnings.catch_warnings():
            warnings.simplefilter("error", CaptureFallbackWarning)
            with AttentionRollout(model).capture(head_fusion="mean", strategy="auto") as cap:
                captured = model(x)
    assert cap.strategies == {"attn": "chunked"}  # the fused kernel keeps running
    assert torch.equal(captured, plain)


def test_without_autocast_single_pass_is_still_used(model_and_input):
    model, x = model_and_input
    with torch.no_grad():
        with warnings.catch_warnings():
            warnings.simplefilter("error", CaptureFallbackWarning)
            with AttentionRollout(model).capture(head_fusion="mean", strategy="auto") as cap:
                model(x)
    assert cap.strategies == {"attn": "single"}


def test_the_timm_self_check_is_not_poisoned_by_a_callers_autocast():
    """The self-check is cached per process: run first under autocast it must still pass."""
    timm_forward_mirrored.cache_clear()
    try:
        with torch.autocast(**AUTOCAST):
            assert timm_forward_mirrored()
    finally:
        timm_forward_mirrored.cache_clear()
