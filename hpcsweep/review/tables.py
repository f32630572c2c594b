"""Thesis-style tables: best and median trial per latent dimension (Tables 2.3/2.4), comparisons by any
other axis the sweep varied (seed 001's normalisations and model kinds), baselines and compression."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from hpcsweep.config import dotted
from hpcsweep.data.varset import Variable, VarSet, varset_label
from hpcsweep.files import write_atomically
from hpcsweep.states import TrialState
from hpcsweep.sweep.rank import Ranking

#: Trial-table columns taken from each trial's stored config, metrics and provenance.
_FIELDS = {
    "latent": ("config", "model", "latent"),
    "batch_size": ("config", "train", "batch_size"),
    "lr": ("config", "train", "lr"),
    "weight_decay": ("config", "train", "weight_decay"),
    "epochs": ("config", "train", "epochs"),
    "seed": ("config", "train", "seed"),
    "varset": ("config", "data", "varset"),
    "data_version": ("config", "data_version"),
    "val_mse": ("metrics", "best_val_mse"),
    "reference_mse": ("metrics", "reference_mse"),
    "pca_reference_mse": ("metrics", "pca_reference_mse"),
    "best_epoch": ("metrics", "best_epoch"),
    "train_time_s": ("metrics", "train_time_s"),
    "pca_val_mse": ("metrics", "pca_val_mse"),
    "kind": ("config", "model", "kind"),
    "rate_lambda": ("config", "train", "rate_lambda"),
    "bytes_per_jet": ("metrics", "bytes_per_jet"),
    "payload_per_jet": ("metrics", "payload_per_jet"),
    "latent_per_jet": ("metrics", "latent_per_jet"),
    "model_bytes": ("metrics", "model_bytes"),
}
#: Config keys the best/median tables already show, or that only repeat a trial: never a comparison axis.
_TABLE_AXES = {"model.latent", "train.batch_size", "train.lr", "train.weight_decay", "train.seed"}


def _nested(summary: dict[str, Any], path: tuple[str, ...]) -> Any:
    """summary[path[0]][path[1]]...; None where a key is missing."""
    value: Any = summary
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _flat_config(config: dict[str, Any]) -> dict[str, str]:
    """{'model': {'kind': 'ae'}} -> {'model.kind': '"ae"'}: values as stable text, so that lists compare too."""
    return {key: json.dumps(value, sort_keys=True) for key, value in dotted(config).items()}


def varied_axes(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """Config keys (dotted) that differ between trials, besides latent, bs, lr, wd and seed."""
    values: dict[str, set[str]] = {}
    for summary in summaries.values():
        for key, value in _flat_config(summary.get("config", {})).items():
            values.setdefault(key, set()).add(value)
    return sorted(key for key, seen in values.items() if len(seen) > 1 and key not in _TABLE_AXES)


def trials_frame(summaries: dict[str, dict[str, Any]], ranking: Ranking | None = None) -> pd.DataFrame:
    """One row per trial file: id, state, failure, the fields above, its `rank` (the sweep's yardstick, smaller
    is better), each varied axis and its AUC for each signal any trial was evaluated on, `auc_<signal>` (missing
    ones as NaN)."""
    ranking = ranking or Ranking()
    axes = varied_axes(summaries)
    signals = sorted({label for summary in summaries.values() for label, _ in _anomalies(summary.get("metrics") or {})})
    rows = []
    for trial_id, summary in summaries.items():
        row: dict[str, Any] = {"trial_id": trial_id, "state": summary["state"], "failure": summary.get("failure", "")}
        row |= {column: _nested(summary, path) for column, path in _FIELDS.items()}
        row["varset"] = varset_label(row["varset"]) if row["varset"] is not None else None
        if row["rate_lambda"] is None and row["kind"] not in (None, "codec"):
            row["rate_lambda"] = 0.0  # a config without a rate term leaves it out
        row["rank"] = ranking.value(summary.get("metrics") or {})
        row |= {axis: config_value(summary.get("config", {}), axis) for axis in axes}
        row |= {f"auc_{label}": result["auc"] for label, result in _anomalies(summary.get("metrics") or {})}
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["trial_id", "state", "failure", *_FIELDS, "rank", *axes, *(f"auc_{s}" for s in signals)])
    return frame.sort_values(["latent", "rank", "trial_id"], na_position="last").reset_index(drop=True)


def config_value(config: dict[str, Any], axis: str) -> Any:
    """The value of a dotted key (e.g. 'data.normalisation') of a stored config, as a table shows it; split at its
    first dot only, as `dotted` joins them (a key of a trial file may hold dots)."""
    return _axis_value(_nested(config, tuple(axis.split(".", 1))))


def _axis_value(value: Any) -> Any:
    """A config value as a table shows it: a variable set by its name, lists (hidden widths) as text."""
    if isinstance(value, dict) and "variables" in value:
        return varset_label(value)
    return value if value is None or isinstance(value, str | int | float | bool) else json.dumps(value)


def ranked(frame: pd.DataFrame) -> pd.DataFrame:
    """The finished trials that have a rank (older files may lack the sweep's measure), best first within each z, ties
    by trial id: what every table, figure, export and rerun picks from."""
    done = frame[(frame["state"] == TrialState.DONE) & frame["rank"].notna()]
    return done.sort_values(["latent", "rank", "trial_id"])


def best_and_median(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per latent dimension, the done trial ranked first and the median one (trials without a rank are left out).

    The median trial is a real trial: for an even count, the worse of the two middle ones.
    Ties are broken by trial id, so the choice is reproducible.
    """
    done = ranked(frame)
    groups = [group for _, group in done.groupby("latent", sort=True)]
    best = pd.DataFrame([g.iloc[0] for g in groups], columns=done.columns)
    median = pd.DataFrame([g.iloc[len(g) // 2] for g in groups], columns=done.columns)
    return best.reset_index(drop=True), median.reset_index(drop=True)


def _sci(value: float | None) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.3e}"


def numeric_table(picks: pd.DataFrame, axes: list[str] | None = None, ranking: Ranking | None = None) -> pd.DataFrame:
    """The numbers of the best/median tables, as numbers with snake_case columns (for notebooks; `thesis_table`
    formats them): z, bs, lr, wd, each other varied axis, the losses, the ranking's own figure, and PCA beside."""
    ranking = ranking or Ranking()
    table = pd.DataFrame(
        {
            "latent": picks["latent"].astype(int),
            "batch_size": picks["batch_size"].astype("Int64"),  # none for the compressor alone (model kind codec)
            "lr": picks["lr"].astype(float),
            "weight_decay": picks["weight_decay"].astype(float),
        }
    )
    for axis in axes or []:
        table[snake_case(axis)] = picks[axis]
    table["val_loss"] = picks["val_mse"].astype(float)
    table["reference_mse"] = picks["reference_mse"].astype(float)
    if ranking.own_figure:
        table[ranking.rank_by] = picks["rank"].astype(float)
    table["best_epoch"] = picks["best_epoch"].astype("Int64")
    table["train_time_s"] = picks["train_time_s"].astype(float)
    table["pca_reference_mse"] = picks["pca_reference_mse"].astype(float)
    table["pca_over_ae"] = table["pca_reference_mse"] / table["reference_mse"].where(table["reference_mse"] != 0)
    table["trial_id"] = picks["trial_id"].astype(str)
    return table.reset_index(drop=True)


def snake_case(key: str) -> str:
    """'data.normalisation' -> 'data_normalisation': a config key as a column name."""
    return re.sub(r"\W+", "_", key).strip("_").lower()


def thesis_table(picks: pd.DataFrame, axes: list[str] | None = None, ranking: Ranking | None = None) -> pd.DataFrame:
    """The columns of thesis Tables 2.3/2.4, every other axis the sweep varies, and the numbers that compare
    across the grid: the MSE in the reference space (and PCA's there), or the ranking's own figure; as text."""
    ranking = ranking or Ranking()
    numbers = numeric_table(picks, axes, ranking)
    table = pd.DataFrame(
        {
            "Latent space dimensions": numbers["latent"],
            "Batch size": numbers["batch_size"].map(lambda v: "" if pd.isna(v) else str(v)),
            "Learning rate": numbers["lr"].map(lambda v: "" if pd.isna(v) else f"{v:.0e}"),
            "Weight decay": numbers["weight_decay"].map(lambda v: "" if pd.isna(v) else "0" if v == 0 else f"{v:.0e}"),
        }
    )
    for axis in axes or []:
        table[axis] = numbers[snake_case(axis)].map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    table["Validation loss (own normalisation)"] = numbers["val_loss"].map(_sci)
    table["Reference MSE"] = numbers["reference_mse"].map(_sci)
    if ranking.own_figure:
        table[ranking.label] = numbers[ranking.rank_by].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    table["Epoch of best"] = numbers["best_epoch"].map(lambda v: "" if pd.isna(v) or v == 0 else str(v))
    table["Training time"] = numbers["train_time_s"].map(lambda s: "" if pd.isna(s) else str(timedelta(seconds=round(s))))
    table["PCA reference MSE"] = numbers["pca_reference_mse"].map(_sci)
    table["PCA / AE"] = numbers["pca_over_ae"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    return table


def comparison_table(frame: pd.DataFrame, axis: str) -> pd.DataFrame:
    """Best and median rank value per value of `axis` (rows) and latent dimension (columns), done trials only."""
    done = ranked(frame)
    rows = []
    for value, group in done.groupby(axis, sort=True):
        row: dict[str, Any] = {axis: value}
        for z, trials in group.groupby("latent", sort=True):
            ranks = trials.sort_values(["rank", "trial_id"])["rank"]
            row[f"z={int(z)} best"] = _sci(ranks.iloc[0])
            row[f"z={int(z)} median"] = _sci(ranks.iloc[len(ranks) // 2])
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def residuals_table(best: pd.DataFrame, median: pd.DataFrame, summaries: dict[str, dict[str, Any]], varset: VarSet) -> pd.DataFrame:
    """Per latent dimension and variable, for the best and the median trial: the residual's 68 % half-width
    (relative ones in percent, others in the variable's unit), the fraction of jets within 1 % (relative) or
    0.01 (absolute), and within the sweep's tolerance when it sets one."""
    rows = []
    for (_, top), (_, middle) in zip(best.iterrows(), median.iterrows(), strict=True):
        picks = {"best": summaries[top["trial_id"]]["metrics"], "median": summaries[middle["trial_id"]]["metrics"]}
        tolerances = picks["best"].get("tolerance", {})
        for variable in varset.variables:
            row: dict[str, Any] = {
                "Latent space dimensions": int(top["latent"]),
                "Variable": variable.name,
                "Residual": _residual_kind(variable),
            }
            if tolerances:
                row["Tolerance"] = _width(tolerances.get(variable.name), variable.residual)
            for pick, metrics in picks.items():
                row[f"{pick}: 68 % half-width"] = _width(metrics.get("residual_width", {}).get(variable.name), variable.residual)
                row[f"{pick}: within 1 %"] = _fraction(metrics.get("within_1pct", {}).get(variable.name))
                if tolerances:
                    row[f"{pick}: within tolerance"] = _fraction(metrics.get("within_tolerance", {}).get(variable.name))
            rows.append(row)
    return pd.DataFrame(rows).fillna("")


def _residual_kind(variable: Variable) -> str:
    if variable.residual == "relative":
        return "(out - in) / in [%]"
    return ("out - in, wrapped" if variable.residual == "phi" else "out - in") + (f" [{variable.unit}]" if variable.unit else "")


def _width(value: float | None, kind: str) -> str:
    if value is None or pd.isna(value):
        return ""
    return f"{100 * value:.3g} %" if kind == "relative" else f"{value:.3g}"


def _fraction(value: float | None) -> str:
    return "" if value is None or pd.isna(value) else f"{100 * value:.1f} %"


def data_versions_table(versions: list[dict[str, Any]], frame: pd.DataFrame, current: set[str]) -> pd.DataFrame:
    """The data this folder's trials read: per version (checksum of the jets as read), the files, tree, jets,
    what the cleaning removed, and how many trial files read it; `current` marks those of the sweep's definition."""
    counts = frame["data_version"].value_counts()
    rows = []
    for entry in versions:
        files = entry.get("files") or [{"path": entry.get("source", "")}]
        cuts = "; ".join(
            f"{c['name']}: {c['removed']:,}"
            + (f" ({', '.join(f'{k} {n:,}' for k, n in c['by_variable'].items())})" if c.get("by_variable") else "")
            for c in entry.get("cuts") or []
            if c["removed"]
        )
        rows.append(
            {
                "Data version": entry["version"],
                "In the tables": "yes" if entry["version"] in current else "no",
                "Files": ", ".join(Path(f["path"]).name for f in files),
                "Tree": entry.get("tree") or "",
                "Variable set": entry.get("varset") or "",
                "Jets": f"{entry.get('n_jets') or 0:,}",
                "Removed by cleaning": cuts or "none",
                "Trial files": int(counts.get(entry["version"], 0)),
                "File sha256": ", ".join(f.get("sha256", "")[:12] for f in files),
            }
        )
    return pd.DataFrame(rows)


def baselines_table(best: pd.DataFrame, evaluations: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per latent dimension: the best AE against PCA at the same z and float16 truncation, in the trial's own
    normalisation and in the sweep's reference space."""
    rows = []
    for _, trial in best.iterrows():
        baselines = evaluations.get(trial["trial_id"], {}).get("validation", {}).get("baselines", {})
        pca, half = baselines.get("pca", {}), baselines.get("float16", {})
        rows.append(
            {
                "Latent space dimensions": int(trial["latent"]),
                "AE val loss": _sci(trial["val_mse"]),
                "PCA val loss": _sci(pca.get("mse", float("nan"))),
                "float16 truncation": _sci(half.get("mse", float("nan"))),
                "AE reference MSE": _sci(trial["reference_mse"]),
                "PCA reference MSE": _sci(pca.get("reference_mse", float("nan"))),
                "float16 reference MSE": _sci(half.get("reference_mse", float("nan"))),
                "PCA / AE (reference)": _ratio(pca.get("reference_mse"), trial["reference_mse"]),
            }
        )
    return pd.DataFrame(rows)


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or pd.isna(numerator) or pd.isna(denominator) or denominator == 0:
        return ""
    return f"{numerator / denominator:.2f}"


#: Compression columns: stored key -> header (bytes per jet unless a ratio).
_COMPRESSION = {
    "raw_float32": "raw float32 (B/jet)",
    "raw_float32_lzma": "raw float32 + lzma",
    "latent_float16": "latent float16",
    "latent_float16_lzma": "latent float16 + lzma",
    "model_per_jet": "decoder + normaliser per jet",
    "total_per_jet": "total",
    "ratio_vs_raw_float32": "ratio vs float32",
    "ratio_vs_raw_float32_lzma": "ratio vs float32 + lzma",
    "ratio_large_dataset": "ratio, large dataset",
    "ratio_large_dataset_vs_lzma": "ratio vs lzma, large dataset",
}


def compression_table(best: pd.DataFrame, evaluations: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per latent dimension, the best AE's bytes per jet and total compression ratio, lossless lzma chained."""
    rows = []
    for _, trial in best.iterrows():
        stored = evaluations.get(trial["trial_id"], {}).get("validation", {}).get("compression", {})
        row: dict[str, Any] = {"Latent space dimensions": int(trial["latent"])}
        row |= {header: f"{stored[key]:.2f}" if key in stored else "" for key, header in _COMPRESSION.items()}
        rows.append(row)
    return pd.DataFrame(rows)


def compressor_picks(frame: pd.DataFrame) -> pd.DataFrame:
    """Per latent dimension and model kind (z = 0: the learned coder alone), the finished trial whose compressor writes
    the fewest bytes per jet (its own bytes amortised over 1M jets), ties broken by trial id."""
    done = frame[(frame["state"] == TrialState.DONE) & frame["bytes_per_jet"].notna()]
    if not len(done):
        return done
    ordered = done.sort_values(["latent", "kind", "bytes_per_jet", "trial_id"])
    return ordered.groupby(["latent", "kind"], sort=True).head(1).reset_index(drop=True)


def compressor_name(trial: Any) -> str:
    """'learned coder alone' or 'AE z=12, rate 0.003' (an AE's rounded latents and coded residuals)."""
    if trial["kind"] == "codec":
        return "learned coder alone"
    kind = {"ae": "AE", "sparse": "sparse AE", "vae": "VAE"}.get(trial["kind"], str(trial["kind"]))
    rate = trial.get("rate_lambda")
    return f"{kind} z={int(trial['latent'])}, " + (f"rate {rate:g}" if rate else "no rate term")


def compressors_table(picks: pd.DataFrame, evaluations: dict[str, dict[str, Any]], varset: VarSet, bound: float) -> pd.DataFrame:
    """What `hpcsweep compress` writes with each kind of compressor the sweep found (`compressor_picks`), beside the
    error-bounded compressors physicists already have, at `bound` on the same validation jets: bytes per jet (the
    coded jets, their latents, the compressor itself spread over 1M jets), residual widths and the bound."""
    shown = [name for name in (varset.four_momentum.get("pt"), varset.four_momentum.get("mass")) if name] or varset.names[:2]
    kinds = {v.name: v.residual for v in varset.variables}
    continuous = [v.name for v in varset.variables if not v.discrete]

    def row(what: str, trial: str, numbers: dict[str, Any], stats: dict[str, dict[str, Any]], bound_text: str) -> dict[str, Any]:
        within = [stats[name]["within_1pct"] for name in continuous if "within_1pct" in stats.get(name, {})]
        widths = {
            f"{name} width{' [%]' if kinds[name] == 'relative' else ''}": f"{(100 if kinds[name] == 'relative' else 1) * stats[name]['width']:.3g}"
            for name in shown
            if "width" in stats.get(name, {})
        }
        return {"compressor": what, "trial": trial, "bytes/jet": f"{numbers['bytes_per_jet']:.2f}",
                "coded jets": _bytes(numbers.get("payload_per_jet")), "of which latents": _bytes(numbers.get("latent_per_jet")),
                "compressor itself (kB)": "" if numbers.get("model_bytes") is None else f"{numbers['model_bytes'] / 1e3:.0f}",
                **widths, "values within 1 %": f"{100 * sum(within) / len(within):.1f} %" if within else "",
                "bound on every value": bound_text}  # fmt: skip

    rows: list[dict[str, Any]] = []
    peers: dict[str, Any] = {}  # the peers of the first pick that has them: every trial measures them on the same jets
    for _, trial in picks.iterrows():
        validation = evaluations.get(trial["trial_id"], {}).get("validation", {})
        measured = validation.get("compressor", {})
        if not measured:
            continue
        rows.append(row(compressor_name(trial), trial["trial_id"], measured, measured.get("residuals", {}), _bound_text(measured["bound"])))
        peers = peers or validation.get("baselines", {})
    if "float16" in peers:
        rows.append(row("float16", "", peers["float16"], peers["float16"]["residuals"], "none"))
    for peer, result in peers.get("peers", {}).items():
        if abs(result["bound"] - bound) <= 1e-12:
            rows.append(row(peer, "", result, result["residuals"], _bound_text(result["bound"])))
    return pd.DataFrame(rows)


def frontier_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The rate frontier: per latent dimension, kind and rate weight, the fewest-bytes compressor's bytes per jet split
    into its latents, its coded residuals and itself (amortised over 1M jets)."""
    done = frame[(frame["state"] == TrialState.DONE) & frame["bytes_per_jet"].notna()].copy()
    if not len(done):
        return pd.DataFrame()
    done["rate"] = done["rate_lambda"].fillna(0.0)
    picks = done.sort_values(["latent", "kind", "rate", "bytes_per_jet", "trial_id"]).groupby(["latent", "kind", "rate"], sort=True).head(1)
    rows = []
    for _, trial in picks.iterrows():
        latents = float(trial["latent_per_jet"])
        rows.append(
            {
                "Latent space dimensions": int(trial["latent"]),
                "kind": trial["kind"],
                "rate weight": "" if trial["kind"] == "codec" else f"{trial['rate']:g}",
                "latents (B/jet)": f"{latents:.2f}",
                "coded residuals (B/jet)": f"{trial['payload_per_jet'] - latents:.2f}",
                "compressor over 1M jets (B/jet)": f"{trial['bytes_per_jet'] - trial['payload_per_jet']:.2f}",
                "total (B/jet)": f"{trial['bytes_per_jet']:.2f}",
                "trial": trial["trial_id"],
            }
        )
    return pd.DataFrame(rows)


def compression_verdict(picks: pd.DataFrame, evaluations: dict[str, dict[str, Any]], bound: float) -> str | None:
    """One line: the compressor of fewest bytes per jet at `bound`, and how it stands against SZ3 on the same jets."""
    measured = [(trial, evaluations.get(trial["trial_id"], {}).get("validation", {})) for _, trial in picks.iterrows()]
    measured = [(trial, validation) for trial, validation in measured if validation.get("compressor")]
    if not measured:
        return None
    trial, validation = min(measured, key=lambda pair: (pair[1]["compressor"]["bytes_per_jet"], pair[0]["trial_id"]))
    size = validation["compressor"]["bytes_per_jet"]
    line = f"fewest bytes at {_bound_text(bound)}: {compressor_name(trial)}, trial {trial['trial_id']}, {size:.2f} bytes/jet (compressor over 1M jets included)"
    sz3 = validation.get("baselines", {}).get("peers", {}).get("SZ3")
    if sz3 is not None:
        line += f": {size / sz3['bytes_per_jet']:.2f}x SZ3's {sz3['bytes_per_jet']:.2f} on the same jets"
    others = [p for p in measured if p[0]["trial_id"] != trial["trial_id"]]
    if others:
        runner, runner_validation = min(others, key=lambda pair: pair[1]["compressor"]["bytes_per_jet"])
        line += f"; next: {compressor_name(runner)}, {runner_validation['compressor']['bytes_per_jet']:.2f}"
    return line


def _bytes(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.2f}"


def _bound_text(bound: float) -> str:
    return f"{100 * bound:g} % (angles {bound:g})"


def write_table(table: pd.DataFrame, folder: Path, stem: str, title: str) -> list[Path]:
    """The table as Markdown (with its title), CSV and LaTeX (a `table` float with caption and label), named
    by `file_stem(stem)`: a stem may hold a config key of a trial file, which must not reach outside `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = file_stem(stem)
    paths = [folder / f"{stem}.md", folder / f"{stem}.csv", folder / f"{stem}.tex"]
    texts = [
        f"## {title}\n\n{markdown(table)}\n",
        table.to_csv(index=False),
        table.to_latex(index=False, caption=_latex_text(title), label=f"tab:{stem}", escape=True),
    ]
    for path, text in zip(paths, texts, strict=True):
        write_atomically(path, text)  # a full disk leaves the previous table, not half of one
    return paths


def file_stem(text: str) -> str:
    """`text` as a file name stem of letters, digits, '_' and '-' (no '/', no '..'): config keys come from trial
    files, which anybody sharing the results folder can write. A stem that had to change ends in a hash of
    `text`, so that two keys never share a file; a safe one (e.g. `by_data_normalisation`) stays as it is."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:80]
    return stem if stem == text else "-".join(filter(None, [stem, hashlib.sha256(text.encode()).hexdigest()[:8]]))


#: LaTeX's special characters in text (pandas escapes a table's cells, not its caption).
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
          "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip


def _latex_text(text: str) -> str:
    """`text` as LaTeX prints it: a caption holds '%' and config keys ('data.max_jets', or anything a trial file says)."""
    return re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX[m.group()], text)


def markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, disable_numparse=True) if len(table) else "(no rows)"


def evaluations_table(summaries: dict[str, dict[str, Any]], trial_ids: list[str]) -> pd.DataFrame:
    """Per trial and extra evaluation (a signal sample, another file): jets, MSEs, fraction within 1 %, dijet closure."""
    rows = []
    for trial_id in trial_ids:
        summary = summaries[trial_id]
        for label, brief in summary.get("evaluations", {}).items():
            rows.append(
                {
                    "Trial": trial_id,
                    "Latent space dimensions": summary["config"]["model"]["latent"],
                    "Evaluation": label,
                    "Source": Path(brief.get("source") or "").name,
                    "Jets": f"{brief.get('n_jets') or 0:,}",
                    "MSE (own normalisation)": _sci(brief.get("mse")),
                    "Reference MSE": _sci(brief.get("reference_mse")),
                    "Jets within 1 % (mean over variables)": _fraction(brief.get("within_1pct")),
                    "Dijet peak shift": f"{brief['peak_shift_pct']:+.2f} %" if "peak_shift_pct" in brief else "",
                    "Dijet width change": f"{brief['width_change_pct']:+.1f} %" if "width_change_pct" in brief else "",
                }
            )
    return pd.DataFrame(rows)


def anomaly_table(best: pd.DataFrame, median: pd.DataFrame, summaries: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per z, signal and pick (best, median trial): how well the per-jet reconstruction error tells the signal's jets
    from the validation (background) jets: ROC AUC and background rejection at 50 % and 10 % signal efficiency."""
    rows = []
    for (_, top), (_, middle) in zip(best.iterrows(), median.iterrows(), strict=True):
        for pick, trial in (("best", top), ("median", middle)):
            metrics = summaries[trial["trial_id"]]["metrics"]
            for label, result in _anomalies(metrics):
                rows.append(
                    {
                        "Latent space dimensions": int(trial["latent"]),
                        "trial": f"{pick} ({trial['trial_id']})",
                        "signal": label,
                        "reference MSE": _sci(metrics.get("reference_mse")),
                        "AUC": f"{result['auc']:.3f}",
                        "rejection at 50 %": rejection_text(result, 50),
                        "rejection at 10 %": rejection_text(result, 10),
                    }
                )
    return pd.DataFrame(rows)


def _anomalies(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A trial's anomaly figures per signal that a table can show (a file made elsewhere may hold anything)."""
    anomaly = metrics.get("anomaly")
    if not isinstance(anomaly, dict):
        return []
    return [
        (str(label), result) for label, result in anomaly.items() if isinstance(result, dict) and isinstance(result.get("auc"), int | float)
    ]


def rejection_text(result: dict[str, Any], at: int) -> str:
    """A rejection at `at` % signal efficiency as people should read it: with the background jets it rests on and its
    68 % interval ('12.3 (11.8 to 12.9; 570 of 7,035 pass)'), or '> N' when none of N passes ('> ?' when a file does
    not say). Files of an older hpcsweep give the bare number."""
    value, n = result.get(f"rejection_at_{at}"), result.get("n_background")
    passing, interval = result.get(f"passing_at_{at}"), result.get(f"rejection_at_{at}_68")
    if not isinstance(value, int | float):
        return (f"> {n:,} (none of {n:,} pass)" if isinstance(passing, int) else f"> {n:,}") if isinstance(n, int) else "> ?"
    if not (isinstance(passing, int) and isinstance(n, int) and isinstance(interval, list) and len(interval) == 2):
        return f"{value:.3g}"
    low, high = interval
    span = f"{low:.3g} to {high:.3g}" if isinstance(high, int | float) else f"> {low:.3g}"
    return f"{value:.3g} ({span}; {passing:,} of {n:,} pass)"
