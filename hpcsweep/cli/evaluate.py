"""evaluate: a stored trial's evaluation computed again, on its own data or another sample, and printed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hpcsweep.cli.common import print_rows
from hpcsweep.cli.options import add_command


def add_evaluate(commands: argparse._SubParsersAction) -> None:
    evaluate = add_command(commands, "evaluate", "(re)compute a stored trial's evaluation, on its own data or another sample", cmd_evaluate)
    evaluate.add_argument("trial", help="a trial file, results/<sweep>/trials/<id>.h5")
    on = evaluate.add_mutually_exclusive_group()
    on.add_argument("--source", metavar="FILE", help="a ROOT or Parquet file (or glob), read with the trial's variable set")
    on.add_argument("--signal", metavar="GEV|FILE", help="a signal file (as --source), or, for a trial of generated data, "
                                                        "a generated Z' -> q qbar sample of this mass")  # fmt: skip
    evaluate.add_argument("--events", type=int, default=2000, metavar="N", help="events of a generated --signal sample (default 2000)")
    evaluate.add_argument("--label", help="name of the result in the trial file (default: validation, zprime<GEV> or the file's stem)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Residuals in physical units, histograms, baselines, compression and timing for the trial's validation split; or
    residuals and the dijet-mass closure on another sample (a model trained on QCD jets tested on a signal it never
    saw)."""
    from hpcsweep.trial import reevaluate

    path = Path(args.trial)
    label, summary = reevaluate(path, args.source, args.signal, args.events, args.label)
    _print_evaluation(label, summary)
    print(f"written into {path} under evaluation[{label!r}]")
    return 0


def _print_evaluation(label: str, summary: dict[str, Any]) -> None:
    if "compressor" in summary:
        c = summary["compressor"]
        print(f"{label}: its compressor ({c['kind']}) at {100 * c['bound']:g} %: {c['bytes_per_jet']:.2f} bytes/jet "
              f"({c['payload_per_jet']:.2f} coded, of which latents {c['latent_per_jet']:.2f}; the compressor itself "
              f"{c['model_bytes'] / 1e3:.0f} kB over {c['amortised_over']:,} jets), largest error {c['largest_error']:.3f} of the bound")  # fmt: skip
    if "mse" not in summary:  # the coder alone: no network to measure
        return
    print(f"{label}: {summary['n_jets']:,} jets, reconstruction MSE {summary['mse']:.4g} (normalised)")
    rows = [
        [name, r["kind"], f"{r['mean']:+.3g}", f"{r['width']:.3g}", f"{r['q005']:+.3g}", f"{r['q995']:+.3g}"]
        for name, r in summary["residuals"].items()
        if r["n"]
    ]
    print_rows(
        "residuals (relative for scale variables, absolute otherwise)",
        ["variable", "kind", "mean", "width (16-84 %)/2", "0.5 %", "99.5 %"],
        rows,
    )
    if "dijet" in summary:
        d = summary["dijet"]
        print(f"dijet mass ({d['n_events']:,} events): peak {d['peak_original']:.1f} -> {d['peak_decoded']:.1f} GeV "
              f"({d['peak_shift_pct']:+.2f} %), width {d['width_original']:.1f} -> {d['width_decoded']:.1f} GeV ({d['width_change_pct']:+.1f} %)")  # fmt: skip
    if summary.get("anomaly"):
        from hpcsweep.review.tables import rejection_text

        a = summary["anomaly"]
        print(f"{label} against the trial's validation jets: AUC {a['auc']:.3f}; background rejection at 50 % signal efficiency "
              f"{rejection_text(a, 50)}, at 10 % {rejection_text(a, 10)}")  # fmt: skip
    if "compression" in summary:
        c = summary["compression"]
        print(f"bytes per jet: raw float32 {c['raw_float32']:.1f} (lzma {c['raw_float32_lzma']:.1f}); latent float16+lzma "
              f"{c['latent_float16_lzma']:.1f} + model {c['model_per_jet']:.2f} -> ratio {c['ratio_vs_raw_float32']:.2f} "
              f"({c['ratio_vs_raw_float32_lzma']:.2f} against lzma'd raw; {c['ratio_large_dataset']:.2f} and "
              f"{c['ratio_large_dataset_vs_lzma']:.2f} for a dataset large enough to hide the model); "
              f"MSE with float16 latents {c['mse_float16_latent']:.4g}")  # fmt: skip
    if "timing" in summary:
        t = summary["timing"]
        print(f"encode {t['encode_us_per_jet']:.2f} us/jet, decode {t['decode_us_per_jet']:.2f} us/jet ({t['threads']} threads)")
