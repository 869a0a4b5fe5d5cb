"""Test signals for attention probing, and a safe parser for user-typed signal expressions.

Builders (``n = 0 .. length-1`` is the sample index):

* :func:`harmonics` -- a sum of sine/cosine terms given as :class:`Harmonic` tuples.
* :func:`three_harmonics` -- the seed signal ``sin(n/10) + sin(n/5 + 50) + cos(n + 50)``
  (periods 20*pi = 62.83, 10*pi = 31.42 and 2*pi = 6.28 samples).
* :func:`two_harmonics` -- the same without ``sin(n/10)`` (fundamental 31.42 samples).
* :func:`sinusoid` -- one sine with a period in samples.
* :func:`add_noise` -- white Gaussian noise at a given SNR in dB, reproducible from a seed.

Expressions: :func:`parse_expression` turns a string such as ``"sin(2*pi*n/57) + 0.1*cos(n/3)"``
into a function of ``n``.  The string is parsed with :mod:`ast` and the tree is checked node by
node against a small whitelist, then turned into nested Python closures over numpy functions;
nothing the user typed is ever handed to ``eval``/``exec``/``compile``.  Allowed: numeric
literals, the names ``n``, ``pi``, ``e``, the operators ``+ - * / ** %``, unary ``+``/``-``,
parentheses, and positional calls of the element-wise functions in :data:`ALLOWED_FUNCTIONS`.
Anything else raises ``ValueError`` with a one-line message naming the offending piece.
"""

from __future__ import annotations

import ast
import math
import numbers
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np

__all__ = [
    "ALLOWED_FUNCTIONS",
    "ALLOWED_NAMES",
    "Harmonic",
    "ParsedExpression",
    "THREE_HARMONICS_PERIODS",
    "TWO_HARMONICS_PERIODS",
    "add_noise",
    "evaluate_expression",
    "expression_cost",
    "harmonics",
    "parse_expression",
    "sinusoid",
    "three_harmonics",
    "two_harmonics",
]

MAX_LENGTH = 10_000_000
MAX_EXPRESSION_CHARS = 2000
MAX_ABS_EXPONENT = 100.0
#: elements x array operations one evaluation may cost (~10 s of numpy transcendental work).
MAX_ELEMENT_OPERATIONS = 1_000_000_000
_CALL_ARRAYS = 3  # n itself, the broadcast copy and the finiteness mask of ParsedExpression.__call__

#: Periods (samples) of the terms of :func:`three_harmonics`, fundamental first.
THREE_HARMONICS_PERIODS: tuple[float, float, float] = (20 * math.pi, 10 * math.pi, 2 * math.pi)
#: Periods (samples) of the terms of :func:`two_harmonics`, fundamental first.
TWO_HARMONICS_PERIODS: tuple[float, float] = (10 * math.pi, 2 * math.pi)


# --------------------------------------------------------------------------- builders


def _check_length(length: object, name: str = "length") -> int:
    if isinstance(length, bool) or not isinstance(length, numbers.Integral):
        if (
            isinstance(length, numbers.Real)
            and not isinstance(length, bool)
            and float(length).is_integer()
        ):
            length = int(length)
        else:
            raise ValueError(f"{name} must be a positive integer, got {length!r}")
    length = int(length)
    if not 1 <= length <= MAX_LENGTH:
        raise ValueError(f"{name} must be an integer in [1, {MAX_LENGTH}], got {length}")
    return length


