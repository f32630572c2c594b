"""The compression section of `make bench`: bytes per jet against the peers, throughput, and memory.

1. bytes per jet of every compressor on the validation jets of the default sweep (24 generator variables),
   at 1 % and 0.1 % on every value: raw, SZ3, ZFP, fpzip, mantissa + zstd, independent quantisation + range
   coding, hpcsweep's learned compressor (what `hpcsweep compress` writes), and the best AE of z = 12 and 18
   alone (float16 latents, no bound), as the predictor, and as side information of the learned compressor;
   then, for z = 12 at 1 %, coarser latents (quantised and range-coded) as the one measured way an AE could pay;
2. `hpcsweep compress` / `decompress` of flat ROOT files of 1M and 4M jets (the default sample's jets, repeated):
   jets per second and the peak memory of a fresh process, and the codec alone in memory.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hpcsweep.data.generate import Sample

RESULTS = Path("results/default")
LATENTS = (12, 18)
BOUNDS = (0.01, 0.001)
LATENT_STEPS = (0.05, 0.2)  # latent quantisation steps tried for z = 12 (latents are O(1))
SIZES = (1_000_000, 4_000_000)
STEPS = 600


MORE = Sample("qcd", 40_000, seed=2)  # the larger sample of the training-size row (the default sample is 10,000 events, seed 1)


def section() -> list[str]:
    """The Markdown lines of the compression section."""
    from hpcsweep.compress.bundle import load_bundle
    from hpcsweep.compress.export import best_trial, export_bundle
    from hpcsweep.store import trial_path

    _ensure_default_sweep()
    with tempfile.TemporaryDirectory() as folder:
        bundle_path = Path(folder) / "z18.h5"
        started = time.perf_counter()
        export_bundle(trial_path(RESULTS, best_trial(RESULTS, 18)), bundle_path, BOUNDS, steps=STEPS, progress=False)
        export_s = time.perf_counter() - started
        bundle = load_bundle(bundle_path)
        lines = bytes_table(bundle, export_s)
        lines += ["", "Four variables per jet (m, pt, eta, phi of the same jets; 80 % to fit, 20 % measured):", "", *four_variable_table()]
        lines += ["", *throughput_table(bundle_path, Path(folder))]
    return lines


FOUR = {
    "name": "four",
    "four_momentum": {"pt": "pt", "eta": "eta", "phi": "phi", "mass": "m"},
    "prefixes": ["jet_"],
    "variables": [
        {"name": "m", "positive": True},
        {"name": "pt", "positive": True},
        {"name": "eta"},
        {"name": "phi", "residual": "phi"},
    ],
}


def four_variable_table() -> list[str]:
    """The learned compressor against coding each variable alone and SZ3 on a file of m, pt, eta, phi: variables
    that are nearly independent (phi uniform), where a predictor has little to find."""
    from hpcsweep.codec.fit import codec_kinds, fit_codec, fit_independent
    from hpcsweep.codec.peers import compress_with_peers
    from hpcsweep.data import load_jets, load_varset

    varset = load_varset(FOUR)
    x = load_jets(Path("data/generated/qcd_n10000_s1_v1.root"), varset).matrix().astype(np.float64)
    fit = np.random.default_rng(0).random(len(x)) < 0.8
    lines = ["| bound | each variable alone | learned predictors | SZ3 | learned / alone |", "|---|---:|---:|---:|---:|"]
    for bound in BOUNDS:
        alone = len(fit_independent(varset.names, codec_kinds(varset), x[fit], bound).encode(x[~fit])) / (~fit).sum()
        learned = len(fit_codec(varset, x[fit], bound, steps=STEPS).encode(x[~fit])) / (~fit).sum()
        peers = compress_with_peers(x[~fit], [v.residual for v in varset.variables], [False] * 4, bound)
        sz3 = f"{peers['SZ3'][0]:.2f}" if "SZ3" in peers else ""
        lines.append(f"| {100 * bound:g} % | {alone:.2f} | {learned:.2f} | {sz3} | {learned / alone:.3f} |")
        print(lines[-1], flush=True)
    return lines


def _ensure_default_sweep() -> None:
    """The default sweep's trials (run, or resumed, as `make sweep` does: finished trials are skipped)."""
    subprocess.run([sys.executable, "-m", "hpcsweep", "sweep", "default", "--no-review"], check=True, capture_output=True)


