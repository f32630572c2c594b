"""Fitting the learned compressor on training jets (torch for the predictors; the codec itself runs on numpy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from hpcsweep.compress.codec import CLASSES, ESCAPE, FIRST, HIDDEN, MAX_ALPHABET, SAFETY, ZERO, Codec, Column, Decoded, Predictor
from hpcsweep.data.varset import VarSet

if TYPE_CHECKING:
    import torch

Choice = tuple[Predictor | None, np.ndarray, np.ndarray]  # how a variable is coded: its predictor (if any), offsets and tables

HELD_OUT = 0.2  # share of the training jets that decides, per variable, predicted or coded on its own
SMOOTHING = 0.5  # added to every symbol's count, so an unseen bin stays codable


def codec_kinds(varset: VarSet) -> list[str]:
    """How each variable is coded: 'discrete' (losslessly), 'relative' (log grid) or 'absolute' (linear grid)."""
    return ["discrete" if v.discrete else "relative" if v.residual == "relative" else "absolute" for v in varset.variables]


def columns_for(names: list[str], kinds: list[str], x: np.ndarray, bound: float) -> list[Column]:
    """The coding of each variable at `bound`: discrete ones by their table of values, the rest on a grid."""
    return [
        Column(name, kind, 1.0, np.unique(x[np.isfinite(x[:, i]), i]))
        if kind == "discrete"
        else Column(name, kind, 2 * (np.log1p(bound) if kind == "relative" else bound) * SAFETY)
        for i, (name, kind) in enumerate(zip(names, kinds, strict=True))
    ]


def fit_independent(names: list[str], kinds: list[str], x: np.ndarray, bound: float) -> Codec:
    """A codec that codes every column on its own (quantisation on the grid + range coding, no predictor)."""
    x = np.asarray(x, dtype=np.float64)
    columns = columns_for(names, kinds, x, bound)
    width = 1 + 3 * len(columns)
    codec = Codec(columns, bound, np.zeros(width), np.ones(width), None)
    for i, column in enumerate(columns):
        predictor, offsets, tables = _alone(*column.bins(x[:, i]))
        codec.predictors.append(predictor)
        codec.offsets.append(offsets)
        codec.tables.append(tables)
    return codec


def fit_ae_codec(names: list[str], kinds: list[str], x: np.ndarray, reconstruction: np.ndarray, bound: float) -> Codec:
    """A codec whose prediction of every continuous variable is an AE's reconstruction of it (`reconstruction`,
    physical units, decoded from latents both ends hold); one residual table per variable, no training.
    Discrete variables are coded on their own: their table index is not linear in the AE's output."""
    x = np.asarray(x, dtype=np.float64)
    columns = columns_for(names, kinds, x, bound)
    side = Codec(columns, bound, np.zeros(1), np.ones(1), None).side_features(reconstruction)
    n_side = side.shape[1]
    width = 1 + n_side + 3 * len(columns)
    centre, spread = np.zeros(width), np.ones(width)
    centre[1 : 1 + n_side], spread[1 : 1 + n_side] = side.mean(axis=0), np.where(side.std(axis=0) > 0, side.std(axis=0), 1.0)
    codec = Codec(columns, bound, centre, spread, None, n_side)
    features = Decoded(codec, len(x), side)  # only the side columns matter: no variable is decoded yet
    for i, column in enumerate(columns):
        k, status = column.bins(x[:, i])
        predictor = None
        if column.kind != "discrete":  # the side feature of variable i, back in its units, in bins of its grid
            weights = np.zeros((n_side + 3 * i, 2))
            weights[i, 0] = spread[1 + i] / column.step
            predictor = Predictor([weights, np.array([centre[1 + i] / column.step, 0.0])], np.array([]))
        mean, cls = predictor(features.features(i)) if predictor else (np.zeros_like(k), np.zeros_like(k))
        codec.predictors.append(predictor)
        offsets, tables = _tables(k - mean, status, cls, np.ones(len(x), dtype=bool), classes=1)
        codec.offsets.append(offsets)
        codec.tables.append(tables)
    return codec


