"""The compression section of `make bench`: the compressors a sweep finds against the peers, throughput and memory.

1. the shipped compression sweep (`sweeps/compress.yaml`, run or resumed here as `make sweep SWEEP=compress` does:
   finished trials are kept): every trial's bytes per jet as `hpcsweep compress` writes them for its validation
   jets at 1 % and 0.1 % (latents, coded residuals, the compressor itself over 1M jets), beside SZ3, ZFP, fpzip and
   mantissa + zstd on the same jets; goals: the best trial at most 9.0 B/jet at 1 %, the best rate-aware AE at or
   below the best coder alone;
2. the same search on a file shaped like a user's: four variables (m, pt, eta, phi) in MeV as float32, with massless
   and slightly negative masses: the best compressor against SZ3 (goal: at most 0.8x);
3. what more training jets give: the best coder alone fitted anew on a 4x larger independent sample;
4. `hpcsweep compress` / `decompress` of flat ROOT files of 1M and 4M jets with the exported winner, the best coder
   alone and the best AE's compressor: jets per second and peak memory of a fresh process, and each compressor
   alone in memory.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hpcsweep.data.generate import Sample

RESULTS = Path("results")  # the sweeps of `make sweep SWEEP=compress` (finished trials are kept), and the bench's own
SWEEP = Path("sweeps/compress.yaml")
BOUNDS = (0.01, 0.001)
SIZES = (1_000_000, 4_000_000)
MORE = Sample("qcd", 40_000, seed=2)  # the larger sample (the default one is 10,000 events, seed 1)
GOAL_BYTES, GOAL_FOUR = 9.0, 0.8
GOAL_RATE, GOAL_RSS_MB, GOAL_SMALL_S, GOAL_SZ3_SPEED, GOAL_SZ3_BYTES = 1_000_000, 1000, 1.0, 0.5, 0.55  # issue 23 item 5
SMALL = 28_000  # jets of the small file timed end to end


def section() -> list[str]:
    """The Markdown lines of the compression section."""
    from hpcsweep.compress.export import best_trial, export_bundle
    from hpcsweep.store import trial_path

    started = time.perf_counter()
    _sweep(SWEEP)
    sweep_s = time.perf_counter() - started
    folder_of = RESULTS / "compress"
    lines = sweep_table(folder_of, sweep_s)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        lines += ["", *four_variable_table(Path("data/bench"))]
        lines += ["", *more_jets_lines(folder_of)]
        winner = best_trial(folder_of, rank_by="bytes")
        alone = best_trial(folder_of, latent=0)
        network = next((config["trial_id"] for config, _ in _trials(folder_of) if config["model"]["kind"] != "codec"), None)
        bundles = []
        for trial in dict.fromkeys(t for t in (winner, alone, network) if t):
            path = folder / f"{trial}.h5"
            began = time.perf_counter()
            export_bundle(trial_path(folder_of, trial), path)
            bundles.append((trial, path, time.perf_counter() - began))
        lines += ["", *throughput_table(bundles, folder)]
    return lines


def _sweep(sweep_file: Path) -> None:
    """Run (or resume: finished trials are kept) a sweep into RESULTS, and write its review."""
    from hpcsweep.config import load_sweep

    for command in (["sweep", str(sweep_file), "--no-review"], ["aggregate", load_sweep(sweep_file).name, "--no-detail"]):
        subprocess.run([sys.executable, "-m", "hpcsweep", *command, "--results", str(RESULTS)], check=True, capture_output=True)


def _trials(folder: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(config with its trial id and training jets, validation evaluation) of every finished trial of a sweep folder,
    fewest bytes first."""
    from hpcsweep.store import read_trial, scan

    summaries, _ = scan(folder)
    done = [trial for trial, summary in summaries.items() if summary["state"] == "done"]
    records = [read_trial(folder / "trials" / f"{trial}.h5", weights=False) for trial in done]
    pairs = [
        (r.config | {"trial_id": r.trial_id, "n_train": r.metrics["n_train"]}, r.evaluation["validation"])
        for r in records
        if "compressor" in r.evaluation.get("validation", {})
    ]
    return sorted(pairs, key=lambda pair: pair[1]["compressor"]["bytes_per_jet"])


