"""Fitting the learned coder on training jets (torch for the predictors; the coder itself runs on numpy)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hpcsweep.codec import exact
from hpcsweep.codec.coder import ESCAPE, FIRST, MAX_ALPHABET, SAFETY, Codec, Column, Decoded, Predictor
from hpcsweep.data.varset import VarSet

if TYPE_CHECKING:
    import torch

Choice = tuple[Predictor | None, np.ndarray, np.ndarray]  # how a variable is coded: its predictor (if any), offsets and tables

HELD_OUT = 0.2  # share of the training jets that decides, per variable, predicted or coded on its own
SMOOTHING = 0.5  # added to every symbol's count, so an unseen bin stays codable


@dataclass(frozen=True)
class Settings:
    """How the predictors are made (the `codec` section of a trial's configuration)."""

    hidden: tuple[int, ...] = (16, 16)  # widths of a predictor's hidden layers
    classes: int = 12  # scale classes per predicted variable
    steps: int = 600  # training steps of each predictor


DEFAULT_SETTINGS = Settings()


def codec_kinds(varset: VarSet) -> list[str]:
    """How each variable is coded: 'discrete' (losslessly), 'relative' (log grid) or 'absolute' (linear grid)."""
    return ["discrete" if v.discrete else "relative" if v.residual == "relative" else "absolute" for v in varset.variables]


def energy_of(varset: VarSet) -> tuple[int, int, int] | None:
    """Indices of pt, eta and mass when the set declares a four-momentum of them: their energy is a feature."""
    four, index = varset.four_momentum, varset.names.index
    return (index(four["pt"]), index(four["eta"]), index(four["mass"])) if {"pt", "eta", "mass"} <= set(four) else None


def columns_for(names: list[str], kinds: list[str], x: np.ndarray, bound: float) -> list[Column]:
    """The coding of each variable at `bound`: discrete ones by their table of values, the rest on a grid."""
    return [
        Column(name, kind, 1.0, np.unique(x[np.isfinite(x[:, i]), i]))
        if kind == "discrete"
        else Column(name, kind, 2 * (np.log1p(bound) if kind == "relative" else bound) * SAFETY)
        for i, (name, kind) in enumerate(zip(names, kinds, strict=True))
    ]


def integer_columns(names: list[str]) -> list[Column]:
    """Columns of integers (quantised latents): the bins are the values themselves."""
    return [Column(name, "absolute", 1.0) for name in names]


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


def fit_codec(
    columns: list[Column],
    x: np.ndarray,
    bound: float,
    side: np.ndarray | None = None,
    energy: tuple[int, int, int] | None = None,
    settings: Settings = DEFAULT_SETTINGS,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Codec:
    """A codec for jets like `x` (jets x variables, physical units) on the grids of `columns`.

    Each variable is predicted by an MLP only where that takes fewer bits on held-out jets than
    coding it on its own; `side` (jets x features) are features both ends know for every jet,
    `energy` the indices of pt, eta and mass whose energy is a feature. `progress(name)` is
    called as each variable is done.
    """
    x = np.asarray(x, dtype=np.float64)
    bins = [column.bins(x[:, i]) for i, column in enumerate(columns)]
    n_side = 0 if side is None else side.shape[1]
    width = 1 + n_side + 3 * len(columns)
    codec = Codec(columns, bound, np.zeros(width), np.ones(width), energy, n_side)
    decoded = Decoded(codec, len(x), side, standardise=False)
    for i, (k, status) in enumerate(bins):
        decoded.set(i, k, status, x[:, i])
    codec.centre, spread = decoded.table.mean(axis=1), decoded.table.std(axis=1)
    codec.spread = np.where(spread > 0, spread, 1.0)
    decoded.standardised()
    held = np.random.default_rng(seed).random(len(x)) < HELD_OUT
    trained = [(i > 0 or n_side > 0) and int((status == FIRST).sum()) > 100 for i, (_, status) in enumerate(bins)]
    predictors = _train(decoded, [k for k, _ in bins], [status == FIRST for _, status in bins], trained, ~held, settings, seed)
    for i, (k, status) in enumerate(bins):
        choice: Choice = _alone(k, status)
        predictor = predictors.get(i)
        if predictor is not None:
            mean, cls = predictor(decoded.features(i))
            with_predictor = (predictor, *_tables(k - mean, status, cls, ~held, settings.classes))
            if _bits(with_predictor, k - mean, status, cls, held) < _bits(choice, k, status, np.zeros_like(k), held):
                choice = (predictor, *_tables(k - mean, status, cls, np.ones_like(held), settings.classes))
        codec.predictors.append(choice[0])
        codec.offsets.append(choice[1])
        codec.tables.append(choice[2])
        if progress:
            progress(columns[i].name)
    return codec


def _alone(k: np.ndarray, status: np.ndarray) -> tuple[None, np.ndarray, np.ndarray]:
    return (None, *_tables(k, status, np.zeros_like(k), np.ones(len(k), dtype=bool), classes=1))


def _tables(residual: np.ndarray, status: np.ndarray, cls: np.ndarray, rows: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: the residual of symbol FIRST and the (smoothed) count of every symbol, from the jets in `rows`."""
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
    counts = np.full((classes, alphabet), SMOOTHING)
    for c in range(classes):
        in_class = rows & (cls == c)
        symbol = residual[in_class] - offsets[c] + FIRST
        regular_symbol = np.where((status[in_class] == FIRST) & (symbol >= FIRST) & (symbol < alphabet), symbol, ESCAPE)
        symbol = np.where(status[in_class] == FIRST, regular_symbol, status[in_class])
        counts[c] += np.bincount(symbol, minlength=alphabet)
    return offsets, counts


def _bits(choice: Choice, residual: np.ndarray, status: np.ndarray, cls: np.ndarray, rows: np.ndarray) -> float:
    """Bits the held-out `rows` take under one choice's tables (escapes counted at 64 bits more)."""
    _, offsets, counts = choice
    alphabet = counts.shape[1]
    symbol = residual[rows] - offsets[cls[rows]] + FIRST
    symbol = np.where((symbol >= FIRST) & (symbol < alphabet), symbol, ESCAPE)
    symbol = np.where(status[rows] == FIRST, symbol, status[rows])
    p = counts[cls[rows], symbol] / counts.sum(axis=1)[cls[rows]]
    return float(-np.log2(p).sum() + 64 * (symbol == ESCAPE).sum())


def _train(
    decoded: Decoded, bins: list[np.ndarray], regular: list[np.ndarray], trained: list[bool], fit: np.ndarray, settings: Settings, seed: int
) -> dict[int, Predictor]:
    """Predictors of the `trained` variables, each an MLP plus a linear map of the features before it predicting its bin
    (discretised logistic NLL over its regular jets), their output layers folded into bin units.

    All are trained at once, as one stack of networks over the whole feature table whose first layers are masked
    to each variable's features: one optimiser step trains every predictor (the predictors share nothing but the
    batches of jets they see).
    """
    import torch

    chosen = [i for i, wanted in enumerate(trained) if wanted]
    if not chosen:
        return {}
    torch.manual_seed(seed)
    rows = np.flatnonzero(fit)
    table = decoded.table  # features x jets, standardised, fixed point
    spans = [decoded.span(i) for i in chosen]
    mask = torch.zeros(len(chosen), table.shape[0], 1)
    for j, span in enumerate(spans):
        mask[j, span] = 1.0
    inputs = torch.tensor(exact.from_fixed(table[:, rows]).T, dtype=torch.float32)
    targets = np.stack([bins[i][rows] for i in chosen]).astype(np.float64)
    weights_of = np.stack([regular[i][rows] for i in chosen]).astype(np.float64)
    centre = (targets * weights_of).sum(1) / np.maximum(weights_of.sum(1), 1)
    scale = np.sqrt(((targets - centre[:, None]) ** 2 * weights_of).sum(1) / np.maximum(weights_of.sum(1), 1)) + 1.0
    target = torch.tensor((targets - centre[:, None]) / scale[:, None], dtype=torch.float32)  # variables x jets
    usable = torch.tensor(weights_of, dtype=torch.float32)
    half = torch.tensor(0.5 / scale, dtype=torch.float32)[:, None]  # half a bin, in the standardised targets' units
    net = _Stack(len(chosen), table.shape[0], settings.hidden, mask)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=settings.steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(settings.steps):
        batch = torch.randint(0, len(rows), (min(4096, len(rows)),), generator=generator)
        out = net(inputs[batch])  # variables x batch x 2
        nll = _logistic_nll(target[:, batch], out[..., 0], out[..., 1], half)
        loss = ((nll * usable[:, batch]).sum(1) / usable[:, batch].sum(1).clamp_min(1)).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    predictors = {}
    for j, (i, span) in enumerate(zip(chosen, spans, strict=True)):
        weights, linear = net.extract(j, span)
        in_bins = np.array([scale[j], 1.0])
        weights[-2] = weights[-2] * in_bins
        weights[-1] = weights[-1] * in_bins + np.array([centre[j], np.log(scale[j])])
        linear = linear * in_bins
        predictor = Predictor.of(weights, linear)  # in integers
        log_scale = predictor.outputs(decoded.features(i))[1]
        predictor.scale_edges = np.rint(np.quantile(log_scale[regular[i]], np.linspace(0, 1, settings.classes + 1)[1:-1]))
        predictors[i] = predictor
    return predictors


class _Stack:
    """Several MLPs (plus linear maps) of one shape trained side by side: batched matrix products, the first layer's and
    the linear map's inputs masked to each network's features."""

    def __init__(self, count: int, width: int, hidden: tuple[int, ...], mask: torch.Tensor) -> None:
        import torch

        self.mask = mask
        widths = [width, *hidden, 2]
        self.layers = []
        for a, b in zip(widths, widths[1:], strict=False):
            bound = 1 / np.sqrt(a)  # torch.nn.Linear's initialisation
            matrix = torch.nn.Parameter(torch.empty(count, a, b).uniform_(-bound, bound))
            bias = torch.nn.Parameter(torch.empty(count, 1, b).uniform_(-bound, bound))
            self.layers.append((matrix, bias))
        self.skip = torch.nn.Parameter(torch.zeros(count, width, 2))

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for layer in self.layers for p in layer] + [self.skip]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        first, bias = self.layers[0]
        h = torch.relu(torch.matmul(x, first * self.mask) + bias)
        for matrix, bias in self.layers[1:-1]:
            h = torch.relu(torch.bmm(h, matrix) + bias)
        matrix, bias = self.layers[-1]
        return torch.bmm(h, matrix) + bias + torch.matmul(x, self.skip * self.mask)

    def extract(self, j: int, span: slice) -> tuple[list[np.ndarray], np.ndarray]:
        """Network j's weights (as `Predictor` holds them: matrices in x out, float64) over its own features, and its linear map."""
        weights = []
        for n, (matrix, bias) in enumerate(self.layers):
            weight = matrix[j].detach().double().numpy()
            weights += [(weight[span] if n == 0 else weight).copy(), bias[j, 0].detach().double().numpy().copy()]
        return weights, self.skip[j].detach().double().numpy()[span].copy()


def _logistic_nll(y: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """-log P(bin y) under a logistic of `mean` and scale exp(log_scale), discretised to bins of half-width `half`
    (in the standardised target's units: one bin is 1/scale of them)."""
    import torch

    scale = torch.exp(log_scale.clamp(-12, 12))
    upper = torch.sigmoid((y + half - mean) / scale)
    lower = torch.sigmoid((y - half - mean) / scale)
    return -torch.log((upper - lower).clamp_min(1e-9))
