"""Arithmetic that gives the same bits on every machine: integer networks, and exp and log from IEEE basic operations.

A prediction chooses a symbol's coding distribution, so the encoder and every
decoder must compute it bit for bit alike, whatever the CPU, BLAS, thread count
or device. IEEE 754 defines + - * / and sqrt exactly (correctly rounded); it
does not define libm's exp and log, nor the order in which a BLAS sums. So:

- A network runs on integers (`Layer`): its inputs and activations are fixed
  point, integers in units of 2**-FRACTION, clipped to LIMIT units; its weights
  and biases are integers, with a power-of-two `shift` per layer. A layer's sums
  are rounded back to fixed point by one defined rule (half up). The products go
  through BLAS as float64 all the same: every operand and every partial sum is an
  integer below 2**53 (each layer's shift is chosen, when it is quantised, so that
  the largest possible sum stays below EXACT), so any order of summation, with
  FMA or without, gives the exact integer. `reference()` computes them in int64
  instead (numpy's integer products use no BLAS), for the tests.
- `exp` and `log` are polynomials of basic operations in a fixed order, accurate
  to a few units in the last place: what a prediction sees, and the decoded
  values of scale variables, are the same everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

FRACTION = 20  # fixed point: integers in units of 2**-20
LIMIT = 2.0**12  # features and activations are clipped to +-LIMIT units: |fixed| <= 2**32
LARGEST = LIMIT * 2.0**FRACTION
EXACT = 2.0**52  # every sum of a layer stays below this (float64 holds integers exactly to 2**53)
FINEST = 24  # a layer's weights are integers in units of at most 2**-24
SLOPE_BITS = 24  # a leaky ReLU's slope, in units of 2**-24

_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # fdlibm's split of log(2): n * _LN2_HI is exact
_LOG2E = 1.4426950408889634
_SQRT_HALF = 0.7071067811865476


def to_fixed(x: np.ndarray) -> np.ndarray:
    """Real values -> fixed point (float64 integers), NaN as 0 and clipped to +-LIMIT; np.rint rounds half to even."""
    return np.rint(np.clip(np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0), -LIMIT, LIMIT) * 2.0**FRACTION)


def from_fixed(x: np.ndarray) -> np.ndarray:
    """Fixed point -> real values (exact: a power-of-two scaling)."""
    return x * 2.0**-FRACTION


def _blas(matrix: np.ndarray, x: np.ndarray) -> np.ndarray:
    return matrix.T @ x


def _int64(matrix: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (matrix.astype(np.int64).T @ x.astype(np.int64)).astype(np.float64)


_product = _blas


@contextlib.contextmanager
def reference() -> Iterator[None]:
    """Within: every layer's products in int64, no BLAS (the plain implementation the tests hold the fast one to)."""
    global _product
    _product = _int64
    try:
        yield
    finally:
        _product = _blas


def round_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """Integers `x` divided by 2**shift, rounded half up: exact for |x| < EXACT."""
    if shift <= 0:
        return x * 2.0**-shift
    return np.floor((x + 2.0 ** (shift - 1)) * 2.0**-shift)