def _check_real(value: object, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


class Harmonic(NamedTuple):
    """One term ``amplitude * kind(omega * n + phase)``; ``omega`` in radians per sample."""

    kind: str  # "sin" or "cos"
    omega: float
    phase: float = 0.0
    amplitude: float = 1.0

    @property
    def period(self) -> float:
        """Period in samples (``2*pi/|omega|``; inf for omega == 0)."""
        return math.inf if self.omega == 0 else 2 * math.pi / abs(self.omega)


def harmonics(length: int, terms: Iterable[Harmonic | Sequence]) -> np.ndarray:
    """Sum of sine/cosine terms over ``n = 0 .. length-1``.

    ``terms``: :class:`Harmonic` or plain tuples ``(kind, omega[, phase[, amplitude]])`` with
    ``kind`` in {"sin", "cos"} and ``omega`` in radians per sample (period = 2*pi/omega).
    """
    length = _check_length(length)
    n = np.arange(length, dtype=np.float64)
    out = np.zeros(length, dtype=np.float64)
    count = 0
    for i, raw in enumerate(terms):
        try:
            term = raw if isinstance(raw, Harmonic) else Harmonic(*raw)
        except TypeError:
            raise ValueError(
                f"terms[{i}] must be (kind, omega[, phase[, amplitude]]), got {raw!r}"
            ) from None
        if term.kind not in ("sin", "cos"):
            raise ValueError(f"terms[{i}].kind must be 'sin' or 'cos', got {term.kind!r}")
        omega = _check_real(term.omega, f"terms[{i}].omega")
        phase = _check_real(term.phase, f"terms[{i}].phase")
        amp = _check_real(term.amplitude, f"terms[{i}].amplitude")
        fn = np.sin if term.kind == "sin" else np.cos
        out += amp * fn(omega * n + phase)
        count += 1
    if count == 0:
        raise ValueError("terms is empty; give at least one (kind, omega, ...) term")
    return out


def _length_alias(length: int, n: int | None) -> int:
    if n is not None:
        if length != 512 and length != n:
            raise ValueError(f"give either length or n, not both (length={length!r}, n={n!r})")
        return n
    return length


def three_harmonics(length: int = 512, *, n: int | None = None) -> np.ndarray:
    """Seed signal ``sin(n/10) + sin(n/5 + 50) + cos(n + 50)`` for ``n = 0 .. length-1``.

    Periods: 62.83 (fundamental), 31.42 and 6.28 samples (:data:`THREE_HARMONICS_PERIODS`).
    ``n=`` is accepted as an alias of ``length``.
    """
    return harmonics(
        _length_alias(length, n),
        [Harmonic("sin", 1 / 10), Harmonic("sin", 1 / 5, 50.0), Harmonic("cos", 1.0, 50.0)],
    )


def two_harmonics(length: int = 512, *, n: int | None = None) -> np.ndarray:
    """``sin(n/5 + 50) + cos(n + 50)``: the seed signal without ``sin(n/10)`` (periods 31.42, 6.28)."""
    return harmonics(
        _length_alias(length, n), [Harmonic("sin", 1 / 5, 50.0), Harmonic("cos", 1.0, 50.0)]
    )


def sinusoid(length: int, period: float, phase: float = 0.0, amplitude: float = 1.0) -> np.ndarray:
    """``amplitude * sin(2*pi*n/period + phase)`` for ``n = 0 .. length-1`` (period in samples)."""
    period = _check_real(period, "period", positive=True)
    return harmonics(length, [Harmonic("sin", 2 * math.pi / period, phase, amplitude)])


def add_noise(x: np.ndarray, snr_db: float, seed: int | None = 0) -> np.ndarray:
    """Return ``x`` plus white Gaussian noise at ``snr_db`` dB (a new array; ``x`` is untouched).

    SNR is taken against the mean power of ``x`` (``mean(x**2)``), so the noise variance is
    ``mean(x**2) / 10**(snr_db/10)``.  The same ``seed`` gives the same noise.
    ``snr_db=inf`` returns a plain copy.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"x must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("x contains NaN or infinite values")
    if isinstance(snr_db, bool) or not isinstance(snr_db, numbers.Real) or math.isnan(snr_db):
        raise ValueError(f"snr_db must be a real number (dB), got {snr_db!r}")
    if snr_db == math.inf:
        return arr.copy()
    if snr_db == -math.inf:
        raise ValueError("snr_db must be > -inf")
    power = float(np.mean(arr**2))
    if power == 0.0:
        raise ValueError("x has zero power; an SNR is undefined for an all-zero signal")
    sigma = math.sqrt(power / 10 ** (float(snr_db) / 10))
    rng = np.random.default_rng(seed)
    return arr + rng.normal(0.0, sigma, size=arr.shape)


# --------------------------------------------------------------------------- expressions

#: Element-wise numpy functions callable by bare name in expressions, with their arity.
ALLOWED_FUNCTIONS: dict[str, tuple[Callable, int]] = {
    "sin": (np.sin, 1),
    "cos": (np.cos, 1),
    "tan": (np.tan, 1),
    "arcsin": (np.arcsin, 1),
    "arccos": (np.arccos, 1),
    "arctan": (np.arctan, 1),
    "arctan2": (np.arctan2, 2),
    "sinh": (np.sinh, 1),
    "cosh": (np.cosh, 1),
    "tanh": (np.tanh, 1),
    "exp": (np.exp, 1),
    "log": (np.log, 1),
    "log2": (np.log2, 1),
    "log10": (np.log10, 1),
    "log1p": (np.log1p, 1),
    "sqrt": (np.sqrt, 1),
    "abs": (np.abs, 1),
    "sign": (np.sign, 1),
    "floor": (np.floor, 1),
    "ceil": (np.ceil, 1),
    "minimum": (np.minimum, 2),
    "maximum": (np.maximum, 2),
    "hypot": (np.hypot, 2),
}

#: Names usable as values: the sample index and two constants.
ALLOWED_NAMES: tuple[str, ...] = ("n", "pi", "e")
_CONSTANTS = {"pi": np.float64(math.pi), "e": np.float64(math.e)}

_BINOPS: dict[type, tuple[str, Callable]] = {
    ast.Add: ("+", np.add),
    ast.Sub: ("-", np.subtract),
    ast.Mult: ("*", np.multiply),
    ast.Div: ("/", np.true_divide),
    ast.Pow: ("**", np.power),
    ast.Mod: ("%", np.mod),
}
_UNARYOPS: dict[type, Callable] = {ast.UAdd: np.positive, ast.USub: np.negative}

_REFUSED_BINOPS = {
    ast.BitXor: "'^' (bitwise xor) is not allowed; use ** for powers",
    ast.FloorDiv: "'//' is not allowed; use floor(a / b)",
    ast.MatMult: "'@' is not allowed",
    ast.LShift: "'<<' is not allowed",
    ast.RShift: "'>>' is not allowed",
    ast.BitAnd: "'&' is not allowed",
    ast.BitOr: "'|' is not allowed",
}

_NODE_WORDS = {
    "Attribute": "attribute access",
    "Subscript": "subscript",
    "Slice": "slice",
    "Lambda": "lambda",
    "ListComp": "list comprehension",
    "SetComp": "set comprehension",
    "DictComp": "dict comprehension",
    "GeneratorExp": "generator expression",
    "Compare": "comparison",
    "BoolOp": "boolean operator",
    "IfExp": "conditional expression",
    "Tuple": "tuple",
    "List": "list",
    "Dict": "dict",
    "Set": "set",
    "JoinedStr": "f-string",
    "FormattedValue": "f-string",
    "NamedExpr": "assignment expression ':='",
    "Starred": "starred argument",
    "Await": "await",
    "Yield": "yield",
    "YieldFrom": "yield",
}

_Fn = Callable[[np.ndarray], np.ndarray]


def _functions_list() -> str:
    return ", ".join(sorted(ALLOWED_FUNCTIONS))


class _Builder:
    """Checks an AST against the whitelist and builds closures ``f(n) -> array``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def _where(self, node: ast.AST) -> str:
        segment = ast.get_source_segment(self.source, node)
        col = getattr(node, "col_offset", None)
        text = f" {segment!r}" if segment else ""
        pos = f" at column {col + 1}" if col is not None else ""
        return f"{text}{pos}"

    def build(self, node: ast.AST) -> tuple[_Fn, bool]:
        """Return (function of n, whether it depends on n)."""
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.UnaryOp):
            op = _UNARYOPS.get(type(node.op))
            if op is None:
                word = "'not'" if isinstance(node.op, ast.Not) else "'~'"
                raise ValueError(
                    f"operator {word} is not allowed in expression:{self._where(node)}"
                )
            inner, dep = self.build(node.operand)
            return (lambda n, _f=inner, _op=op: _op(_f(n))), dep
        if isinstance(node, ast.Call):
            return self._call(node)
        kind = type(node).__name__
        word = _NODE_WORDS.get(kind, kind)
        raise ValueError(f"{word} is not allowed in expression:{self._where(node)}")

    def _constant(self, node: ast.Constant) -> tuple[_Fn, bool]:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            what = {str: "string", bytes: "bytes"}.get(type(value), type(value).__name__)
            if value is None or value is Ellipsis:
                what = repr(value)
            raise ValueError(
                f"{what} literal is not allowed in expression (only real numbers):{self._where(node)}"
            )
        try:
            number = np.float64(float(value))
        except OverflowError:
            raise ValueError(f"numeric literal too large:{self._where(node)}") from None
        if not np.isfinite(number):
            raise ValueError(f"numeric literal is not finite:{self._where(node)}")
        return (lambda n, _v=number: _v), False

    def _name(self, node: ast.Name) -> tuple[_Fn, bool]:
        name = node.id
        if name == "n":
            return (lambda n: n), True
        if name in _CONSTANTS:
            value = _CONSTANTS[name]
            return (lambda n, _v=value: _v), False
        if name in ALLOWED_FUNCTIONS:
            raise ValueError(
                f"function {name!r} must be called, e.g. {name}(n):{self._where(node)}"
            )
        raise ValueError(
            f"unknown name {name!r} in expression:{self._where(node)}; allowed names: "
            f"{', '.join(ALLOWED_NAMES)} and the functions {_functions_list()}"
        )

    def _binop(self, node: ast.BinOp) -> tuple[_Fn, bool]:
        entry = _BINOPS.get(type(node.op))
        if entry is None:
            why = _REFUSED_BINOPS.get(
                type(node.op), f"operator {type(node.op).__name__} is not allowed"
            )
            if why.startswith("'"):
                why = f"operator {why}"
            raise ValueError(f"{why}:{self._where(node)}")
        symbol, op = entry
        left, ldep = self.build(node.left)
        right, rdep = self.build(node.right)
        if isinstance(node.op, ast.Pow) and not rdep:
            with np.errstate(all="ignore"):
                exponent = float(right(np.zeros(1)))
            if not math.isfinite(exponent) or abs(exponent) > MAX_ABS_EXPONENT:
                raise ValueError(
                    f"exponent {exponent:g} is too large (|exponent| must be <= "
                    f"{MAX_ABS_EXPONENT:g}):{self._where(node)}"
                )
        return (lambda n, _l=left, _r=right, _op=op: _op(_l(n), _r(n))), ldep or rdep

    def _call(self, node: ast.Call) -> tuple[_Fn, bool]:
        func = node.func
        if not isinstance(func, ast.Name):
            target = ast.get_source_segment(self.source, func) or type(func).__name__
            raise ValueError(
                f"only bare function names can be called (e.g. sin(n)), got {target!r}:"
                f"{self._where(node)}"
            )
        name = func.id
        if name not in ALLOWED_FUNCTIONS:
            if name in ALLOWED_NAMES:
                raise ValueError(f"{name!r} is not a function:{self._where(node)}")
            raise ValueError(
                f"function {name!r} is not allowed:{self._where(node)}; allowed functions: "
                f"{_functions_list()}"
            )
        if node.keywords:
            kw = node.keywords[0]
            label = f"{kw.arg}=" if kw.arg else "**"
            raise ValueError(
                f"keyword arguments are not allowed ({label!r} in {name}()):{self._where(node)}"
            )
        fn, arity = ALLOWED_FUNCTIONS[name]
        if len(node.args) != arity:
            raise ValueError(
                f"{name}() takes {arity} positional argument{'s' if arity > 1 else ''}, "
                f"got {len(node.args)}:{self._where(node)}"
            )
        built = [self.build(arg) for arg in node.args]  # rejects Starred etc.
        fns = tuple(f for f, _ in built)
        dep = any(d for _, d in built)
        if arity == 1:
            return (lambda n, _fn=fn, _a=fns[0]: _fn(_a(n))), dep
        return (lambda n, _fn=fn, _a=fns[0], _b=fns[1]: _fn(_a(n), _b(n))), dep


