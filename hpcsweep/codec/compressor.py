"""A trial's complete compressor: what `hpcsweep compress` writes with, fitted and measured by the trial that ships it.

Two kinds behind one interface (`Compressor.encode(x, bound)` / `.decode(data, bound)`):

- the learned coder alone (model kind `codec`): every variable predicted from
  the ones decoded before it, the residual bins range-coded (`coder.Codec`);
- an autoencoder's: its latents rounded on a grid (`Latents`) and range-coded
  by a coder of their own, then every variable coded as above with what the
  quantised latents decode to, and the latents themselves, as side features
  that both ends know.

The encoder runs in float64 numpy from its stored float32 layers (`Network`,
BatchNorm folded in): only the encoding end runs it, and the latents it gives
are stored. The decoder, whose output both ends must see alike, runs on
integers (`exact`): the same bits on every machine. The grid of every variable
never depends on a prediction, so the bound holds whatever the networks do;
`measure` checks it on every value.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hpcsweep.codec import exact
from hpcsweep.codec.coder import BLOCK, Codec
from hpcsweep.codec.exact import layers_from_state, layers_state
from hpcsweep.codec.fit import DEFAULT_SETTINGS, Settings, columns_for, fit_codec, integer_columns
from hpcsweep.data.normalize import Normaliser

AMORTISED_OVER = 1_000_000  # jets over which the compressor's own bytes are spread in `bytes_per_jet`
LEAKY_SLOPE = 0.01  # torch's LeakyReLU default, as the models train with
_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "leaky_relu": lambda h: np.where(h > 0, h, LEAKY_SLOPE * h),
    "relu": lambda h: np.maximum(h, 0.0),
    "tanh": np.tanh,
}
Layer = dict[str, Any]  # {"kind": "linear" | "activation" | "batchnorm", arrays..., "eps" for batchnorm}


@dataclass
class Network:
    """One half of an autoencoder in float64 numpy, from its stored float32 layers in order: linear (weight out x in,
    bias), activation, batchnorm (weight, bias, mean, var, eps; folded into the linear layer after it)."""

    layers: list[Layer]
    activation: str
    affine: list[tuple[np.ndarray, np.ndarray]] = field(init=False, repr=False)  # folded (in x out matrix, bias) per linear layer

    def __post_init__(self) -> None:
        self.affine = []
        scale: np.ndarray | None = None
        shift: np.ndarray | None = None
        for layer in self.layers:
            if layer["kind"] == "batchnorm":
                scale = np.asarray(layer["weight"], np.float64) / np.sqrt(np.asarray(layer["var"], np.float64) + layer["eps"])
                shift = np.asarray(layer["bias"], np.float64) - np.asarray(layer["mean"], np.float64) * scale
            elif layer["kind"] == "linear":
                matrix, bias = np.asarray(layer["weight"], np.float64).T, np.asarray(layer["bias"], np.float64)
                if scale is not None and shift is not None:
                    matrix, bias = matrix * scale[:, None], bias + shift @ matrix
                    scale = shift = None
                self.affine.append((np.ascontiguousarray(matrix), bias))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(jets x inputs) -> (jets x outputs), block by block (activations stay in cache)."""
        act = _ACTIVATIONS[self.activation]
        out = np.empty((len(x), self.affine[-1][0].shape[1]))
        for start in range(0, len(x), BLOCK):
            h = np.asarray(x[start : start + BLOCK], dtype=np.float64)
            for j, (matrix, bias) in enumerate(self.affine):
                h = h @ matrix + bias
                if j < len(self.affine) - 1:
                    h = act(h)
            out[start : start + BLOCK] = h
        return out

    def state(self, prefix: str) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        meta = [{k: v for k, v in layer.items() if not isinstance(v, np.ndarray)} for layer in self.layers]
        arrays = {f"{prefix}/{j}/{k}": v for j, layer in enumerate(self.layers) for k, v in layer.items() if isinstance(v, np.ndarray)}
        return meta, arrays

    @classmethod
    def from_state(cls, meta: list[dict[str, Any]], arrays: dict[str, np.ndarray], prefix: str, activation: str) -> Network:
        layers = [
            dict(entry) | {k.rsplit("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{prefix}/{j}/")}
            for j, entry in enumerate(meta)
        ]
        return cls(layers, activation)