def _validation(trial_file: Path):
    """(measure, varset, x_train, x_val) of a trial: its own split of its own data."""
    from hpcsweep.config import DataConfig
    from hpcsweep.data import prepare
    from hpcsweep.data.read import open_cache
    from hpcsweep.data.varset import load_varset
    from hpcsweep.trial import load_trained, split_indices

    record, _, _, measure = load_trained(trial_file)
    data = DataConfig.model_validate(record.config["data"])
    x = open_cache(prepare(data, progress=False)).matrix(slice(0, data.max_jets))
    train, val = split_indices(len(x), data.val_fraction, data.split_seed)
    return measure, load_varset(record.varset), x[train], x[val]


def bytes_table(bundle, export_s: float) -> list[str]:
    import torch
    import zstandard

    from hpcsweep.compress.export import best_trial
    from hpcsweep.codec.fit import codec_kinds, fit_ae_codec, fit_codec, fit_independent
    from hpcsweep.codec.peers import available, compress_with_peers
    from hpcsweep.store import trial_path
    from hpcsweep.trial import load_trained
    from hpcsweep.trial.evaluate import in_batches, residuals

    torch.set_num_threads(2)
    trials = {z: trial_path(RESULTS, best_trial(RESULTS, z)) for z in LATENTS}
    measure, varset, x_train, x_val = _validation(trials[LATENTS[-1]])
    aes = {z: load_trained(path)[1:3] for z, path in trials.items()}
    n = len(x_val)
    kinds = codec_kinds(varset)
    rows: list[tuple[str, str, float, int | None, np.ndarray]] = []  # bound, compressor, bytes/jet, model bytes, decoded

    def zstd(data: bytes) -> int:
        return len(zstandard.ZstdCompressor(level=19).compress(data))

    def through(z: int, lat_step: float | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Latents of the training and validation jets (float16, or rounded to a grid of `lat_step`), and the AE's output."""
        model, normaliser = aes[z]
        latents, outputs = [], []
        for x in (x_train, x_val):
            with torch.no_grad():
                latent = in_batches(model, torch.from_numpy(normaliser.transform(x)), "encode")
                latent = latent.half().float() if lat_step is None else torch.round(latent / lat_step) * lat_step
                decoded = in_batches(model, latent, "decode").numpy()
            latents.append(latent.numpy())
            outputs.append(measure.restore(normaliser.inverse_transform(decoded)))
        return latents, outputs

    def with_side(label: str, what: str, codec, side_val: np.ndarray, latent_bytes: int) -> None:
        data = codec.encode(x_val, side_val)
        rows.append((label, what, (latent_bytes + len(data)) / n, None, codec.decode(data, side_val)))

    raw = x_val.astype(np.float32)
    rows.append(("none", "raw float32", raw.nbytes / n, None, raw))
    rows.append(("none", "raw float32 + zstd", zstd(raw.tobytes()) / n, None, raw))
    for z in LATENTS:
        (_, latent), (_, output) = through(z)
        rows.append(("none", f"AE z = {z}, float16 latents (+ zstd)", zstd(latent.astype(np.float16).tobytes()) / n, None, output))
    for bound in BOUNDS:
        label = f"{100 * bound:g} %"
        peers = compress_with_peers(x_val, [v.residual for v in varset.variables], [v.discrete for v in varset.variables], bound)
        rows += [(label, peer, size, None, decoded) for peer, (size, decoded) in peers.items()]
        alone = fit_independent(varset.names, kinds, x_train, bound)
        data = alone.encode(x_val)
        rows.append(
            (label, "quantisation + zstd (the coder's floor), each variable alone", _zstd_bins(alone, x_val) / n, None, alone.decode(data))
        )
        rows.append((label, "quantisation + range coding, each variable alone", len(data) / n, None, alone.decode(data)))
        codec = bundle.codec(bound)
        data = codec.encode(x_val)
        rows.append((label, "**hpcsweep compress** (learned predictors)", len(data) / n, _state_bytes(codec), codec.decode(data)))
        if bound == BOUNDS[0]:  # more training jets: the other measured way to fewer bytes
            more = _more_jets(varset)
            codec = fit_codec(varset, more, bound, steps=2 * STEPS)
            data = codec.encode(x_val)
            what = f"learned predictors fitted on {len(more):,} jets of another sample ({MORE.events:,} events)"
            rows.append((label, what, len(data) / n, _state_bytes(codec), codec.decode(data)))
        for z in LATENTS:
            (_, lat_val), (out_train, out_val) = through(z)
            latent_bytes = zstd(lat_val.astype(np.float16).tobytes())
            predictor = fit_ae_codec(varset.names, kinds, x_train, out_train, bound)
            what = f"AE z = {z} as predictor (float16 latents + coded residuals)"
            with_side(label, what, predictor, predictor.side_features(out_val), latent_bytes)
            both = fit_codec(varset, x_train, bound, side=predictor.side_features(out_train), steps=STEPS)
            what = f"AE z = {z} + learned predictors (float16 latents + coded residuals)"
            with_side(label, what, both, both.side_features(out_val), latent_bytes)
            if bound != BOUNDS[0] or z != LATENTS[0]:
                continue
            for step in LATENT_STEPS:  # coarser latents: the one measured way an AE could pay for itself
                (lat_train, lat_val), (out_train, out_val) = through(z, step)
                latents = fit_independent([f"z{i}" for i in range(z)], ["absolute"] * z, lat_train, step / 2)
                coarse = fit_codec(varset, x_train, bound, side=both.side_features(out_train), steps=STEPS)
                what = f"AE z = {z}, latents on a {step:g} grid range-coded, + learned predictors"
                with_side(label, what, coarse, coarse.side_features(out_val), len(latents.encode(lat_val)))
    lines = [
        f"Validation split of the default sweep's data: {n:,} jets x {len(varset.names)} variables ({len(x_train):,} training "
        "jets). Bound: every value within it, relatively for scale variables and absolutely for angles and signed ones; "
        "discrete ones losslessly. Peers installed: " + (", ".join(available()) or "none (pip install hpcsweep[compare])") + ".",
        f"The learned compressor is the one `hpcsweep export` fits on the training jets ({STEPS} steps per variable; the export "
        f"of z = {LATENTS[-1]} with both bounds took {export_s:.0f} s). Its model bytes (predictor weights and tables, zstd) "
        "are counted per jet over these validation jets and over a file of 1M jets.",
        "",
        "| bound | compressor | bytes/jet | + model, this file | + model, 1M jets | pt width [%] | m width [%] | values within 1 % | max error |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    shown = [varset.four_momentum["pt"], varset.four_momentum["mass"]]
    continuous = [v.name for v in varset.variables if not v.discrete]
    sz3 = {}
    for bound_label, what, size, model_bytes, decoded in rows:
        stats = residuals(x_val, np.asarray(decoded, dtype=np.float32), measure)
        within = [stats[name]["within_1pct"] for name in continuous]
        worst = max(_max_error(x_val[:, i], np.asarray(decoded)[:, i], kinds[i]) for i in range(len(kinds)) if kinds[i] != "discrete")
        per_file = f"{size + model_bytes / n:.2f}" if model_bytes else ""
        per_million = f"{size + model_bytes / 1e6:.2f}" if model_bytes else ""
        if what == "SZ3":
            sz3[bound_label] = size
        lines.append(
            f"| {bound_label} | {what} | {size:.2f} | {per_file} | {per_million} | {100 * stats[shown[0]]['width']:.3g} | "
            f"{100 * stats[shown[1]]['width']:.3g} | {100 * sum(within) / len(within):.1f} % | {_percent(worst)} |"
        )
        print(lines[-1], flush=True)
    learned = {b: s for b, w, s, _, _ in rows if w.startswith("**hpcsweep")}
    ratios = ", ".join(f"{learned[b] / sz3[b]:.2f}x SZ3's bytes at {b}" for b in learned if b in sz3)
    more = next((s for b, w, s, _, _ in rows if w.startswith("learned predictors fitted on")), None)
    met = "1 %" in sz3 and learned["1 %"] <= 0.5 * sz3["1 %"]
    lines += ["", f"Goal: at most 0.5x SZ3's bytes per jet at 1 %: {'met' if met else '**not met**'} ({ratios})."]
    if more is not None and "1 %" in sz3:
        lines[-1] += f" Fitted on the larger sample's jets (the row 'learned predictors fitted on ...'): {more / sz3['1 %']:.2f}x."
    return lines


def _more_jets(varset) -> np.ndarray:
    """Every jet of an independent, 4x larger QCD sample (generated once, then cached like any sample)."""
    from hpcsweep.data import data_root, load_jets
    from hpcsweep.data.generate import generate

    return load_jets(generate(MORE, data_root() / "generated", progress=False), varset).matrix()


def _zstd_bins(codec, x: np.ndarray) -> int:
    """Bytes of every column's bins (int32, zero/escape marked, escaped values as float64) after zstd -19, column by column."""
    import zstandard

    from hpcsweep.codec.coder import ESCAPE, FIRST

    total = 0
    for i, column in enumerate(codec.columns):
        k, status = column.bins(x[:, i])
        marked = np.where(status == FIRST, k, np.iinfo(np.int32).min + status.astype(np.int64)).astype(np.int32)
        total += len(zstandard.ZstdCompressor(level=19).compress(marked.tobytes()))
        if (status == ESCAPE).any():
            total += len(zstandard.ZstdCompressor(level=19).compress(x[status == ESCAPE, i].tobytes()))
    return total


def _max_error(original: np.ndarray, decoded: np.ndarray, kind: str) -> float:
    """Largest error: relative for scale variables (where the value is positive), absolute otherwise."""
    original, decoded = original.astype(np.float64), decoded.astype(np.float64)
    if kind == "relative":
        positive = original > 0
        return float(np.max(np.abs(decoded[positive] - original[positive]) / original[positive]))
    return float(np.max(np.abs(decoded - original)))


def _percent(value: float) -> str:
    return f"{100 * value:.3g} %"


def _state_bytes(codec) -> int:
    import zstandard

    _, arrays = codec.state()
    return sum(len(zstandard.ZstdCompressor(level=19).compress(np.ascontiguousarray(a).tobytes())) for a in arrays.values())


CHILD = """
import resource, sys
from pathlib import Path
from hpcsweep.compress.apply import compress_file, decompress_file
from hpcsweep.compress.bundle import load_bundle
bundle = load_bundle(sys.argv[2])
if sys.argv[1] == "compress":
    summary = compress_file(Path(sys.argv[3]), bundle, 0.01, Path(sys.argv[4]), progress=False)
else:
    summary = decompress_file(Path(sys.argv[3]), bundle, Path(sys.argv[4]), progress=False)
print(summary.jets, summary.seconds, summary.total_bytes, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def throughput_table(bundle_path: Path, folder: Path) -> list[str]:
    from hpcsweep.allocation import allocated_cores
    from hpcsweep.compress.apply import PARALLEL_ABOVE
    from hpcsweep.compress.bundle import load_bundle
    from hpcsweep.data import load_jets, load_varset

    jets = load_jets(Path("data/generated/qcd_n10000_s1_v1.root"), load_varset("generated")).matrix()
    codec = load_bundle(bundle_path).codec(0.01)
    block = np.tile(jets.astype(np.float64), (1_000_000 // len(jets) + 1, 1))[:1_000_000]
    started = time.perf_counter()
    data = codec.encode(block)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    codec.decode(data)
    decode_s = time.perf_counter() - started
    lines = [
        "Flat ROOT files (one entry per jet: the 24 variables as float32/int32 and an event number, LZ4) of the default",
        "sample's jets repeated; `hpcsweep compress` at 1 % and `hpcsweep decompress` back to ROOT, each in a fresh process",
        "(jets/s over the whole command: reading, coding in one worker process per core, writing; peak RSS: the command's",
        "process plus each worker's peak).",
        "",
        "| jets | input (MB) | compressed (MB) | compress (jets/s) | peak RSS (MB) | decompress (jets/s) | peak RSS (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rates, peaks = [], []
    for size in SIZES:
        source, packed, back = folder / f"flat_{size}.root", folder / f"flat_{size}.hpcz", folder / f"back_{size}.root"
        _write_flat(source, jets, size)
        measured = []
        for command, src, dst in (("compress", source, packed), ("decompress", packed, back)):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, command, str(bundle_path), str(src), str(dst)], capture_output=True, text=True, check=True
            )
            n_jets, seconds, _, rss, worker_rss = out.stdout.split()
            workers = allocated_cores() if src.stat().st_size > PARALLEL_ABOVE / (1 if command == "compress" else 8) else 0
            measured.append((int(n_jets) / float(seconds), (int(rss) + workers * int(worker_rss)) / 1024))
        rates.append(measured)
        peaks.append((measured[0][1], measured[1][1]))
        lines.append(
            f"| {size:,} | {source.stat().st_size / 1e6:.0f} | {packed.stat().st_size / 1e6:.1f} | {measured[0][0]:,.0f} | "
            f"{measured[0][1]:.0f} | {measured[1][0]:,.0f} | {measured[1][1]:.0f} |"
        )
        print(lines[-1], flush=True)
        for path in (source, packed, back):
            path.unlink()
    met = [f"{size:,} jets" for size, r in zip(SIZES, rates, strict=True) if min(r[0][0], r[1][0]) >= 300_000]
    missed = [f"{size:,} jets" for size, r in zip(SIZES, rates, strict=True) if min(r[0][0], r[1][0]) < 300_000]
    growth = max(peaks[-1][0] / peaks[0][0], peaks[-1][1] / peaks[0][1])
    speed = "met" if not missed else "**not met**" if not met else f"met for {', '.join(met)}, **not met** for {', '.join(missed)}"
    lines += [
        "",
        f"The codec alone, in this process (BLAS on every core), 1M jets in one chunk: encode {1e6 / encode_s:,.0f} jets/s, "
        f"decode {1e6 / decode_s:,.0f} jets/s ({len(data) / 1e6:.2f} B/jet).",
        "",
        f"Goals: at least 300,000 jets/s each way on 2 cores: {speed} (the command's time includes starting the worker "
        f"processes, about a second); peak memory flat in the file size: {'met' if growth < 1.2 else '**not met**'} "
        f"({growth:.2f}x for a {SIZES[-1] // SIZES[0]}x larger file).",
    ]
    return lines


def _write_flat(path: Path, jets: np.ndarray, size: int, chunk: int = 500_000) -> None:
    import uproot

    from hpcsweep.data.varset import load_varset

    varset = load_varset("generated")
    types = {f"jet_{v.name}": np.int32 if v.discrete and v.name != "ActiveArea" else np.float32 for v in varset.variables}
    with uproot.recreate(path, compression=uproot.LZ4(1)) as handle:
        tree = handle.mktree("events", {"eventNumber": np.int64, **types})
        for start in range(0, size, chunk):
            rows = np.arange(start, min(start + chunk, size)) % len(jets)
            branches = {name: jets[rows, i].astype(types[name]) for i, name in enumerate(types)}
            tree.extend({"eventNumber": np.arange(start, start + len(rows), dtype=np.int64), **branches})