@dataclass
class Layer:
    """One affine layer on fixed point: out = round((x @ matrix + bias) / 2**shift), integers throughout."""

    matrix: np.ndarray  # (inputs x outputs) integers, as float64: weights in units of 2**-shift
    bias: np.ndarray  # (outputs,) integers: biases in units of 2**-(FRACTION + shift)
    shift: int

    @classmethod
    def of(cls, matrix: np.ndarray, bias: np.ndarray, largest: float = LARGEST) -> Layer:
        """A real layer (x @ matrix + bias) on inputs of at most `largest` (fixed point), at the finest shift whose
        largest possible sum stays below EXACT."""
        matrix, bias = np.asarray(matrix, dtype=np.float64), np.asarray(bias, dtype=np.float64)
        for shift in range(FINEST, -64, -1):
            weights, offsets = np.rint(matrix * 2.0**shift), np.rint(bias * 2.0 ** (FRACTION + shift))
            if float((np.abs(weights).sum(axis=0) * largest + np.abs(offsets)).max(initial=0.0)) + 2.0**shift < EXACT:
                return cls(weights, offsets, shift)
        raise ValueError("a layer whose weights are too large for the integer arithmetic")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Fixed-point inputs (inputs x jets) -> fixed-point outputs (outputs x jets)."""
        sums = _product(self.matrix, x)
        sums += self.bias[:, None]
        return round_shift(sums, self.shift)


def forward(layers: list[Layer], x: np.ndarray, activation: str) -> np.ndarray:
    """A network of integer layers (`activation` after each but the last) on fixed-point inputs (inputs x jets)."""
    for layer in layers[:-1]:
        x = activate(layer(x), activation)
    return layers[-1](x)


def activate(h: np.ndarray, kind: str) -> np.ndarray:
    """An activation on fixed point, clipped to +-LIMIT units (what the next layer's shift was chosen for)."""
    if kind == "relu":
        out = np.maximum(h, 0.0)
    elif kind == "leaky_relu":
        slope = np.rint(0.01 * 2.0**SLOPE_BITS)  # torch's default slope
        out = np.where(h > 0, h, round_shift(np.clip(h, -LARGEST, 0.0) * slope, SLOPE_BITS))
    elif kind == "tanh":
        out = to_fixed(tanh(from_fixed(h)))
    else:
        raise ValueError(f"no integer form of the activation {kind!r}")
    return np.clip(out, -LARGEST, LARGEST)


def _polynomial(x: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """Horner's rule, highest coefficient first: one fixed order of multiplications and additions."""
    out = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        out = out * x + c
    return out


_EXP = tuple(1.0 / float(np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(13, -1, -1))  # Taylor, 1/13! .. 1


def exp(x: np.ndarray) -> np.ndarray:
    """e**x from basic operations: x = n log 2 + r with |r| <= log(2)/2, e**r by its Taylor polynomial, then scaled by
    2**n exactly. Accurate to about 2 ulp; +inf above 709.79, 0 below -745, NaN for NaN."""
    x = np.asarray(x, dtype=np.float64)
    clipped = np.clip(np.nan_to_num(x, nan=0.0), -746.0, 710.0)
    n = np.rint(clipped * _LOG2E)
    r = (clipped - n * _LN2_HI) - n * _LN2_LO
    half = np.floor(n / 2)  # 2**n in two steps: the first stays normal, the second overflows or underflows as e**x does
    with np.errstate(over="ignore"):
        out = np.ldexp(np.ldexp(_polynomial(r, _EXP), half.astype(np.int64)), (n - half).astype(np.int64))
    return np.where(np.isnan(x), np.nan, out)


def log(x: np.ndarray) -> np.ndarray:
    """Natural log from basic operations: x = m 2**e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh((m-1)/(m+1)) by its
    series. Accurate to about 2 ulp for positive finite x; -inf at 0, NaN below, +inf at +inf."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x) & (x > 0)
    m, e = np.frexp(np.where(finite, x, 1.0))
    low = m < _SQRT_HALF
    m = np.where(low, m * 2.0, m)
    e = (e - low).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)
    series = s * _polynomial(s * s, tuple(1.0 / k for k in range(23, 0, -2)))  # s + s**3/3 + ... + s**23/23
    out = e * _LN2_HI + (2.0 * series + e * _LN2_LO)
    out = np.where(x == 0, -np.inf, out)
    out = np.where(np.isposinf(x), np.inf, out)
    return np.where(finite | (x == 0) | np.isposinf(x), out, np.nan)


def tanh(x: np.ndarray) -> np.ndarray:
    """tanh from `exp`: 1 - 2 / (e**2x + 1), its sign restored (odd), saturating to +-1."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    return np.sign(x) * (1.0 - 2.0 / (exp(2.0 * np.minimum(a, 40.0)) + 1.0))


def layers_state(layers: list[Layer], prefix: str) -> tuple[list[int], dict[str, np.ndarray]]:
    """(shifts, named int64 arrays) of integer layers, for a compressor's state."""
    arrays = {}
    for j, layer in enumerate(layers):
        arrays[f"{prefix}/{j}/matrix"] = layer.matrix.astype(np.int64)
        arrays[f"{prefix}/{j}/bias"] = layer.bias.astype(np.int64)
    return [layer.shift for layer in layers], arrays


def layers_from_state(shifts: list[int], arrays: dict[str, np.ndarray], prefix: str) -> list[Layer]:
    """The integer layers `layers_state` described."""
    return [
        Layer(arrays[f"{prefix}/{j}/matrix"].astype(np.float64), arrays[f"{prefix}/{j}/bias"].astype(np.float64), int(shift))
        for j, shift in enumerate(shifts)
    ]