@dataclass
class Latents:
    """An autoencoder's latents as the compressor makes, rounds and uses them.

    Inputs are clamped to the training range (`low`, `high`) before they are normalised, so
    that any jet (a negative mass, a value far outside) gets latents. What the latents decode
    to, by the decoder on integers (`exact`), is a side feature as it comes out: in the
    normalised space, where the coder's standardisation and linear map take it.
    """

    encoder: Network
    decoder: Network
    normaliser: Normaliser
    kinds: list[str]
    low: np.ndarray
    high: np.ndarray
    step: float = 1.0
    codec: Codec | None = None  # the rounded latents' coder, once fitted
    exact_decoder: list[exact.Layer] = field(default_factory=list)  # the decoder on integers (default: quantised from `decoder`)

    def __post_init__(self) -> None:
        if not self.exact_decoder:
            self.exact_decoder = [exact.Layer.of(matrix, bias) for matrix, bias in self.decoder.affine]

    @classmethod
    def of(cls, encoder: Network, decoder: Network, normaliser: Normaliser, kinds: list[str], x: np.ndarray, step: float) -> Latents:
        """Latents of an autoencoder's halves, their ranges taken from the training jets `x`."""
        return cls(encoder, decoder, normaliser, kinds, x.min(axis=0), x.max(axis=0), step)

    @property
    def width(self) -> int:
        return self.decoder.affine[0][0].shape[0]

    def quantise(self, x: np.ndarray) -> np.ndarray:
        """Jets (physical units) -> their latents rounded on the grid (jets x z integers)."""
        clamped = np.clip(np.nan_to_num(np.asarray(x, np.float64), nan=0.0), self.low, self.high)
        return np.rint(self.encoder(self.normaliser.transform(clamped, np.float64)) / self.step).astype(np.int64)

    def side(self, q: np.ndarray) -> np.ndarray:
        """What rounded latents decode to (normalised, by the decoder on integers) and the latents: both ends' side
        features, the same bits on every machine."""
        out = np.empty((len(q), len(self.kinds)))
        for start in range(0, len(q), BLOCK):
            x = exact.to_fixed(q[start : start + BLOCK].T * self.step)
            out[start : start + BLOCK] = exact.from_fixed(exact.forward(self.exact_decoder, x, self.encoder.activation)).T
        return np.column_stack([out, q.astype(np.float64)])

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        assert self.codec is not None, "fitted first"
        encoder, encoder_arrays = self.encoder.state("encoder")
        decoder, decoder_arrays = self.decoder.state("decoder")
        codec, codec_arrays = self.codec.state()
        shifts, exact_arrays = layers_state(self.exact_decoder, "exact")
        meta = {
            "activation": self.encoder.activation,
            "encoder": encoder,
            "decoder": decoder,
            "exact": shifts,
            "normaliser": self.normaliser.to_dict(),
            "kinds": self.kinds,
            "step": self.step,
            "codec": codec,
        }
        arrays = encoder_arrays | decoder_arrays | exact_arrays | {f"codec/{k}": v for k, v in codec_arrays.items()}
        return meta, arrays | {"low": self.low, "high": self.high}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Latents:
        activation = meta["activation"]
        latents = cls(
            Network.from_state(meta["encoder"], arrays, "encoder", activation),
            Network.from_state(meta["decoder"], arrays, "decoder", activation),
            Normaliser.from_dict(meta["normaliser"]),
            list(meta["kinds"]),
            arrays["low"],
            arrays["high"],
            meta["step"],
            exact_decoder=layers_from_state(meta["exact"], arrays, "exact"),
        )
        latents.codec = Codec.from_state(meta["codec"], _under(arrays, "codec/"))
        return latents


