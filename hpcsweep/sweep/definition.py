"""One rule for a results folder, and the definition it keeps.

A sweep may grow in its folder (grid values, latent dimensions, seeds, other
model or training keys add trials), and a data file replaced in place makes
new trials of a new data version; what would make its trials incomparable
(the data as the sweep names them, the variable set, the reference space,
tolerance or bound the trials are measured at) is refused with the exact difference.
The folder keeps the resolved definition (definition.json) and the sweep
file's text (sweep.yaml), for review and reruns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpcsweep.config import GENERATOR_KEYS, SweepConfig, validate_sweep
from hpcsweep.errors import UserError
from hpcsweep.files import write_atomically


def check_definition(results_dir: Path, sweep: SweepConfig) -> None:
    """Refuse a sweep whose trials would not compare with those its results folder holds (see the module's doc)."""
    kept = read_definition(results_dir)
    if not kept:
        return
    before, now = comparable(kept), comparable(resolved_definition(sweep))
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if changed:
        shown = "; ".join(f"{k}: {before.get(k)!r} there, {now.get(k)!r} here" for k in changed[:3])
        raise UserError(
            f"{results_dir} holds trials of sweep {sweep.name!r} that would not compare with this definition's ({shown}"
            f"{f'; and {len(changed) - 3} more' if len(changed) > 3 else ''}); give this one another name: in its file, "
            f"or move {results_dir} away"
        )


def comparable(definition: dict[str, Any]) -> dict[str, Any]:
    """What all trials of one results folder must share, as dotted keys down to single values.

    The data as the sweep names them (not their normalisation, and not the keys its grid
    varies: comparing those is the grid's purpose) and how trials are measured
    (evaluation.reference, evaluation.tolerance, evaluation.max_error: the bound their bytes per jet are at).
    """
    points = definition.get("points") or []
    points = points.get("all", []) if isinstance(points, dict) else points  # older folders kept {"all": [...]}
    varied = set(definition.get("grid", {})) | {key for point in points for key in point}
    data = {k: v for k, v in definition.get("data", {}).items() if k != "normalisation"}
    if data.get("source", "generated") != "generated":
        data = {k: v for k, v in data.items() if k not in GENERATOR_KEYS}
    shared = {f"data.{k}": v for k, v in data.items() if f"data.{k}" not in varied}
    evaluation = definition.get("evaluation", {})
    shared |= {f"evaluation.{k}": evaluation[k] for k in ("reference", "tolerance", "max_error") if k in evaluation}
    return _leaves(shared)


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'data.varset': {'variables': [{'name': 'm'}]}} -> {'data.varset.variables[0].name': 'm'}: exact differences."""
    if isinstance(tree, dict) and (tree or not prefix):
        return {k: v for key, value in tree.items() for k, v in _leaves(value, f"{prefix}.{key}" if prefix else key).items()}
    if isinstance(tree, list) and any(isinstance(item, dict | list) for item in tree):
        return {k: v for i, item in enumerate(tree) for k, v in _leaves(item, f"{prefix}[{i}]").items()}
    return {prefix: tree}


def resolved_definition(sweep: SweepConfig) -> dict[str, Any]:
    """A sweep as resolved (paths absolute, variable sets inlined): what its folder keeps and compares against."""
    return sweep.model_dump(mode="json")


def read_definition(results_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((results_dir / "definition.json").read_text())
    except (OSError, ValueError):
        return {}


def kept_sweep(results_dir: Path) -> SweepConfig | None:
    """The sweep as its results folder last ran it (definition.json), or None (none kept, or of an older hpcsweep)."""
    kept = read_definition(results_dir)
    if "name" not in kept:
        return None
    try:
        return validate_sweep(kept, str(results_dir / "definition.json"))
    except UserError:
        return None


def keep_definition(results_dir: Path, sweep: SweepConfig, source: Path | None) -> None:
    """The resolved definition (definition.json) and the sweep file's own text (sweep.yaml), for review and reruns.

    Written only when they change, so a rerun that finds everything done touches nothing.
    """
    kept = {"definition.json": json.dumps(resolved_definition(sweep), indent=1, sort_keys=True)}
    if source is not None:
        kept["sweep.yaml"] = Path(source).read_text()
    for name, text in kept.items():
        path = results_dir / name
        if not (path.is_file() and path.read_text() == text):
            write_atomically(path, text)
