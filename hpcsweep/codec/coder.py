"""The learned error-bounded compressor: predict each variable from the ones already decoded, code the rest.

The scheme of SZ with learned parts. Every value is quantised on a fixed grid
in its coding space: log(x) in steps of 2 log(1 + bound) for scale variables
(so every decoded value is within `bound` relatively), x in steps of 2 bound
for angles and other signed variables (absolutely), and discrete variables
losslessly by their index in the table of training values. Exact zeros of
scale variables are a symbol of their own; anything else off the grid (a
negative or non-finite value, a discrete value never seen, a bin outside the
coded range) is an escape, stored exactly as float64.

The grid does not depend on the prediction, so a decoded value never depends
on how well it was predicted; the prediction only sets how many bits its
symbol takes. Encoder and decoder go variable by variable. A variable is
coded either on its own (a categorical over its bins) or, when that takes
fewer bits on held-out jets, by a small MLP that predicts its bin (mean) and a
scale class from the decoded values of the variables before it (and, where a
four-momentum is declared, the energy it implies; and side features both ends
know, such as what an autoencoder's quantised latents decode to). A linear map
of the same features is added to the MLP's outputs, so that exact linear
relations (in log or linear space) need no approximation. The residual bin is
range-coded (`constriction`) with the categorical of its scale class, both
learned on the training jets.

Predictions run in integer arithmetic (`exact`): the features are fixed-point
numbers computed from the decoded bins by IEEE basic operations (and `exact`'s
exp and log, made of them), and the networks are integer layers, so the encoder
and every decoder agree bit for bit on every machine, BLAS, thread count and
device; so do the decoded values. Every chunk still carries a checksum of its
decoded bins: damage is refused, never silently decoded.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcsweep.codec import exact
from hpcsweep.codec.exact import Layer, forward, layers_from_state, layers_state, round_shift

if TYPE_CHECKING:
    import constriction

SAFETY = 0.999  # grid steps are shrunk by this, so float32 rounding of a decoded value stays within the bound
ZERO, ESCAPE, FIRST = 0, 1, 2  # symbols: an exact zero, an escape, then the bins
MAX_ALPHABET = 4096
LARGEST_BIN = 2.0**40  # bins (and predictions) beyond this are escapes
BLOCK = 8192  # jets per block of a predictor's evaluation
LARGEST_PREDICTION = 2.0**50  # a predicted bin mean (fixed point) is clipped here, so rounding it stays exact
ARITHMETIC = "integer"  # how predictions are computed: a compressor's state says, so one of an older hpcsweep is known


class OlderCompressor(ValueError):
    """A compressor's state of an older hpcsweep, whose predictions were floating point: not exact on every machine."""