def expression_cost(node: ast.AST) -> tuple[bool, int, int]:
    """(depends on n, array operations, arrays alive at the peak) of a checked expression tree.

    Only operations on something that depends on ``n`` touch every element; constant parts are
    scalars.  A binary operation holds its left result while the right side is evaluated, so a
    right-nested chain such as ``sin(n)**(sin(n)**(...))`` keeps one array per level alive.
    """
    if isinstance(node, ast.Name):
        return node.id == "n", 0, 0
    if isinstance(node, ast.Constant):
        return False, 0, 0
    if isinstance(node, ast.UnaryOp):
        children = [node.operand]
    elif isinstance(node, ast.BinOp):
        children = [node.left, node.right]
    elif isinstance(node, ast.Call):
        children = list(node.args)
    else:  # unreachable after _Builder's checks
        raise ValueError(f"{type(node).__name__} is not allowed in expression")
    dep, ops, peak = False, 0, 0
    for held, child in enumerate(children):  # earlier arguments stay alive meanwhile
        d, o, p = expression_cost(child)
        dep, ops, peak = dep or d, ops + o, max(peak, held + p)
    if not dep:
        return False, 0, 0
    return True, ops + 1, max(peak, len(children) + 1)


class ParsedExpression:
    """A checked expression; call it with an array of sample indices ``n``.

    ``operations``: array operations per evaluation; ``peak_arrays``: arrays of len(n) alive at
    once.  A call whose elements x operations or memory would pass the limits is refused before
    any work (``check_cost``).
    """

    def __init__(
        self, source: str, fn: _Fn, depends_on_n: bool, operations: int = 0, peak_arrays: int = 0
    ) -> None:
        self.source = source
        self._fn = fn
        self.depends_on_n = depends_on_n
        self.operations = operations
        self.peak_arrays = peak_arrays

    def check_cost(self, elements: int, max_memory_gb: float | None = None) -> None:
        """One-line ValueError when evaluating at ``elements`` points would be too slow or too big."""
        shown = self.source if len(self.source) <= 60 else self.source[:57] + "..."
        work = elements * self.operations
        if work > MAX_ELEMENT_OPERATIONS:
            raise ValueError(
                f"expression {shown!r} needs {self.operations} array operations on {elements:,} "
                f"samples = {work:.3g} element-operations, above the limit of "
                f"{MAX_ELEMENT_OPERATIONS:.3g}; shorten the expression or the length"
            )
        from .limits import GB, LIMIT_HINT, format_bytes, memory_limit_gb

        need = elements * (self.peak_arrays + _CALL_ARRAYS) * 8
        limit = memory_limit_gb(max_memory_gb)
        if need > limit * GB:
            raise ValueError(
                f"expression {shown!r} keeps up to {self.peak_arrays} arrays of {elements:,} samples "
                f"alive (~{format_bytes(need)}; limit {limit:g} GB; raise it with {LIMIT_HINT}); "
                f"nest less deeply or shorten the length"
            )

    def __call__(self, n: np.ndarray) -> np.ndarray:
        idx = np.asarray(n, dtype=np.float64)
        self.check_cost(int(idx.size))
        with np.errstate(all="ignore"):
            out = np.broadcast_to(np.asarray(self._fn(idx), dtype=np.float64), idx.shape).copy()
        bad = ~np.isfinite(out)
        if bad.any():
            where = np.flatnonzero(bad.ravel())
            shown = ", ".join(f"{v:g}" for v in idx.ravel()[where[:5]])
            more = f" (and {where.size - 5} more)" if where.size > 5 else ""
            raise ValueError(
                f"expression {self.source!r} produced non-finite values at n={shown}{more}"
            )
        return out

    def __repr__(self) -> str:
        return f"ParsedExpression({self.source!r})"