def _describe(config: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, z, rate weight) of a trial, and its predictors' settings folded into the kind."""
    codec = config["codec"]
    settings = f"predictors {'x'.join(map(str, codec['hidden']))}, {codec['steps']} steps, {codec['classes']} classes"
    if config["model"]["kind"] == "codec":
        return f"learned coder alone ({settings})", "0", ""
    hidden = "x".join(map(str, config["model"]["hidden"]))
    return (
        f"{config['model']['kind'].upper()} {hidden} + coded residuals ({settings})",
        str(config["model"]["latent"]),
        f"{config['train'].get('rate_lambda', 0):g}",
    )


def sweep_table(folder: Path, sweep_s: float) -> list[str]:
    """Every trial of the compression sweep at both bounds, the peers on the same jets, and the goals."""
    from hpcsweep.codec import compress_with_peers

    trials = _trials(folder)
    x_val = _validation_jets(trials[0][0])
    varset = _varset(trials[0][0])
    lines = [
        f"The shipped compression sweep (`make sweep SWEEP=compress`: {len(trials)} trials, {sweep_s:.0f} s here including "
        f"what earlier runs left finished in `{folder}`), on the validation split of the default sample ({len(x_val):,} "
        f"jets x {x_val.shape[1]} variables; its {trials[0][0]['n_train']:,} training jets fit each compressor). Bytes per jet as `hpcsweep compress` writes them for these jets (a test pins that the "
        "trial's number is the command's), every value within the bound; 'over 1M jets': the compressor's own bytes "
        "spread over a file of 1M jets, counted in the total. Peers: each column its own stream, at the same bound.",
        "",
        "| compressor | z | rate weight | latents | coded residuals | compressor over 1M jets | total at 1 % | total at 0.1 % | trial |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for config, validation in trials:
        measured = validation["compressor"]
        fine = measured["bounds"].get("0.001", {}).get("bytes_per_jet")
        kind, z, rate = _describe(config)
        lines.append(
            f"| {kind} | {z} | {rate} | {measured['latent_per_jet']:.2f} | {measured['residual_per_jet']:.2f} | "
            f"{measured['model_bytes'] / measured['amortised_over']:.2f} | **{measured['bytes_per_jet']:.2f}** | "
            f"{'' if fine is None else f'{fine:.2f}'} | {config['trial_id']} |"
        )
    peers = {bound: compress_with_peers(x_val, [v.residual for v in varset.variables], [v.discrete for v in varset.variables], bound)
             for bound in BOUNDS}  # fmt: skip
    for peer in peers[BOUNDS[0]]:
        lines.append(f"| {peer} | | | | | | {peers[0.01][peer][0]:.2f} | {peers[0.001][peer][0]:.2f} | |")
    best_config, best = trials[0]
    networks = [(c, v) for c, v in trials if c["model"]["kind"] != "codec"]
    alone = [(c, v) for c, v in trials if c["model"]["kind"] == "codec"]
    sz3 = peers[0.01].get("SZ3", (float("nan"),))[0]
    size = best["compressor"]["bytes_per_jet"]
    lines += [
        "",
        f"Best trial at 1 %: {_describe(best_config)[0]}, z = {_describe(best_config)[1]}: **{size:.2f} B/jet**, "
        f"{size / sz3:.2f}x SZ3's {sz3:.2f} (goal: at most {GOAL_BYTES} B/jet: {'met' if size <= GOAL_BYTES else '**not met**'}).",
    ]
    if networks and alone:
        ae, coder = networks[0][1]["compressor"]["bytes_per_jet"], alone[0][1]["compressor"]["bytes_per_jet"]
        lines[-1] += (
            f" Best rate-aware AE {ae:.2f} against the best coder alone {coder:.2f} (goal: at or below it: "
            f"{'met' if ae <= coder else '**not met**'}, {ae - coder:+.2f} B/jet)."
        )
    print("\n".join(lines), flush=True)
    return lines


def _validation_jets(config: dict[str, Any]) -> np.ndarray:
    from hpcsweep.config import DataConfig
    from hpcsweep.data import prepare
    from hpcsweep.data.read import open_cache
    from hpcsweep.trial import split_indices

    data = DataConfig.model_validate(config["data"])
    x = open_cache(prepare(data, progress=False)).matrix(slice(0, data.max_jets))
    _, val = split_indices(len(x), data.val_fraction, data.split_seed)
    return x[val].astype(np.float64)


def _varset(config: dict[str, Any]):
    from hpcsweep.data.varset import load_varset

    return load_varset(config["data"]["varset"])


FOUR_VARSET = """name: atlas4
description: leading jets as an ATLAS analysis keeps them, MeV in the file
tree: jets
four_momentum: {pt: pt, eta: eta, phi: phi, mass: m}
variables:
  - {name: m, unit: GeV, unit_scale: 0.001, residual: relative}
  - {name: pt, unit: GeV, unit_scale: 0.001, positive: true}
  - {name: eta}
  - {name: phi, unit: rad, residual: phi}
"""
FOUR_SWEEP = """name: four
data: {{source: {source}, varset: {varset}}}
model: {{hidden: [64, 64]}}
train: {{epochs: 150, batch_size: 256, lr: 1.0e-2}}
codec: {{steps: 1500}}
evaluation: {{signals: []}}
rank_by: bytes
points:
  - {{model.kind: codec}}
  - {{model.kind: codec, codec.hidden: [32, 32]}}
  - {{model.latent: 1, train.rate_lambda: 1.0e-2}}
  - {{model.latent: 2, train.rate_lambda: 1.0e-2}}
  - {{model.latent: 2, train.rate_lambda: 3.0e-2}}
  - {{model.latent: 3, train.rate_lambda: 1.0e-2}}
"""


def four_variable_table(folder: Path) -> list[str]:
    """The search on a user-shaped flat file of m, pt, eta, phi in MeV (the default sample's jets; 64 massless and 31
    slightly negative masses, as a real ATLAS file has), against SZ3 on the same validation jets."""
    import uproot

    from hpcsweep.data import load_jets, load_varset

    jets = load_jets(Path("data/generated/qcd_n10000_s1_v1.root"), load_varset("generated"))
    columns = {name: (jets.columns[name] * (1000 if name in ("m", "pt") else 1)).astype(np.float32) for name in ("m", "pt", "eta", "phi")}
    rng = np.random.default_rng(4)
    columns["m"][rng.choice(len(jets), 64, replace=False)] = 0.0
    negative = rng.choice(len(jets), 31, replace=False)
    columns["m"][negative] = -rng.uniform(1, 40, 31).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)  # a fixed place: the file is written the same each run, so its trials are kept
    source = (folder / "atlas_jets.root").resolve()
    with uproot.recreate(source) as handle:
        handle.mktree("jets", {name: np.float32 for name in columns}).extend(columns)
    (folder / "atlas4.yaml").write_text(FOUR_VARSET)
    sweep = folder / "four.yaml"
    sweep.write_text(FOUR_SWEEP.format(source=source, varset=(folder / "atlas4.yaml").resolve()))
    started = time.perf_counter()
    _sweep(sweep)
    trials = _trials(RESULTS / "four")
    lines = [
        f"A file shaped like a user's: {len(jets):,} jets of m, pt, eta, phi in MeV as float32 (the default sample's, with 64 "
        f"massless and 31 slightly negative masses), variable set with `unit_scale: 0.001`; the same search "
        f"({len(trials)} trials, {time.perf_counter() - started:.0f} s), every trial's bytes on its validation jets at 1 %:",
        "",
        "| compressor | z | rate weight | latents | coded residuals | compressor over 1M jets | total | SZ3 | total / SZ3 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config, validation in trials:
        measured = validation["compressor"]
        sz3 = validation.get("baselines", {}).get("peers", {}).get("SZ3", {}).get("bytes_per_jet", float("nan"))
        kind, z, rate = _describe(config)
        lines.append(
            f"| {kind} | {z} | {rate} | {measured['latent_per_jet']:.2f} | {measured['residual_per_jet']:.2f} | "
            f"{measured['model_bytes'] / measured['amortised_over']:.2f} | **{measured['bytes_per_jet']:.2f}** | {sz3:.2f} | "
            f"{measured['bytes_per_jet'] / sz3:.3f} |"
        )
    best, validation = trials[0]
    ratio = validation["compressor"]["bytes_per_jet"] / validation["baselines"]["peers"]["SZ3"]["bytes_per_jet"]
    lines += ["", f"Best: {ratio:.2f}x SZ3's bytes (goal: at most {GOAL_FOUR}x: {'met' if ratio <= GOAL_FOUR else '**not met**'})."]
    print("\n".join(lines), flush=True)
    return lines


def more_jets_lines(folder: Path) -> list[str]:
    """The best coder alone of the sweep, fitted anew with its settings on every jet of a 4x larger independent
    sample, measured on the same validation jets: what more training jets would give."""
    from hpcsweep.codec import Settings, codec_kinds, energy_of, fit_compressor, measure
    from hpcsweep.data import data_root, load_jets
    from hpcsweep.data.generate import generate

    config, validation = next((c, v) for c, v in _trials(folder) if c["model"]["kind"] == "codec")
    varset = _varset(config)
    x_val = _validation_jets(config)
    more = load_jets(generate(MORE, data_root() / "generated", progress=False), varset).matrix().astype(np.float64)
    codec = config["codec"]
    started = time.perf_counter()
    compressor = fit_compressor(varset.names, codec_kinds(varset), more, [0.01], energy_of(varset),
                                settings=Settings(tuple(codec["hidden"]), codec["classes"], codec["steps"]))  # fmt: skip
    fit_s = time.perf_counter() - started
    stats, _ = measure(compressor, x_val, 0.01)
    line = (
        f"More training jets: the best coder alone (trial {config['trial_id']}, {validation['compressor']['bytes_per_jet']:.2f} B/jet "
        f"fitted on the default sample's {config['n_train']:,} training jets) fitted with the same settings on "
        f"{len(more):,} jets of an independent sample ({MORE.events:,} events, seed {MORE.seed}; {fit_s:.0f} s): "
        f"**{stats['bytes_per_jet']:.2f} B/jet** on the same validation jets at 1 %."
    )
    print(line, flush=True)
    return [line]


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
# this process's own peak (VmHWM: its memory since exec; ru_maxrss would keep the bench's, which forked it) and its
# workers' (their ru_maxrss: at most what they inherited from this process when spawned, or their own peak)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(summary.jets, summary.seconds, summary.total_bytes, peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def throughput_table(bundles: list[tuple[str, Path, float]], folder: Path) -> list[str]:
    from hpcsweep.allocation import allocated_cores
    from hpcsweep.compress.apply import PARALLEL_ABOVE
    from hpcsweep.compress.bundle import load_bundle
    from hpcsweep.data import load_jets, load_varset

    jets = load_jets(Path("data/generated/qcd_n10000_s1_v1.root"), load_varset("generated")).matrix()
    lines = [
        "Flat ROOT files (one entry per jet: the 24 variables as float32/int32 and an event number, LZ4) of the default",
        "sample's jets repeated; `hpcsweep compress` at 1 % and `hpcsweep decompress` back to ROOT with the exported bundle,",
        "each in a fresh process (jets/s over the whole command: reading, coding in one worker process per core, writing;",
        "peak RSS: the command's process plus each worker's peak). Files this size carry their compressor (by default a file does when it makes at most 10 % of the file), counted in 'compressed'.",
        "",
        "| bundle | export (s) | jets | input (MB) | compressed (MB) | compress (jets/s) | peak RSS (MB) | decompress (jets/s) | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes, peaks, rates, alone = [], [], [], []
    for size in (*SIZES, SMALL):
        _write_flat(folder / f"flat_{size}.root", jets, size)
    block = np.tile(jets.astype(np.float64), (1_000_000 // len(jets) + 1, 1))[:1_000_000]
    for trial, bundle_path, export_s in bundles:
        compressor = load_bundle(bundle_path).compressor
        encode_s, decode_s, size = _in_process(compressor, block)
        alone.append((compressor.kind, trial, 1e6 / encode_s, 1e6 / decode_s, size))
        notes.append(f"{compressor.kind} ({trial}) alone in this process (one core), 1M jets in chunks of 40,000: encode "
                     f"{1e6 / encode_s:,.0f} jets/s, decode {1e6 / decode_s:,.0f} jets/s ({size / 1e6:.2f} B/jet)")  # fmt: skip
        for size in SIZES:
            source, packed, back = folder / f"flat_{size}.root", folder / f"flat_{size}.hpcz", folder / f"back_{size}.root"
            measured = []
            for command, src, dst in (("compress", source, packed), ("decompress", packed, back)):
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, command, str(bundle_path), str(src), str(dst)], capture_output=True, text=True, check=True
                )
                n_jets, seconds, _, rss, worker_rss = out.stdout.split()
                workers = allocated_cores() if src.stat().st_size > PARALLEL_ABOVE / (1 if command == "compress" else 8) else 0
                measured.append((int(n_jets) / float(seconds), (int(rss) + workers * int(worker_rss)) / 1024))
            rates.append(min(measured[0][0], measured[1][0]))
            peaks.append((trial, size, measured[0][1], measured[1][1]))
            lines.append(
                f"| {compressor.kind} ({trial}) | {export_s:.1f} | {size:,} | {source.stat().st_size / 1e6:.0f} | "
                f"{packed.stat().st_size / 1e6:.1f} | {measured[0][0]:,.0f} | {measured[0][1]:.0f} | {measured[1][0]:,.0f} | {measured[1][1]:.0f} |"
            )
            print(lines[-1], flush=True)
            packed.unlink()
            back.unlink()
    growth = max(max(b[2] / a[2], b[3] / a[3]) for a, b in zip(peaks[::2], peaks[1::2], strict=True))
    lines += ["", *(f"- {note}." for note in notes), "",
              f"Peak memory flat in the file size: {'met' if growth < 1.2 else '**not met**'} ({growth:.2f}x at most for a "
              f"{SIZES[-1] // SIZES[0]}x larger file)."]  # fmt: skip
    return lines + _goals(bundles[0], folder, jets, block, alone, rates, peaks)


def _in_process(compressor: Any, block: np.ndarray, chunk: int = 40_000) -> tuple[float, float, int]:
    """Seconds to encode and to decode `block` at 1 % in this process, in chunks of about what `compress` codes at once
    (io.STEP), and the bytes."""
    parts = [block[start : start + chunk] for start in range(0, len(block), chunk)]
    started = time.perf_counter()
    coded = [compressor.encode(part, 0.01) for part in parts]
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    for data in coded:
        compressor.decode(data, 0.01)
    return encode_s, time.perf_counter() - started, sum(map(len, coded))


def _sz3_seconds(block: np.ndarray, bound: float = 0.01) -> tuple[float, float, int]:
    """SZ3 (`pysz`) on the same jets, one core, as the peers' table codes them (`hpcsweep.codec.peers`: a relative
    variable's logs, its zeros in a mask; absolute ones as they are; discrete ones by zstd): seconds to compress and to
    decompress every column, transforms included, and the bytes."""
    import zstandard
    from pysz import sz, szConfig, szErrorBoundMode

    from hpcsweep.codec import codec_kinds
    from hpcsweep.codec.coder import SAFETY
    from hpcsweep.data import load_varset

    kinds = codec_kinds(load_varset("generated"))
    columns = [np.ascontiguousarray(block[:, i].astype(np.float32)) for i in range(block.shape[1])]
    packed: list[tuple[str, Any, Any]] = []
    started = time.perf_counter()
    for kind, values in zip(kinds, columns, strict=True):
        if kind == "discrete":
            packed.append((kind, zstandard.ZstdCompressor(level=3).compress(values.tobytes()), None))
            continue
        config = szConfig()
        config.errorBoundMode = szErrorBoundMode.ABS
        config.absErrorBound = (np.log1p(bound) if kind == "relative" else bound) * SAFETY
        zero = values <= 0
        data = np.log(np.where(zero, 1.0, values).astype(np.float64)) if kind == "relative" else values.astype(np.float64)
        mask = zstandard.ZstdCompressor(level=3).compress(np.packbits(zero).tobytes()) if kind == "relative" else None
        packed.append((kind, sz.compress(data, config)[0], mask))
    compress_s = time.perf_counter() - started
    started = time.perf_counter()
    for kind, data, mask in packed:
        if kind == "discrete":
            np.frombuffer(zstandard.ZstdDecompressor().decompress(data), np.float32)
            continue
        back, _ = sz.decompress(data, np.float64, (len(block),))
        if kind == "relative":
            zero = np.unpackbits(np.frombuffer(zstandard.ZstdDecompressor().decompress(mask), np.uint8), count=len(block)).astype(bool)
            np.where(zero, 0.0, np.exp(back)).astype(np.float32)
    decompress_s = time.perf_counter() - started
    size = sum((len(data) if isinstance(data, bytes) else data.nbytes) + (len(mask) if mask else 0) for _, data, mask in packed)
    return compress_s, decompress_s, size


def _command_seconds(command: str, bundle: Path, source: Path, output: Path, repeats: int = 3) -> float:
    """Best wall-clock of `hpcsweep COMMAND` in a fresh process, from its start to its exit."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hpcsweep", command, str(source), "--model", str(bundle), "-o", str(output)],
                       check=True, capture_output=True)  # fmt: skip
        best = min(best, time.perf_counter() - started)
    return best


def _goals(
    first: tuple[str, Path, float],
    folder: Path,
    jets: np.ndarray,
    block: np.ndarray,
    alone: list[tuple[str, str, float, float, int]],
    rates: list[float],
    peaks: list[tuple[str, int, float, float]],
) -> list[str]:
    """Issue 23's speed and memory goals, each with its verdict: jets per second of the commands, their peak memory,
    a small file end to end, and the learned coder's speed against SZ3's on the same jets, one core each."""
    trial, bundle, _ = first
    small, packed = folder / f"flat_{SMALL}.root", folder / f"flat_{SMALL}.hpcz"
    small_s = [
        _command_seconds("compress", bundle, small, packed),
        _command_seconds("decompress", bundle, packed, folder / "back_small.root"),
    ]
    sz3_compress_s, sz3_decompress_s, sz3_bytes = _sz3_seconds(block)
    kind, _, encode_rate, decode_rate, size = next(entry for entry in alone if entry[1] == trial)
    sz3_rates = (len(block) / sz3_compress_s, len(block) / sz3_decompress_s)
    speed = min(encode_rate / sz3_rates[0], decode_rate / sz3_rates[1])
    worst_rss = max(max(peak[2], peak[3]) for peak in peaks)

    def verdict(met: bool) -> str:
        return "met" if met else "**not met**"

    return [
        "",
        f"Goals (issue 23), with the winner's bundle ({kind}, {trial}) unless said:",
        "",
        f"- compress and decompress at least {GOAL_RATE:,} jets/s on the {_cores()} cores, command start to exit: "
        f"{verdict(min(rates) >= GOAL_RATE)} ({min(rates):,.0f} jets/s at the slowest, {max(rates):,.0f} at the fastest, of every bundle and size above);",
        f"- peak memory (command and workers) at most {GOAL_RSS_MB} MB: {verdict(worst_rss <= GOAL_RSS_MB)} ({worst_rss:.0f} MB at most above);",
        f"- a {SMALL:,}-jet file end to end at most {GOAL_SMALL_S:g} s: {verdict(max(small_s) <= GOAL_SMALL_S)} "
        f"(compress {small_s[0]:.2f} s, decompress {small_s[1]:.2f} s, best of 3 fresh processes);",
        f"- at least {GOAL_SZ3_SPEED}x SZ3's speed on the same 1M jets, one core each: {verdict(speed >= GOAL_SZ3_SPEED)} "
        f"(SZ3 compresses {sz3_rates[0]:,.0f} jets/s and decompresses {sz3_rates[1]:,.0f} jets/s, {sz3_bytes / len(block):.2f} B/jet; "
        f"the learned coder {encode_rate:,.0f} and {decode_rate:,.0f}: {encode_rate / sz3_rates[0]:.2f}x and {decode_rate / sz3_rates[1]:.2f}x);",
        f"- while writing at most {GOAL_SZ3_BYTES}x SZ3's bytes on those jets: {verdict(size <= GOAL_SZ3_BYTES * sz3_bytes)} "
        f"({size / len(block):.2f} B/jet against {sz3_bytes / len(block):.2f}: {size / sz3_bytes:.2f}x).",
    ]


def _cores() -> int:
    from hpcsweep.allocation import allocated_cores

    return allocated_cores()


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