def fit_codec(
    varset: VarSet,
    x: np.ndarray,
    bound: float,
    side: np.ndarray | None = None,
    steps: int = 600,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Codec:
    """A codec for jets like `x` (jets x variables, physical units) that keeps every value within `bound`.

    Each variable is predicted by an MLP only where that takes fewer bits on held-out jets than
    coding it on its own; `side` (jets x features) are features both ends know for every jet.
    `progress(name)` is called as each variable is done.
    """
    x = np.asarray(x, dtype=np.float64)
    columns = columns_for(varset.names, codec_kinds(varset), x, bound)
    four = varset.four_momentum
    index = varset.names.index
    energy_of = (index(four["pt"]), index(four["eta"]), index(four["mass"])) if {"pt", "eta", "mass"} <= set(four) else None
    bins = [column.bins(x[:, i]) for i, column in enumerate(columns)]
    n_side = 0 if side is None else side.shape[1]
    width = 1 + n_side + 3 * len(columns)
    codec = Codec(columns, bound, np.zeros(width), np.ones(width), energy_of, n_side)
    decoded = Decoded(codec, len(x), side)
    for i, (column, (k, status)) in enumerate(zip(columns, bins, strict=True)):
        decoded.set(i, np.where(status == FIRST, column.values(k), np.where(status == ZERO, 0.0, x[:, i])))
    codec.centre, spread = decoded.table.mean(axis=1), decoded.table.std(axis=1)
    codec.spread = np.where(spread > 0, spread, 1.0)
    decoded.table = (decoded.table - codec.centre[:, None]) / codec.spread[:, None]
    held = np.random.default_rng(seed).random(len(x)) < HELD_OUT
    for i, (k, status) in enumerate(bins):
        choice: Choice = _alone(k, status)
        if i > 0 and (status == FIRST).sum() > 100:
            predictor = _train(decoded.features(i), k, status == FIRST, ~held, steps, seed + i)
            mean, cls = predictor(decoded.features(i))
            with_predictor = (predictor, *_tables(k - mean, status, cls, ~held))
            if _bits(with_predictor, k - mean, status, cls, held) < _bits(choice, k, status, np.zeros_like(k), held):
                choice = (predictor, *_tables(k - mean, status, cls, np.ones_like(held)))
        codec.predictors.append(choice[0])
        codec.offsets.append(choice[1])
        codec.tables.append(choice[2])
        if progress:
            progress(columns[i].name)
    return codec


def _alone(k: np.ndarray, status: np.ndarray) -> tuple[None, np.ndarray, np.ndarray]:
    return (None, *_tables(k, status, np.zeros_like(k), np.ones(len(k), dtype=bool), classes=1))


def _tables(
    residual: np.ndarray, status: np.ndarray, cls: np.ndarray, rows: np.ndarray, classes: int = CLASSES
) -> tuple[np.ndarray, np.ndarray]:
    """Per class: the residual of symbol FIRST and the probabilities of every symbol, from the jets in `rows`."""
    regular = rows & (status == FIRST)
    offsets = np.zeros(classes, dtype=np.int64)
    spans = []
    for c in range(classes):
        values = residual[regular & (cls == c)]
        low, high = np.quantile(values, [1e-4, 1 - 1e-4]).round().astype(np.int64) if len(values) else (0, 0)
        if high - low + 1 > MAX_ALPHABET - FIRST:
            low = int(np.median(values)) - (MAX_ALPHABET - FIRST) // 2
            high = low + MAX_ALPHABET - FIRST - 1
        offsets[c] = low
        spans.append(high - low + 1)
    alphabet = FIRST + max(spans)
    probabilities = np.full((classes, alphabet), SMOOTHING)
    for c in range(classes):
        in_class = rows & (cls == c)
        symbol = residual[in_class] - offsets[c] + FIRST
        regular_symbol = np.where((status[in_class] == FIRST) & (symbol >= FIRST) & (symbol < alphabet), symbol, ESCAPE)
        symbol = np.where(status[in_class] == FIRST, regular_symbol, status[in_class])
        probabilities[c] += np.bincount(symbol, minlength=alphabet)
    return offsets, probabilities / probabilities.sum(axis=1, keepdims=True)


def _bits(choice: Choice, residual: np.ndarray, status: np.ndarray, cls: np.ndarray, rows: np.ndarray) -> float:
    """Bits the held-out `rows` take under one choice's tables (escapes counted at 64 bits more)."""
    _, offsets, probabilities = choice
    alphabet = probabilities.shape[1]
    symbol = residual[rows] - offsets[cls[rows]] + FIRST
    symbol = np.where((symbol >= FIRST) & (symbol < alphabet), symbol, ESCAPE)
    symbol = np.where(status[rows] == FIRST, symbol, status[rows])
    p = probabilities[cls[rows], symbol]
    return float(-np.log2(p).sum() + 64 * (symbol == ESCAPE).sum())


def _train(features: np.ndarray, k: np.ndarray, regular: np.ndarray, fit: np.ndarray, steps: int, seed: int) -> Predictor:
    """An MLP predicting the bin (discretised logistic NLL); its output layer folded into bin units."""
    import torch

    torch.manual_seed(seed)
    rows = np.flatnonzero(regular & fit)
    inputs = torch.tensor(features[:, rows].T, dtype=torch.float32)
    target = torch.tensor(k[rows], dtype=torch.float32)
    centre, scale = float(target.mean()), float(target.std()) + 1.0
    widths = [features.shape[0], *HIDDEN]
    layers = [layer for a, b in zip(widths, widths[1:], strict=False) for layer in (torch.nn.Linear(a, b), torch.nn.ReLU())]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 2))
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(0, len(rows), (min(4096, len(rows)),), generator=generator)
        out = net(inputs[batch])
        loss = _logistic_nll(target[batch], out[:, 0] * scale + centre, out[:, 1] + np.log(scale)).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    weights = [p.detach().double().numpy().T.copy() if p.ndim == 2 else p.detach().double().numpy().copy() for p in net.parameters()]
    weights[-2] = weights[-2] * np.array([scale, 1.0])
    weights[-1] = weights[-1] * np.array([scale, 1.0]) + np.array([centre, np.log(scale)])
    log_scale = Predictor(weights, np.array([]))._outputs(features)[1]
    edges = np.quantile(log_scale[regular], np.linspace(0, 1, CLASSES + 1)[1:-1])
    return Predictor(weights, edges)


def _logistic_nll(y: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log P(bin y) under a logistic of `mean` and scale exp(log_scale), discretised to unit bins."""
    import torch

    scale = torch.exp(log_scale.clamp(-6, 12))
    upper = torch.sigmoid((y + 0.5 - mean) / scale)
    lower = torch.sigmoid((y - 0.5 - mean) / scale)
    return -torch.log((upper - lower).clamp_min(1e-9))
