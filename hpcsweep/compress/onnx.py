"""A bundle's anomaly score as one ONNX graph that takes a file's own values: `<stem>.score.onnx`.

Inputs are named by variable (order-proof), one float64 column each, in the file's units; inside: the variable set's
`unit_scale`, the one rule of jets a model applies to (`VarSet.selected`: finite values, the cuts, no negative value of
a positive variable; NaN for the others), the model's normalisation, the network, the inverse, hpcsweep's decoding
(discrete variables to their table, positive ones clipped at 0) and the reference space with its floors. The output
`anomaly_score` is what `hpcsweep score` writes, computed in the same precision at each step (float64 where hpcsweep
computes in float64, float32 where it rounds to float32), so the two agree to float32 rounding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpcsweep.data.cuts import cut_value
from hpcsweep.data.normalize import Affine, Normaliser, PerVariable, Step
from hpcsweep.data.varset import VarSet
from hpcsweep.trial.evaluate import JetMeasure


class _TorchOps:
    """numpy's function names over torch tensors, for `cut_value` (Python numbers become tensors where torch needs)."""

    _NAMES = {"equal": "eq", "not_equal": "ne", "power": "pow", "mod": "remainder", "asarray": "as_tensor"}

    def __getattr__(self, name: str) -> Any:
        function = getattr(torch, self._NAMES.get(name, name))
        if name.startswith("logical_") or name == "where":
            return lambda *args: function(*(a if isinstance(a, torch.Tensor) else torch.tensor(a) for a in args))
        return function


class _Steps(torch.nn.Module):
    """A fitted `Normaliser` in float64 torch: `forward` and `inverse`, with the same arithmetic as its numpy steps."""

    def __init__(self, normaliser: Normaliser):
        super().__init__()
        self.steps = [self._step(step) for step in normaliser.steps]

    @staticmethod
    def _step(step: Step) -> dict[str, torch.Tensor]:
        if isinstance(step, PerVariable):
            parts = step.columns()
        else:
            assert isinstance(step, Affine) and step.centre is not None and step.scale is not None
            parts = {"centre": step.centre, "scale": step.scale}
        return {name: torch.as_tensor(np.asarray(value)) for name, value in parts.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            if "log" in step:
                argument = torch.maximum(step["sign"] * x + step["offset"], step["floor"])
                x = (torch.where(step["log"], torch.log10(argument), x) - step["shift"]) / step["scale"]
            else:
                x = (x - step["centre"]) / step["scale"]
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for step in reversed(self.steps):
            if "log" in step:
                y = y * step["scale"] + step["shift"]
                y = torch.where(step["log"], (torch.pow(10.0, y) - step["offset"]) / step["sign"], y)
            else:
                y = y * step["scale"] + step["centre"]
        return y


class RawScore(torch.nn.Module):
    """Columns of a file, as they are -> each jet's anomaly score (NaN for the jets the model does not apply to)."""

    def __init__(self, varset: VarSet, model: torch.nn.Module, normaliser: Normaliser, measure: JetMeasure):
        super().__init__()
        self.varset, self.model = varset, model.eval()
        self.units = torch.tensor([v.unit_scale for v in varset.variables], dtype=torch.float64)
        assert measure.reference is not None, "a trial with a reference space (export_onnx skips the others)"
        self.own, self.reference = _Steps(normaliser), _Steps(measure.reference)
        self.positive = torch.tensor([v.positive for v in varset.variables])
        self.tables = {
            varset.names.index(name): torch.as_tensor(np.asarray(values, dtype=np.float32)) for name, values in measure.allowed.items()
        }

    def forward(self, *columns: torch.Tensor) -> torch.Tensor:
        x = (torch.stack([c.to(torch.float64) for c in columns], dim=1) * self.units).to(torch.float32)  # as read: float32
        selected = self._selected(x)
        decoded = self.own.inverse(self.model(self.own.forward(x.double()).float()).double()).float()
        decoded = torch.where(self.positive, torch.clamp(decoded, min=0.0), decoded)
        for column, table in self.tables.items():
            decoded[:, column] = _nearest(table, decoded[:, column])
        original, back = self.reference.forward(x.double()).float(), self.reference.forward(decoded.double()).float()
        score = ((back.double() - original.double()) ** 2).mean(dim=1).float()
        return torch.where(selected, score, torch.full_like(score, float("nan")))

    def _selected(self, x: torch.Tensor) -> torch.Tensor:
        """`VarSet.selected` in torch: finite values, the set's cuts, no negative value of a positive variable."""
        keep = torch.isfinite(x).all(dim=1) & ~(self.positive & (x < 0)).any(dim=1)
        columns = {name: x[:, i] for i, name in enumerate(self.varset.names)}
        for cut in self.varset.cuts:
            passed = torch.as_tensor(cut_value(cut.expression, columns, _TorchOps())) & torch.ones_like(keep)  # a constant cut: every jet
            keep = keep & (passed if cut.action == "keep" else ~passed)
        return keep


def _nearest(table: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Each value rounded to its nearest table entry, the lower one on a tie (as `evaluate._nearest`); by distances to
    every entry (ONNX has no searchsorted; a discrete table holds at most 1,000 values)."""
    return table[torch.argmin((values[:, None] - table[None, :]).abs(), dim=1)]


def export_score(varset: VarSet, model: torch.nn.Module, normaliser: Normaliser, measure: JetMeasure, path: Path) -> Path:
    """Write the score graph to `path` (through a temporary: a half-written graph is never left)."""
    from hpcsweep.files import atomic

    graph = RawScore(varset, model, normaliser, measure).eval()
    example = tuple(torch.linspace(1.0, 2.0, 3, dtype=torch.float64) for _ in varset.names)
    jets = torch.export.Dim("jets")
    program = torch.onnx.export(
        graph,
        example,
        input_names=list(varset.names),
        output_names=["anomaly_score"],
        dynamic_shapes={"columns": tuple({0: jets} for _ in varset.names)},
        dynamo=True,
        verbose=False,
    )
    assert program is not None  # the dynamo exporter always returns its program
    with atomic(path) as tmp:
        program.save(str(tmp))
    return path
