"""A trial's compressor: fitted on its training jets after the network (if any) is trained, measured on its validation
jets as `hpcsweep compress` would write them, stored in its file and shipped by `hpcsweep export` as it is."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from torch import nn

from hpcsweep.codec import Compressor, Latents, Network, Settings, codec_kinds, energy_of, fit_compressor, measure
from hpcsweep.config import CodecConfig
from hpcsweep.data.normalize import Normaliser
from hpcsweep.data.varset import VarSet
from hpcsweep.errors import Log
from hpcsweep.trial.evaluate import JetMeasure, residuals
from hpcsweep.trial.models import Autoencoder


def fit_trial_compressor(
    config: CodecConfig,
    varset: VarSet,
    x_train: np.ndarray,
    model: Autoencoder | None = None,
    normaliser: Normaliser | None = None,
    seed: int = 0,
    log: Log = print,
) -> Compressor:
    """The learned coder alone (no `model`), or the autoencoder's compressor: its latents rounded on a grid of
    `config.latent_step` (1 for a model trained with a rate term, whose latents were trained for that grid) and
    coded, then the variables with what the latents decode to as side features; fitted on `config.training_jets`
    of the training jets (all by default)."""
    x = _fitting_jets(x_train, config.training_jets, seed)
    latents = None
    if model is not None:
        assert normaliser is not None, "an autoencoder's compressor needs its normaliser"
        encoder, decoder = networks(model)
        step = 1.0 if model.rate else config.latent_step
        latents = Latents.of(encoder, decoder, normaliser, codec_kinds(varset), x, step)
    settings = Settings(tuple(config.hidden), config.classes, config.steps)
    started = time.perf_counter()
    compressor = fit_compressor(varset.names, codec_kinds(varset), x, config.bounds, energy_of(varset), latents, settings, seed)
    log(
        f"fitted the compressor ({compressor.kind}, {len(x):,} jets, {len(varset.names)} variables"
        f"{f' + {latents.width} latents' if latents else ''}, bounds {', '.join(f'{b:g}' for b in compressor.bounds)}) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return compressor


def evaluate_compressor(compressor: Compressor, x_val: np.ndarray, bound: float, jet_measure: JetMeasure) -> dict[str, Any]:
    """The compressor's bytes per jet on the validation jets at every bound it holds (really coded, decoded and checked
    against the bound), and the residuals of the decoded jets at `bound` (where trials are ranked)."""
    at: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for fitted in compressor.bounds:
        stats, decoded = measure(compressor, x_val, fitted)
        at[f"{fitted:g}"] = stats
        if np.isclose(fitted, bound, rtol=1e-9, atol=0):
            summary = stats | {"residuals": residuals(x_val, decoded.astype(np.float32), jet_measure)}
    return summary | {"bounds": at}


def compressor_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """What tables rank and show of a trial's compressor at the ranking bound (NaN when it has none)."""
    stats = evaluation.get("compressor", {})
    return {
        "bytes_per_jet": stats.get("bytes_per_jet", float("nan")),
        "payload_per_jet": stats.get("payload_per_jet", float("nan")),
        "latent_per_jet": stats.get("latent_per_jet", float("nan")),
        "model_bytes": stats.get("model_bytes", float("nan")),
    }


def networks(model: Autoencoder) -> tuple[Network, Network]:
    """The model's encoder (giving the latents: a VAE's means) and decoder as numpy networks of their float32 layers."""
    activation = {nn.LeakyReLU: "leaky_relu", nn.ReLU: "relu", nn.Tanh: "tanh"}
    (name,) = {activation[type(m)] for m in model.modules() if type(m) in activation}  # one throughout, as built
    encoder = _layers(model.encoder)
    last = encoder[-1]
    last["weight"], last["bias"] = last["weight"][: model.latent], last["bias"][: model.latent]
    return Network(encoder, name), Network(_layers(model.decoder), name)


def _layers(sequence: nn.Sequential) -> list[dict[str, Any]]:
    """A torch half as the stored layers of `Network` (dropout, the identity in evaluation, left out)."""
    layers: list[dict[str, Any]] = []
    for module in sequence:
        if isinstance(module, nn.Linear):
            layers.append({"kind": "linear", "weight": _array(module.weight), "bias": _array(module.bias)})
        elif isinstance(module, nn.BatchNorm1d):
            assert module.running_mean is not None and module.running_var is not None  # tracked: the models never turn it off
            layers.append(
                {
                    "kind": "batchnorm",
                    "weight": _array(module.weight),
                    "bias": _array(module.bias),
                    "mean": _array(module.running_mean),
                    "var": _array(module.running_var),
                    "eps": float(module.eps),
                }
            )
        elif not isinstance(module, nn.Dropout):
            layers.append({"kind": "activation"})
    return layers


def _array(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32, copy=True)


def _fitting_jets(x_train: np.ndarray, count: int | None, seed: int) -> np.ndarray:
    """`count` training jets drawn with `seed` (in their order), or all of them."""
    if count is None or count >= len(x_train):
        return x_train
    return x_train[np.sort(np.random.default_rng(seed).choice(len(x_train), count, replace=False))]