@dataclass
class Compressor:
    """The variables' coder at each bound, and (for an autoencoder) how its latents are made and coded."""

    codecs: dict[float, Codec]
    latents: Latents | None = None

    @property
    def bounds(self) -> list[float]:
        return sorted(self.codecs, reverse=True)

    @property
    def names(self) -> list[str]:
        return next(iter(self.codecs.values())).names

    @property
    def kind(self) -> str:
        """'autoencoder' (latents + coded residuals) or 'codec' (the learned coder alone)."""
        return "codec" if self.latents is None else "autoencoder"

    def only(self, bounds: list[float]) -> Compressor:
        """This compressor with the coders of `bounds` alone (what a bundle of those bounds ships); KeyError for a bound
        it was not fitted at."""
        return Compressor({bound: self.coder(bound) for bound in bounds}, self.latents)

    def coder(self, bound: float) -> Codec:
        """The variables' coder at `bound` (KeyError when the compressor was not fitted at it)."""
        for fitted, codec in self.codecs.items():
            if math.isclose(fitted, bound, rel_tol=1e-9):
                return codec
        raise KeyError(bound)

    def encode(self, x: np.ndarray, bound: float, units: np.ndarray | None = None) -> bytes:
        """Jets (jets x variables; physical units, or a file's own that `units` turn physical) -> bytes: the coded
        latents (none for the coder alone), then the variables."""
        side, latent = None, b""
        if self.latents is not None:
            assert self.latents.codec is not None, "fitted first"
            q = self.latents.quantise(x if units is None else x * units)
            latent = self.latents.codec.encode(q.astype(np.float64))
            side = self.latents.side(q)
        return struct.pack("<Q", len(latent)) + latent + self.coder(bound).encode(x, side, units)

    def decode(self, data: bytes, bound: float, units: np.ndarray | None = None) -> np.ndarray:
        """Bytes of `encode` -> the jets, in the units `encode` was given them; damaged bytes raise ValueError."""
        if len(data) < 8:
            raise ValueError("the chunk is shorter than its header")
        (size,) = struct.unpack_from("<Q", data)
        if size > len(data) - 8:
            raise ValueError("the chunk's latent part runs past its end")
        side = None
        if self.latents is not None:
            assert self.latents.codec is not None, "fitted first"
            q = np.rint(self.latents.codec.decode(data[8 : 8 + size])).astype(np.int64)
            side = self.latents.side(q)
        decoded = self.coder(bound).decode(data[8 + size :], side, units)
        if side is not None and len(side) != len(decoded):
            raise ValueError(f"the chunk holds latents of {len(side)} jets and {len(decoded)} jets")
        return decoded

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON description, named arrays): everything that rebuilds the compressor, for a trial file or a bundle."""
        meta: dict[str, Any] = {"bounds": self.bounds, "codecs": [], "latents": None}
        arrays: dict[str, np.ndarray] = {}
        for i, bound in enumerate(self.bounds):
            codec_meta, codec_arrays = self.codecs[bound].state()
            meta["codecs"].append(codec_meta)
            arrays |= {f"codec/{i}/{k}": v for k, v in codec_arrays.items()}
        if self.latents is not None:
            meta["latents"], latent_arrays = self.latents.state()
            arrays |= {f"latents/{k}": v for k, v in latent_arrays.items()}
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Compressor:
        codecs = {
            float(bound): Codec.from_state(entry, _under(arrays, f"codec/{i}/"))
            for i, (bound, entry) in enumerate(zip(meta["bounds"], meta["codecs"], strict=True))
        }
        latents = Latents.from_state(meta["latents"], _under(arrays, "latents/")) if meta.get("latents") else None
        return cls(codecs, latents)

    def model_bytes(self) -> int:
        """What storing the compressor costs: its description and arrays, zstd-compressed."""
        import zstandard

        meta, arrays = self.state()
        blob = json.dumps(meta, sort_keys=True).encode() + b"".join(np.ascontiguousarray(arrays[k]).tobytes() for k in sorted(arrays))
        return len(zstandard.ZstdCompressor(level=19).compress(blob))


def _under(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}


def fit_compressor(
    names: list[str],
    kinds: list[str],
    x: np.ndarray,
    bounds: list[float],
    energy: tuple[int, int, int] | None = None,
    latents: Latents | None = None,
    settings: Settings = DEFAULT_SETTINGS,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Compressor:
    """A compressor for jets like `x` (training jets, physical units) at each of `bounds`; with `latents`, an autoencoder's
    (its latents' coder is fitted here too). `progress(what)` is told each variable as it is done."""
    x = np.asarray(x, dtype=np.float64)
    side = None
    if latents is not None:
        q = latents.quantise(x)
        latent_names = [f"z{j}" for j in range(q.shape[1])]
        latents.codec = fit_codec(integer_columns(latent_names), q.astype(np.float64), 0.0, settings=settings, seed=seed, progress=progress)
        side = latents.side(q)
    codecs = {
        bound: fit_codec(columns_for(names, kinds, x, bound), x, bound, side, energy, settings, seed, progress) for bound in sorted(bounds)
    }
    return Compressor(codecs, latents)


def measure(compressor: Compressor, x: np.ndarray, bound: float) -> tuple[dict[str, Any], np.ndarray]:
    """Really code and decode the jets `x` at `bound`: bytes per jet (payload, latents, residuals; with the bytes of what
    decoding at `bound` needs, the compressor with that bound's coder alone, amortised over AMORTISED_OVER jets) and the
    decoded jets. Every decoded value is checked against the bound as it would be written (float32); a value outside it
    is a bug, raised as RuntimeError."""
    x = np.asarray(x, dtype=np.float64)
    coded = compressor.encode(x, bound)
    decoded = compressor.decode(coded, bound)
    worst = check_bound(x, decoded, compressor.coder(bound).columns, bound)
    n = max(len(x), 1)
    (latent,) = struct.unpack_from("<Q", coded)
    model = compressor.only([bound]).model_bytes()
    return {
        "bound": bound,
        "kind": compressor.kind,
        "n_jets": len(x),
        "payload_bytes": len(coded),
        "payload_per_jet": len(coded) / n,
        "latent_per_jet": (8 + latent) / n,
        "residual_per_jet": (len(coded) - 8 - latent) / n,
        "model_bytes": model,
        "amortised_over": AMORTISED_OVER,
        "bytes_per_jet": len(coded) / n + model / AMORTISED_OVER,
        "largest_error": worst,
    }, decoded


def check_bound(x: np.ndarray, decoded: np.ndarray, columns: list[Any], bound: float) -> float:
    """The largest error as a fraction of the bound over every value (as float32, as written); values stored exactly
    (zeros, escapes, discrete values) must come back identical. Raises RuntimeError on any value outside."""
    written = decoded.astype(np.float32).astype(np.float64)
    worst = 0.0
    for i, column in enumerate(columns):
        original, back = x[:, i], written[:, i]
        if column.kind == "discrete":
            error = np.where((original == decoded[:, i]) | (np.isnan(original) & np.isnan(decoded[:, i])), 0.0, np.inf)
        else:
            gridded = np.isfinite(original) & ((original > 0) if column.kind == "relative" else True)
            exact = (original == decoded[:, i]) | (np.isnan(original) & np.isnan(decoded[:, i]))
            scale = bound * (np.abs(original) if column.kind == "relative" else 1.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                error = np.where(gridded, np.abs(back - original) / scale, np.where(exact, 0.0, np.inf))
        if len(error) and not np.all(error <= 1.0):
            bad = int(np.sum(~(error <= 1.0)))
            raise RuntimeError(f"the compressor broke its bound of {bound:g} on {bad} values of {column.name} (a bug: please report it)")
        worst = max(worst, float(error.max()) if len(error) else 0.0)
    return worst
