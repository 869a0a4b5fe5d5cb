"""Signal builders and the safe expression parser."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnviz import signals
from attnviz.signals import (
    THREE_HARMONICS_PERIODS,
    Harmonic,
    add_noise,
    evaluate_expression,
    harmonics,
    parse_expression,
    sinusoid,
    three_harmonics,
    two_harmonics,
)

N = np.arange(512, dtype=float)


def _dominant_period(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x - x.mean()))
    freqs = np.fft.rfftfreq(x.size)
    k = int(np.argmax(spec[1:])) + 1
    return 1.0 / freqs[k]


# ----------------------------------------------------------------- builders


def test_three_harmonics_matches_formula():
    x = three_harmonics()
    assert x.shape == (512,) and x.dtype == np.float64
    np.testing.assert_allclose(x, np.sin(N / 10) + np.sin(N / 5 + 50) + np.cos(N + 50), atol=1e-12)
    assert x[0] == pytest.approx(math.sin(50) + math.cos(50))
    assert three_harmonics(n=100).shape == (100,)
    np.testing.assert_array_equal(three_harmonics(100), three_harmonics(n=100))


def test_two_harmonics_is_three_minus_fundamental():
    np.testing.assert_allclose(
        two_harmonics(300), three_harmonics(300) - np.sin(np.arange(300) / 10), atol=1e-12
    )


def test_known_periods():
    assert THREE_HARMONICS_PERIODS[0] == pytest.approx(62.83, abs=0.01)
    x = three_harmonics(4096)
    spec_period = _dominant_period(sinusoid(4096, 62.8))
    assert spec_period == pytest.approx(62.8, rel=0.02)
    assert Harmonic("sin", 0.1).period == pytest.approx(20 * math.pi)
    # three_harmonics has spectral peaks at all three periods
    spec = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(x.size)
    top3 = sorted(1 / freqs[np.argsort(spec[1:])[-3:] + 1])
    np.testing.assert_allclose(top3, sorted(THREE_HARMONICS_PERIODS), rtol=0.02)


def test_sinusoid_values():
    x = sinusoid(100, period=20, phase=0.0, amplitude=2.0)
    assert x[0] == pytest.approx(0.0)
    assert x[5] == pytest.approx(2.0)
    np.testing.assert_allclose(x[:80], x[20:], atol=1e-12)
    assert sinusoid(4, 4, phase=math.pi / 2)[0] == pytest.approx(1.0)


def test_harmonics_tuples_and_errors():
    x = harmonics(50, [("cos", 0.5, 0.0, 3.0), Harmonic("sin", 0.2)])
    np.testing.assert_allclose(x, 3 * np.cos(0.5 * np.arange(50)) + np.sin(0.2 * np.arange(50)))
    with pytest.raises(ValueError, match="kind must be 'sin' or 'cos'"):
        harmonics(10, [("tan", 1.0)])
    with pytest.raises(ValueError, match="terms is empty"):
        harmonics(10, [])
    with pytest.raises(ValueError, match="omega must be a finite"):
        harmonics(10, [("sin", float("nan"))])
    for bad in (0, -3, 2.5, "10", True):
        with pytest.raises(ValueError, match="length must be"):
            harmonics(bad, [("sin", 1.0)])
    with pytest.raises(ValueError, match="period must be > 0"):
        sinusoid(10, 0)


def test_add_noise_snr_and_reproducible():
    x = sinusoid(20000, 50)
    y = add_noise(x, 10.0, seed=3)
    snr = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
    assert snr == pytest.approx(10.0, abs=0.2)
    np.testing.assert_array_equal(y, add_noise(x, 10.0, seed=3))
    assert not np.array_equal(y, add_noise(x, 10.0, seed=4))
    np.testing.assert_array_equal(x, sinusoid(20000, 50))  # input untouched
    np.testing.assert_array_equal(add_noise(x, math.inf), x)
    with pytest.raises(ValueError, match="zero power"):
        add_noise(np.zeros(5), 10)
    with pytest.raises(ValueError, match="snr_db"):
        add_noise(x, float("nan"))
    with pytest.raises(ValueError, match="1-D"):
        add_noise(np.zeros((2, 2)), 10)


# ----------------------------------------------------------------- expressions


def test_evaluate_example_expression():
    x = evaluate_expression("sin(2*pi*n/57) + 0.1*cos(n/3)", 512)
    np.testing.assert_allclose(x, np.sin(2 * np.pi * N / 57) + 0.1 * np.cos(N / 3), atol=1e-12)
    assert _dominant_period(evaluate_expression("sin(2*pi*n/57)", 57 * 40)) == pytest.approx(
        57, rel=0.01
    )


def test_seed_signal_as_expression():
    np.testing.assert_allclose(
        evaluate_expression("sin(n/10)+sin(n/5+50)+cos(n+50)", 512),
        three_harmonics(512),
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("3", np.full(6, 3.0)),
        ("n", np.arange(6.0)),
        ("-n**2", -(np.arange(6.0) ** 2)),
        ("-2**2", np.full(6, -4.0)),
        ("(n + 1) * 2 - 1 / 2", (np.arange(6.0) + 1) * 2 - 0.5),
        ("n % 4", np.arange(6.0) % 4),
        ("+n - -1", np.arange(6.0) + 1),
        ("e ** 1 + pi", np.full(6, math.e + math.pi)),
        ("abs(n - 3) + sign(n - 2)", np.abs(np.arange(6.0) - 3) + np.sign(np.arange(6.0) - 2)),
        (
            "minimum(n, 2) + maximum(n, 4)",
            np.minimum(np.arange(6.0), 2) + np.maximum(np.arange(6.0), 4),
        ),
        ("floor(n / 4) + ceil(n / 4)", np.floor(np.arange(6.0) / 4) + np.ceil(np.arange(6.0) / 4)),
        (
            "sqrt(n) + log1p(n) + exp(-n) + tanh(n) + arctan(n)",
            np.sqrt(np.arange(6.0))
            + np.log1p(np.arange(6.0))
            + np.exp(-np.arange(6.0))
            + np.tanh(np.arange(6.0))
            + np.arctan(np.arange(6.0)),
        ),
        ("log(n + 1) + tan(n / 10)", np.log(np.arange(6.0) + 1) + np.tan(np.arange(6.0) / 10)),
        ("2 ** (n / 2)", 2 ** (np.arange(6.0) / 2)),
        ("1e-3 * n", 1e-3 * np.arange(6.0)),
    ],
)
def test_expression_values(expr, expected):
    np.testing.assert_allclose(evaluate_expression(expr, 6), expected, atol=1e-12)


def test_parse_returns_reusable_callable():
    f = parse_expression("sin(n)")
    np.testing.assert_allclose(f(np.array([0.0, np.pi / 2])), [0.0, 1.0], atol=1e-12)
    assert f(np.arange(3)).shape == (3,)
    assert f.depends_on_n and not parse_expression("2*pi").depends_on_n
    assert parse_expression("  n + 1\n").source == "n + 1"


@pytest.mark.parametrize(
    "expr, fragment",
    [
        ("np.sin(n)", "np.sin"),
        ("n.real", "attribute access"),
        ("().__class__", "attribute access"),
        ("(1).__class__.__bases__", "attribute access"),
        ("n[0]", "subscript"),
        ("n[1:3]", "subscript"),
        ("lambda: 1", "lambda"),
        ("(lambda n: n)(n)", "only bare function names"),
        ("[i for i in n]", "list comprehension"),
        ("sum(i for i in n)", "function 'sum'"),
        ("{i: 1 for i in n}", "dict comprehension"),
        ("{1, 2}", "set"),
        ("(1, 2)", "tuple"),
        ("[n]", "list"),
        ("sin(x=n)", "keyword arguments"),
        ("sin(**{'x': n})", "keyword arguments"),
        ("sin(*[n])", "starred"),
        ("'abc'", "string literal"),
        ("b'abc'", "bytes literal"),
        ("f'{n}'", "f-string"),
        ("n + 'a'", "string literal"),
        ("__import__('os')", "function '__import__' is not allowed"),
        ("__import__", "unknown name '__import__'"),
        ("eval('1')", "function 'eval' is not allowed"),
        ("exec('1')", "function 'exec' is not allowed"),
        ("open('/etc/passwd')", "function 'open' is not allowed"),
        ("getattr(n, 'x')", "function 'getattr' is not allowed"),
        ("where(n, 1, 2)", "function 'where' is not allowed"),
        ("x + 1", "unknown name 'x'"),
        ("np", "unknown name 'np'"),
        ("True", "bool literal"),
        ("None", "None literal"),
        ("1j", "complex literal"),
        ("n if n else 1", "conditional expression"),
        ("n < 3", "comparison"),
        ("n and 1", "boolean operator"),
        ("not n", "'not'"),
        ("~n", "'~'"),
        ("n ^ 2", "'^'"),
        ("n // 2", "'//'"),
        ("n @ n", "'@'"),
        ("n << 2", "'<<'"),
        ("n & 1", "'&'"),
        ("(y := 3)", "assignment expression"),
        ("sin", "must be called"),
        ("n(2)", "'n' is not a function"),
        ("sin(n, n)", "sin() takes 1 positional argument, got 2"),
        ("minimum(n)", "minimum() takes 2 positional arguments, got 1"),
        ("2 ** 1000", "exponent 1000 is too large"),
        ("n ** -101", "exponent -101 is too large"),
        ("9 ** 9 ** 9", "exponent 3.8742e+08 is too large"),
        ("n ** (50 * 3)", "exponent 150 is too large"),
        ("1e400", "not finite"),
        ("", "expression is empty"),
        ("   ", "expression is empty"),
        ("1 +", "invalid expression syntax"),
        ("sin(n", "invalid expression syntax"),
        ("x = 1", "invalid expression syntax"),
        ("import os", "invalid expression syntax"),
        ("n; n", "invalid expression syntax"),
        ("(" * 300 + "1" + ")" * 300, "invalid expression syntax"),
        ("-" * 1500 + "1", "too deeply nested"),
        ("n + " * 600 + "n", "characters long"),
    ],
)
def test_unsafe_or_invalid_rejected(expr, fragment):
    with pytest.raises(ValueError) as info:
        parse_expression(expr)
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message


def test_non_string_rejected():
    with pytest.raises(ValueError, match="must be a string"):
        parse_expression(42)


@pytest.mark.parametrize(
    "expr, where",
    [
        ("1 / n", "n=0"),
        ("log(n - 3)", "n=0, 1, 2"),
        ("exp(n)", "n=710"),
        ("n % 0", "n=0"),
        ("sqrt(n - 10)", "n=0"),
        ("10 ** n", "n=309"),
    ],
)
def test_non_finite_results_rejected(expr, where):
    with pytest.raises(ValueError, match="non-finite values at " + where):
        evaluate_expression(expr, 1000)


def test_parser_never_calls_eval(monkeypatch):
    import builtins

    def boom(*_args, **_kwargs):
        raise AssertionError("eval/exec/compile of user code")

    monkeypatch.setattr(builtins, "eval", boom)
    monkeypatch.setattr(builtins, "exec", boom)
    # ast.parse uses compile() internally with PyCF_ONLY_AST; only that flag may reach it
    real_compile = builtins.compile

    def ast_only(source, filename, mode, flags=0, *args, **kwargs):
        assert flags & __import__("ast").PyCF_ONLY_AST, "compile() called to build code"
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "compile", ast_only)
    np.testing.assert_allclose(evaluate_expression("sin(n) + 1", 3), np.sin(np.arange(3.0)) + 1)


def test_length_checked():
    with pytest.raises(ValueError, match="length must be"):
        evaluate_expression("n", 0)
    with pytest.raises(ValueError, match="length must be"):
        evaluate_expression("n", signals.MAX_LENGTH + 1)