@dataclass
class Column:
    """How one variable is coded: its kind, grid step, and (discrete) its table of values."""

    name: str
    kind: str  # 'relative' (log grid), 'absolute' (linear grid) or 'discrete' (table index)
    step: float = 1.0
    table: np.ndarray | None = None

    def bins(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bin of every value, and its symbol class: FIRST (a bin), ZERO or ESCAPE."""
        values = np.asarray(values, dtype=np.float64)
        status = np.full(len(values), FIRST, dtype=np.int8)
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.kind == "discrete":
                assert self.table is not None, "a discrete column has its table of values"
                k = np.clip(np.searchsorted(self.table, values), 0, len(self.table) - 1)
                status[self.table[k] != values] = ESCAPE
            elif self.kind == "relative":
                status[values == 0] = ZERO
                status[~(values > 0) & (values != 0)] = ESCAPE  # negative or NaN
                k = np.round(np.log(np.where(values > 0, values, 1.0)) / self.step)
            else:
                k = np.round(np.where(np.isfinite(values), values, 0.0) / self.step)
        status[~np.isfinite(values)] = ESCAPE
        if self.kind != "discrete":
            status[np.abs(k) > LARGEST_BIN] = ESCAPE
        return np.where(status == FIRST, k, 0).astype(np.int64), status

    def values(self, k: np.ndarray) -> np.ndarray:
        """Decoded values of bins `k` (the same bits on every machine: `exact.exp`)."""
        if self.kind == "discrete":
            assert self.table is not None, "a discrete column has its table of values"
            return self.table[k]
        if self.kind == "relative":
            return exact.exp(k * self.step)
        return k * self.step

    def coding(self, k: np.ndarray) -> np.ndarray:
        """The coding-space value of bins `k`: log of the value for a relative column, the value otherwise."""
        if self.kind == "discrete":
            assert self.table is not None, "a discrete column has its table of values"
            return self.table[k]
        return k * self.step

    def feature(self, escaped: np.ndarray) -> np.ndarray:
        """The coding-space value of escaped values (0 where it has none: a negative value of a relative column,
        a non-finite one)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            value = exact.log(escaped) if self.kind == "relative" else escaped
        return np.where(np.isfinite(value), value, 0.0)


@dataclass
class Predictor:
    """An MLP plus a linear map on integers (`exact`): fixed-point features of the decoded variables before this one ->
    (bin mean, log-scale), fixed point -> (bin, scale class)."""

    layers: list[Layer]  # the MLP's: ReLU after each but the last, whose two outputs are the bin mean and the log-scale
    skip: Layer  # the linear map of the same features, added to the MLP's outputs
    scale_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))  # classes - 1 edges of the log-scale, fixed point

    @classmethod
    def of(cls, weights: list[np.ndarray], skip: np.ndarray) -> Predictor:
        """A real MLP (matrices in x out and biases, alternating; outputs in bins) and linear map (features x 2), in
        integers; its scale edges are set by its fitting."""
        layers = [Layer.of(w, b) for w, b in zip(weights[0::2], weights[1::2], strict=True)]
        return cls(layers, Layer.of(skip, np.zeros(skip.shape[1])))

    def __call__(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The predicted bin and scale class of every jet, from fixed-point features laid out (features x jets)."""
        out = self.outputs(features)
        mean = round_shift(np.clip(out[0], -LARGEST_PREDICTION, LARGEST_PREDICTION), exact.FRACTION)
        return mean.astype(np.int64), np.searchsorted(self.scale_edges, out[1]).astype(np.int64)

    def outputs(self, features: np.ndarray) -> np.ndarray:
        """(2 x jets), fixed point: bin mean and log-scale. Jets run along rows' contiguous axis, so no slice is copied;
        blocks of BLOCK jets keep the hidden activations in cache."""
        out = np.empty((2, features.shape[1]))
        for start in range(0, features.shape[1], BLOCK):
            x = features[:, start : start + BLOCK]
            out[:, start : start + BLOCK] = forward(self.layers, x, "relu") + self.skip(x)  # each below 2**52: the sum is exact
        return out


@dataclass
class Codec:
    """A fitted compressor for one variable set at one bound (see the module's docstring)."""

    columns: list[Column]
    bound: float
    centre: np.ndarray  # feature standardisation
    spread: np.ndarray
    energy_of: tuple[int, int, int] | None  # indices of pt, eta, mass, if the set declares them
    side: int = 0  # features every jet brings along, known to both ends (e.g. an AE's reconstruction)
    predictors: list[Predictor | None] = field(default_factory=list)
    offsets: list[np.ndarray] = field(default_factory=list)  # per variable and class: the bin (or residual) of symbol FIRST
    tables: list[np.ndarray] = field(default_factory=list)  # per variable: (classes, alphabet) counts (half-integers: smoothed)

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def side_features(self, values: np.ndarray) -> np.ndarray:
        """Side features from values of every variable (e.g. an AE's output): their coding-space values."""
        return np.stack([column.feature(np.asarray(values[:, i], dtype=np.float64)) for i, column in enumerate(self.columns)], axis=1)

    # --- coding ---------------------------------------------------------------------------------
    def symbols(self, k: np.ndarray, status: np.ndarray, i: int, centre: np.ndarray, cls: np.ndarray) -> np.ndarray:
        """Symbols of variable i: ZERO, ESCAPE, or FIRST + (bin - offset of the class); out of range -> ESCAPE."""
        alphabet = self.tables[i].shape[1]
        symbol = k - centre - self.offsets[i][cls] + FIRST
        symbol = np.where((symbol < FIRST) | (symbol >= alphabet), ESCAPE, symbol)
        return np.where(status == FIRST, symbol, status).astype(np.int32)

    def encode(self, x: np.ndarray, side: np.ndarray | None = None, units: np.ndarray | None = None) -> bytes:
        """One chunk of jets (jets x variables) -> bytes. `x` is in physical units, or in a file's own: its values times
        `units` (per variable) are physical. Escaped values are stored as `x` holds them, so they come back bit for bit."""
        import constriction

        x = np.asarray(x, dtype=np.float64)
        physical = x if units is None else x * units
        n = len(x)
        decoded = Decoded(self, n, side)
        escapes, bins = [], []
        encoder = constriction.stream.queue.RangeEncoder()
        for i, column in enumerate(self.columns):
            k, status = column.bins(physical[:, i])
            centre, cls = self._predict(decoded, i, n)
            symbol = self.symbols(k, status, i, centre, cls)
            self._code(encoder, symbol, cls, i)
            escaped = symbol == ESCAPE
            k = np.where(symbol >= FIRST, k, 0)
            decoded.set(i, k, np.minimum(symbol, FIRST), physical[:, i])
            bins.append(k)
            escapes.append(x[escaped, i])
        words = encoder.get_compressed()
        escape_bytes = np.concatenate(escapes).astype("<f8").tobytes() if escapes else b""
        head = struct.pack("<QQQ", n, len(words), len(escape_bytes)) + _digest(bins, escapes)
        return head + words.astype("<u4").tobytes() + escape_bytes

    def decode(self, data: bytes, side: np.ndarray | None = None, units: np.ndarray | None = None) -> np.ndarray:
        """Bytes of one chunk -> jets (jets x variables) in the units `encode` was given them; damaged bytes raise
        ValueError."""
        try:
            decoded, digest = self._decode(data, side, units)
        except Exception as err:  # garbage symbols fail in many places: out-of-range indices, short streams, ...
            raise ValueError(f"the chunk does not decode ({type(err).__name__}: {err})") from None
        if digest != data[24:40]:
            raise ValueError("decoded bins do not match the checksum written with them")
        return decoded

    def _decode(self, data: bytes, side: np.ndarray | None, units: np.ndarray | None) -> tuple[np.ndarray, bytes]:
        import constriction

        n, n_words, n_escape = struct.unpack_from("<QQQ", data)
        start = 24 + 16
        words = np.frombuffer(data, dtype="<u4", count=n_words, offset=start).astype(np.uint32)
        escape_values = np.frombuffer(data, dtype="<f8", count=n_escape // 8, offset=start + 4 * n_words)
        decoder = constriction.stream.queue.RangeDecoder(words)
        decoded = Decoded(self, n, side)
        out = np.empty((n, len(self.columns)))
        bins, escapes, used = [], [], 0
        for i in range(len(self.columns)):
            centre, cls = self._predict(decoded, i, n)
            symbol = self._decode_symbols(decoder, cls, i, n)
            k = np.where(symbol >= FIRST, symbol - FIRST + centre + self.offsets[i][cls], 0)
            escaped = symbol == ESCAPE
            values = escape_values[used : used + escaped.sum()]
            used += len(values)
            value = np.zeros(n)
            value[escaped] = values if units is None else values * units[i]  # physical, as the encoder saw it
            decoded.set(i, k, np.minimum(symbol, FIRST), value)
            out[:, i] = decoded.values[:, i] if units is None else decoded.values[:, i] / units[i]
            out[escaped, i] = values
            bins.append(k)
            escapes.append(values)
        if used != len(escape_values):
            raise ValueError(f"{len(escape_values) - used} escaped values left over")
        return out, _digest(bins, escapes)

    def _predict(self, decoded: Decoded, i: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        predictor = self.predictors[i]
        if predictor is None:
            return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        return predictor(decoded.features(i))

    def _code(self, encoder: constriction.stream.queue.RangeEncoder, symbol: np.ndarray, cls: np.ndarray, i: int) -> None:
        for c, model in enumerate(self._models(i)):
            chosen = symbol[cls == c]
            if len(chosen):
                encoder.encode(chosen, model)

    def _decode_symbols(self, decoder: constriction.stream.queue.RangeDecoder, cls: np.ndarray, i: int, n: int) -> np.ndarray:
        symbol = np.empty(n, dtype=np.int64)
        for c, model in enumerate(self._models(i)):
            where = cls == c
            count = int(where.sum())
            if count:
                symbol[where] = decoder.decode(model, count)
        return symbol

    def _models(self, i: int) -> list:
        cache = self.__dict__.setdefault("_model_cache", {})
        if i not in cache:
            import constriction

            cache[i] = [constriction.stream.model.Categorical(c / c.sum(), perfect=False) for c in self.tables[i]]
        return cache[i]

    # --- state ----------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON description, named arrays): everything needed to rebuild the codec, for a bundle."""
        meta = {
            "arithmetic": ARITHMETIC,
            "bound": self.bound,
            "energy_of": list(self.energy_of) if self.energy_of else None,
            "side": self.side,
            "columns": [{"name": c.name, "kind": c.kind, "step": c.step} for c in self.columns],
            "predicted": [p is not None for p in self.predictors],
            "shifts": [layers_state(p.layers, "")[0] if p else [] for p in self.predictors],
            "skip": [p.skip.shift if p else 0 for p in self.predictors],
        }
        arrays = {"centre": self.centre, "spread": self.spread}
        for i, column in enumerate(self.columns):
            if column.table is not None:
                arrays[f"table/{i}"] = column.table
            arrays[f"counts/{i}"] = np.rint(2 * self.tables[i]).astype(np.uint32)  # twice the smoothed counts: integers
            arrays[f"offsets/{i}"] = self.offsets[i]
            predictor = self.predictors[i]
            if predictor is not None:
                arrays[f"edges/{i}"] = predictor.scale_edges.astype(np.int64)
                arrays |= layers_state(predictor.layers, f"layers/{i}")[1] | layers_state([predictor.skip], f"skip/{i}")[1]
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Codec:
        """The codec `state` described; ValueError for one of an older hpcsweep (floating-point predictions)."""
        if meta.get("arithmetic") != ARITHMETIC:
            raise OlderCompressor("a compressor of an older hpcsweep, whose predictions were not exact on every machine")
        columns = [Column(c["name"], c["kind"], c["step"], arrays.get(f"table/{i}")) for i, c in enumerate(meta["columns"])]
        predictors = [
            Predictor(
                layers_from_state(shifts, arrays, f"layers/{i}"),
                layers_from_state([skip], arrays, f"skip/{i}")[0],
                arrays[f"edges/{i}"].astype(np.float64),
            )
            if predicted
            else None
            for i, (predicted, shifts, skip) in enumerate(zip(meta["predicted"], meta["shifts"], meta["skip"], strict=True))
        ]
        return cls(
            columns,
            meta["bound"],
            arrays["centre"],
            arrays["spread"],
            tuple(meta["energy_of"]) if meta["energy_of"] else None,
            meta["side"],
            predictors,
            [arrays[f"offsets/{i}"] for i in range(len(columns))],
            [arrays[f"counts/{i}"] / 2.0 for i in range(len(columns))],
        )


class Decoded:
    """The values decoded so far and the fixed-point features they give the predictors, built as they come.

    Rows: log of the energy that pt, eta and mass imply (once they are decoded), the side
    features, then per variable its coding-space value, its value, and whether it is nought: its
    coding value 0 and its value not 1 (a zero, an escape without a coding value, an absolute or
    discrete value of exactly 0: an indicator a ReLU network cannot make itself, worth 2 % of the
    bytes of a well-trained coder); each standardised by the codec's centre and spread, then fixed point.
    Unstandardised (`standardise=False`), they are what a fitting takes the centre and spread of.
    """

    def __init__(self, codec: Codec, n: int, side: np.ndarray | None = None, standardise: bool = True):
        self.codec = codec
        self.standardise = standardise
        self.values = np.zeros((n, len(codec.columns)))
        self.first = 1 + codec.side
        self.table = np.zeros((self.first + 3 * len(codec.columns), n))  # features x jets: a predictor's rows are one block
        if codec.side:
            assert side is not None, "a codec with side features is given them"
            self.table[1 : self.first] = self._scaled(np.asarray(side, dtype=np.float64).T, slice(1, self.first))

    def set(self, i: int, k: np.ndarray, status: np.ndarray, escaped: np.ndarray) -> None:
        """Variable i is decoded: bins `k` where `status` is FIRST, zeros where ZERO, the `escaped` values where ESCAPE.
        Keep its values and fill in its features."""
        codec, column = self.codec, self.codec.columns[i]
        regular, escape = status == FIRST, status == ESCAPE
        values = np.where(regular, column.values(k), np.where(escape, escaped, 0.0))
        self.values[:, i] = values
        coding = np.where(regular, column.coding(k), 0.0)
        if escape.any():  # rare: their coding values (a log) only where they are
            coding[escape] = column.feature(escaped[escape])
        value = np.where(np.isfinite(values), values, 0.0)
        raw = np.stack([coding, value, ((coding == 0) & (value != 1)).astype(np.float64)])
        where = slice(self.first + 3 * i, self.first + 3 * i + 3)
        self.table[where] = self._scaled(raw, where)
        if codec.energy_of is not None and i == max(codec.energy_of):
            self.table[0] = self._scaled(exact.log(np.maximum(_energy(self.values, codec.energy_of), 1e-12))[None], slice(0, 1))

    def _scaled(self, raw: np.ndarray, where: slice) -> np.ndarray:
        """Rows of raw features standardised and in fixed point (IEEE basic operations: the same bits everywhere)."""
        if not self.standardise:
            return raw
        with np.errstate(over="ignore", invalid="ignore"):
            return exact.to_fixed((raw - self.codec.centre[where, None]) / self.codec.spread[where, None])

    def standardised(self) -> None:
        """Raw rows -> standardised fixed point, by the codec's centre and spread (set from the raw rows in fitting)."""
        self.standardise = True
        self.table = self._scaled(self.table, slice(None))

    def features(self, i: int) -> np.ndarray:
        """The features (features x jets) that predict variable i, from variables 0..i-1 only."""
        return self.table[self.span(i)]

    def span(self, i: int) -> slice:
        """The rows of the feature table that predict variable i: the energy once pt, eta and mass are decoded, the side
        features and the variables before it."""
        energy = self.codec.energy_of is not None and max(self.codec.energy_of) < i
        return slice(0 if energy else 1, self.first + 3 * i)


def _energy(decoded: np.ndarray, of: tuple[int, int, int]) -> np.ndarray:
    """The energy of the four-momentum (pt, eta, mass) decoded so far (phi does not change it): sqrt((pt cosh eta)**2 +
    mass**2), by hand rather than by `vector`, with `exact.exp`, so that it is the same bits on every machine."""
    pt, eta, mass = (np.nan_to_num(decoded[:, j], nan=0.0, posinf=0.0, neginf=0.0) for j in of)
    e = exact.exp(np.clip(eta, -20.0, 20.0))
    with np.errstate(over="ignore"):
        return np.sqrt((pt * ((e + 1.0 / e) * 0.5)) ** 2 + mass**2)


def _digest(bins: list[np.ndarray], escapes: list[np.ndarray]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for array in bins:
        h.update(np.ascontiguousarray(array, dtype="<i8").tobytes())
    for array in escapes:
        h.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
    return h.digest()
