"""Seed stability: the K best configs per latent dimension retrained with new seeds (thesis: one of five
reruns of the best 18-D network ended at twice the loss).

`rerun_best_sweep` writes the child sweep (the parent's best trials as listed points crossed with
a seed axis: the original seed, whose finished trial is reused, and N new ones); `stability_table`
summarises any sweep whose configs were run with several seeds.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from hpcsweep.config import dotted
from hpcsweep.review.tables import config_value, varied_axes
from hpcsweep.states import TrialState
from hpcsweep.sweep.rank import Ranking

OUTLIER_FACTOR = 1.5  # a run whose val loss is above 1.5x its config's median is flagged


def config_without_seed(config: dict[str, Any]) -> str:
    """A config's identity apart from its training seed: what reruns of one config share."""
    return json.dumps({**config, "train": {k: v for k, v in config["train"].items() if k != "seed"}}, sort_keys=True)


def outliers(losses: np.ndarray, factor: float = OUTLIER_FACTOR) -> np.ndarray:
    """Runs whose val loss exceeds `factor` times the median of their config's runs (NaN counts as one)."""
    losses = np.asarray(losses, dtype=float)
    median = np.nanmedian(losses) if np.isfinite(losses).any() else np.nan
    return ~(losses <= factor * median)


def rerun_groups(summaries: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Trial ids per config (seed aside), for configs run with more than one seed."""
    groups: dict[str, list[str]] = {}
    for trial_id, summary in summaries.items():
        if summary.get("state") in (TrialState.DONE, TrialState.DIVERGED):
            groups.setdefault(config_without_seed(summary["config"]), []).append(trial_id)
    return {key: sorted(ids) for key, ids in groups.items() if len(ids) > 1}


def stability_table(summaries: dict[str, dict[str, Any]], ranking: Ranking | None = None) -> pd.DataFrame:
    """Per rerun config: z, bs, lr, wd, runs, mean, std, min, max of the sweep's yardstick and the seeds flagged as outliers."""
    ranking = ranking or Ranking()
    groups = rerun_groups(summaries)
    axes = varied_axes({ids[0]: summaries[ids[0]] for ids in groups.values()})  # what else tells the configs apart
    rows = []
    for ids in groups.values():
        runs = [summaries[i] for i in ids]
        config = runs[0]["config"]
        losses = np.array([ranking.value(r["metrics"]) if r["state"] == TrialState.DONE else np.nan for r in runs], dtype=float)
        seeds = [r["config"]["train"]["seed"] for r in runs]
        flagged = outliers(losses)
        finite = losses[np.isfinite(losses)]
        rows.append(
            {
                "Latent space dimensions": config["model"]["latent"],
                "Batch size": config["train"]["batch_size"],
                "Learning rate": f"{config['train']['lr']:.0e}",
                "Weight decay": "0" if config["train"]["weight_decay"] == 0 else f"{config['train']['weight_decay']:.0e}",
                **{axis: config_value(config, axis) for axis in axes},
                "Runs": len(runs),
                "Seeds": " ".join(str(s) for s in sorted(seeds)),
                "Mean": f"{finite.mean():.3e}" if len(finite) else "",
                "Std": f"{finite.std(ddof=1):.2e}" if len(finite) > 1 else "",
                "Min": f"{finite.min():.3e}" if len(finite) else "",
                "Max": f"{finite.max():.3e}" if len(finite) else "",
                "Max / min": f"{finite.max() / finite.min():.2f}" if len(finite) else "",
                f"Runs > {OUTLIER_FACTOR:g}x median (seed)": " ".join(str(s) for s, bad in zip(seeds, flagged, strict=True) if bad)
                or "none",
            }
        )
    table = pd.DataFrame(rows)
    return table.sort_values(["Latent space dimensions", "Mean"]).reset_index(drop=True) if len(table) else table


def rerun_best_sweep(parent: dict[str, Any], picks: list[dict[str, Any]], top: int, seeds: int) -> dict[str, Any]:
    """The child sweep (as a sweep file's mapping) of `picks`, the stored configs of the parent's `top` best per z.

    The best pick's config is the base; each pick is a listed point of the keys where it differs;
    the seed axis holds the picks' own seeds, whose trials are already done, and `seeds` new ones.
    """
    base = picks[0]
    flat = [dotted(p) for p in picks]
    points = [{key: value for key, value in f.items() if value != flat[0].get(key)} for f in flat]
    original = sorted({p["train"]["seed"] for p in picks})
    new = list(range(max(original) + 1, max(original) + 1 + seeds))
    return {
        "name": f"{parent['name']}-top{top}-seeds{seeds}",
        "description": f"seed-stability reruns of the best trials per latent dimension of sweep {parent['name']!r}",
        "data": base["data"],
        "model": base["model"],
        "train": {k: v for k, v in base["train"].items() if k != "seed"},
        "codec": base.get("codec", {}),  # a file written before trials fitted compressors has none: the defaults
        "points": [{k: v for k, v in point.items() if k != "train.seed"} for point in points],
        "grid": {"train.seed": original + new},
        "dispatch": parent.get("dispatch", {}),
        "evaluation": parent.get("evaluation", {}),
        "review": parent.get("review", {}),
        **{key: parent[key] for key in ("rank_by", "rank_variables") if parent.get(key) is not None},
    }