def parse_expression(expr: str) -> ParsedExpression:
    """Check ``expr`` against the whitelist and return a function ``f(n) -> np.ndarray``.

    Raises ValueError (one line, naming the offending piece) for anything outside the grammar
    described in the module docstring; the returned function raises ValueError when the values
    are not finite (overflow, log of a negative number, division by zero ...).
    """
    if not isinstance(expr, str):
        raise ValueError(f"expression must be a string, got {type(expr).__name__}")
    source = expr.strip()
    if not source:
        raise ValueError("expression is empty; give a formula in n, e.g. 'sin(2*pi*n/50)'")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ValueError(
            f"expression is {len(source)} characters long; the limit is {MAX_EXPRESSION_CHARS}"
        )
    if "\n" in source or "\r" in source:
        source = " ".join(source.split())
    try:
        tree = ast.parse(source, mode="eval")  # builds a syntax tree only; nothing is executed
    except SyntaxError as exc:
        col = f" at column {exc.offset}" if exc.offset else ""
        shown = source if len(source) <= 80 else source[:77] + "..."
        raise ValueError(f"invalid expression syntax{col}: {exc.msg} in {shown!r}") from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ValueError(
            f"expression could not be parsed ({type(exc).__name__}): too complex"
        ) from None
    try:
        fn, dep = _Builder(source).build(tree.body)
        _, operations, peak = expression_cost(tree.body)
    except RecursionError:
        raise ValueError("expression is too deeply nested") from None
    return ParsedExpression(source, fn, dep, operations, peak)


def evaluate_expression(expr: str, length: int) -> np.ndarray:
    """Evaluate ``expr`` at ``n = 0 .. length-1`` (see :func:`parse_expression`)."""
    length = _check_length(length)
    return parse_expression(expr)(np.arange(length, dtype=np.float64))
