"""Evaluation: discrete values restored, residuals in physical units, dijet closure, baselines, compression."""

from __future__ import annotations

import numpy as np
import pytest

from hpcsweep.cli import main
from hpcsweep.data import cache_jets, load_varset
from hpcsweep.data.normalize import make_normaliser
from hpcsweep.store import read_trial, trial_path, write_trial
from hpcsweep.trial import run_trial
from hpcsweep.trial.evaluate import JetMeasure, compression, residual_arrays, residual_table, residual_values, truncation_baselines
from tests.helpers import trial_spec


def test_discrete_variables_come_back_as_training_values_and_signs_are_kept():
    varset = load_varset("generated")
    names = varset.names
    train = np.zeros((4, len(names)), dtype=np.float32)
    train[:, names.index("N90Constituents")] = [1, 3, 4, 9]
    train[:, names.index("ActiveArea")] = [0.4, 0.45, 0.5, 0.55]
    measure = JetMeasure.from_training(varset, train)
    decoded = np.zeros((3, len(names)), dtype=np.float32)
    decoded[:, names.index("N90Constituents")] = [1.4, 6.6, 12.0]
    decoded[:, names.index("ActiveArea")] = [0.43, 0.61, 0.3]
    decoded[:, names.index("pt")] = [-3.0, 50.0, 20.0]
    decoded[:, names.index("eta")] = [-1.0, 0.0, 1.0]
    restored = measure.restore(decoded)
    assert restored[:, names.index("N90Constituents")].tolist() == [1, 9, 9]
    assert restored[:, names.index("ActiveArea")] == pytest.approx([0.45, 0.55, 0.4])
    assert restored[:, names.index("pt")].tolist() == [0.0, 50.0, 20.0], "non-negative variables stay non-negative"
    assert restored[:, names.index("eta")].tolist() == [-1.0, 0.0, 1.0], "signed variables are untouched"


def test_residual_kinds():
    phi, _ = residual_values(np.array([3.1, -3.1]), np.array([-3.1, 3.1]), "phi")
    assert np.abs(phi) == pytest.approx(2 * np.pi - 6.2), "phi wraps around"
    relative, used = residual_values(np.array([100.0, 0.0, 50.0]), np.array([101.0, 3.0, 49.0]), "relative")
    assert relative.tolist() == pytest.approx([0.01, -0.02]) and used == 2


def test_compression_accounting():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 24)).astype(np.float32)
    latent = rng.normal(size=(1000, 12)).astype(np.float32)
    c = compression(x, latent, model_bytes=100_000)
    assert c["raw_float32"] == 96 and c["latent_float32"] == 48 and c["latent_float16"] == 24
    assert c["model_per_jet"] == 100
    assert c["total_per_jet"] == pytest.approx(c["latent_float16_lzma"] + 100)
    assert c["ratio_vs_raw_float32"] == pytest.approx(96 / c["total_per_jet"])
    assert c["ratio_large_dataset"] == pytest.approx(96 / c["latent_float16_lzma"])
    assert c["ratio_large_dataset"] > c["ratio_vs_raw_float32"], "the amortised model costs bytes"


def test_residual_correlations_histograms_and_sample():
    rng = np.random.default_rng(1)
    varset = load_varset("fourvec")
    original = rng.uniform(50, 500, size=(5000, 4))
    original[:10, 0] = 0  # relative residual undefined for these jets: left out, not infinite
    shared = rng.normal(size=5000)
    decoded = original.copy()
    decoded[:, 0] *= 1 + 0.01 * shared  # pt and E residuals move together, eta's is independent
    decoded[:, 3] *= 1 + 0.02 * shared
    decoded[:, 1] += 0.05 * rng.normal(size=5000)
    table = residual_table(original, decoded, JetMeasure.of(varset, {}))
    assert np.isnan(table[:10, 0]).all() and np.isfinite(table[10:]).all()
    arrays = residual_arrays(table)
    r = arrays["residual_correlation"]
    assert r[0, 3] == pytest.approx(1, abs=1e-3) and abs(r[0, 1]) < 0.05 and np.allclose(r, r.T, equal_nan=True)
    assert arrays["residual_counts"].shape == (4, 52) and arrays["residual_counts"][0].sum() == 4990, "every jet, flow included"
    assert 0 < arrays["residual_counts"][0][[0, -1]].sum() < 0.02 * 4990, "about 1 % of jets outside the 0.5-99.5 % range"
    assert arrays["residual_sample"].shape == (1000, 4)


def test_truncation_baselines_trade_bytes_for_resolution():
    rng = np.random.default_rng(2)
    varset = load_varset("fourvec")
    x = np.column_stack([rng.uniform(20, 500, 4000), rng.uniform(-4, 4, 4000), rng.uniform(-3, 3, 4000), rng.uniform(30, 900, 4000)])
    normaliser = make_normaliser("standard", varset).fit(x)
    baselines = truncation_baselines(x.astype(np.float32), normaliser, JetMeasure.of(varset, {}))
    bits = [b["mantissa_bits"] for b in baselines]
    assert [b["bytes_per_jet"] for b in baselines] == [4 * (9 + k) / 8 for k in bits]
    widths = [b["width"]["pt"] for b in baselines]
    assert all(a > b for a, b in zip(widths, widths[1:], strict=False)), "more mantissa bits, narrower residuals"
    assert widths[0] < 2.0 ** -(bits[0] + 1), "rounding to k bits is within half a unit in the last place"
    assert all(a["mse"] > b["mse"] for a, b in zip(baselines, baselines[1:], strict=False))


def test_error_bounded_peers_keep_every_value_within_the_bound_in_fewer_bytes(qcd_file):
    from hpcsweep.codec.peers import PEERS, compress_with_peers
    from hpcsweep.data import load_jets

    varset = load_varset("generated")
    x = load_jets(qcd_file, varset).matrix()
    x[:5, varset.names.index("m")] = 0.0  # massless jets: a relative bound cannot hold through log(0), the mask keeps them
    measure = JetMeasure.of(varset, {v.name: np.unique(x[:, i]) for i, v in enumerate(varset.variables) if v.discrete})
    kinds = [measure.residual_kind[name] for name in measure.names]
    peers = compress_with_peers(x, kinds, [name in measure.allowed for name in measure.names], bound=0.01)
    assert set(peers) == set(PEERS), "the optional extra 'compare' is installed with dev"
    for peer, (bytes_per_jet, decoded) in peers.items():
        residual = np.abs(residual_table(x, decoded, measure))
        assert np.nanmax(residual) <= 0.01, f"{peer}: every value within 1 % (relative) or 0.01 (absolute)"
        for name in measure.allowed:
            i = measure.names.index(name)
            np.testing.assert_array_equal(decoded[:, i], x[:, i], err_msg=f"{peer}: discrete {name} is lossless")
        assert np.all(decoded[:5, varset.names.index("m")] == 0.0)
        assert bytes_per_jet < 2 * x.shape[1], f"{peer}: fewer bytes than float16 ({bytes_per_jet:.1f} B/jet)"
    assert peers["SZ3"][0] < 0.3 * 4 * x.shape[1], "SZ3 stores these jets in under 30 % of float32's bytes"


def test_a_new_peer_is_one_row_of_the_table_and_is_held_to_the_bound_like_the_others(qcd_file, monkeypatch):
    """A toy peer (values rounded to a grid of twice the bound, then zstd) added as one row: it is available, codes
    every column in the domain its kind asks for, and keeps every value within the bound."""
    import zstandard

    from hpcsweep.codec import peers
    from hpcsweep.data import load_jets

    def grid_and_zstd(values: np.ndarray, bound: float) -> tuple[int, np.ndarray]:
        steps = np.round(values / (2 * bound)).astype(np.int64)
        return len(zstandard.ZstdCompressor(level=19).compress(steps.tobytes())), steps * (2 * bound)

    monkeypatch.setattr(peers, "TABLE", (*peers.TABLE, peers.Peer("grid + zstd", "zstandard", grid_and_zstd)))
    assert peers.available()[-1] == "grid + zstd"
    varset = load_varset("generated")
    x = load_jets(qcd_file, varset).matrix()
    measure = JetMeasure.of(varset, {v.name: np.unique(x[:, i]) for i, v in enumerate(varset.variables) if v.discrete})
    kinds = [measure.residual_kind[name] for name in measure.names]
    coded = peers.compress_with_peers(x, kinds, [name in measure.allowed for name in measure.names], bound=0.01)
    bytes_per_jet, decoded = coded["grid + zstd"]
    assert np.nanmax(np.abs(residual_table(x, decoded, measure))) <= 0.01 and 0 < bytes_per_jet < 4 * x.shape[1]


def test_a_peer_that_takes_a_precision_gets_every_precision_in_its_better_domain(qcd_file):
    """fpzip and mantissa bits, per relative column: the fewer bytes of log space and the raw values, each within the
    bound; for fpzip fewer bytes in all than log space at even precisions only (what the review showed before)."""
    from hpcsweep.codec import peers
    from hpcsweep.data import load_jets

    varset = load_varset("generated")
    x = load_jets(qcd_file, varset).matrix().astype(np.float32)
    columns = [x[:, i] for i, v in enumerate(varset.variables) if v.residual == "relative" and not v.discrete and (x[:, i] > 0).all()]
    by_precision = [peer for peer in peers.TABLE if peer.by_precision]
    assert [peer.name for peer in by_precision] == ["fpzip", "mantissa + zstd"]
    for peer in by_precision:
        for values in columns:
            size, decoded = peers._column(values, "relative", False, 0.01, peer)
            assert np.all(np.abs(decoded.astype(np.float64) - values) <= 0.01 * np.abs(values)), peer.name
            assert size <= peers._in_logs(values, 0.01, peer.code)[0]
    now = sum(peers._column(values, "relative", False, 0.01, by_precision[0])[0] for values in columns)
    before = sum(len(_fpzip_at_even_precisions(np.log(values.astype(np.float64)), np.log1p(0.01) * peers.SAFETY)) for values in columns)
    assert now < before, f"fpzip on {len(columns)} columns: {now} B now, {before} B in log space at even precisions"


def _fpzip_at_even_precisions(logs: np.ndarray, bound: float) -> bytes:
    """What fpzip was given before: log values, even precisions only; the first that keeps the bound."""
    import fpzip

    for precision in range(8, 33, 2):
        packed = fpzip.compress(np.ascontiguousarray(logs.astype(np.float32)), precision=precision)
        if np.all(np.abs(fpzip.decompress(packed).reshape(-1).astype(np.float64) - logs) <= bound):
            break
    return packed


@pytest.fixture(scope="module")
def evaluated_trial(qcd_file, zprime_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluated")
    signal = cache_jets(zprime_file, load_varset("generated"), folder / "cache")
    spec = trial_spec(
        qcd_file, folder, model={"latent": 8}, train={"epochs": 30}, evaluation={"timing_repeats": 2}, signals={"zprime350": str(signal)}
    )
    run_trial(spec, threads=1, log=lambda _: None)
    return trial_path(folder, spec.trial_id)


def test_a_trial_stores_its_physics_evaluation(evaluated_trial):
    record = read_trial(evaluated_trial)
    validation = record.evaluation["validation"]
    assert validation["mse"] == pytest.approx(record.metrics["best_val_mse"], rel=1e-5)
    pt = validation["residuals"]["pt"]
    assert pt["kind"] == "relative" and 0 < pt["width"] < 1 and pt["q005"] < pt["mean"] < pt["q995"]
    assert validation["residuals"]["phi"]["kind"] == "phi"
    baselines = validation["baselines"]
    assert baselines["pca"]["mse"] == pytest.approx(record.metrics["pca_val_mse"])
    assert baselines["float16"]["mse"] < 1e-4 < baselines["pca"]["mse"], "float16 truncation is nearly lossless, PCA at z=8 is not"
    assert validation["compression"]["latent_float16"] == 16 and validation["compression"]["raw_float32"] == 96
    assert validation["mse"] <= validation["compression"]["mse_float16_latent"] < 1.01 * validation["mse"]
    assert validation["timing"]["encode_us_per_jet"] > 0 and validation["timing"]["decode_us_per_jet"] > 0
    assert record.arrays["validation/hist_original"].shape == (24, 52)
    assert record.arrays["validation/residual_correlation"].shape == (24, 24)
    assert [b["mantissa_bits"] for b in baselines["truncation"]] == [2, 4, 7, 10, 14]
    assert set(baselines["peers"]) == {"SZ3", "ZFP", "fpzip", "mantissa + zstd"}
    assert all(peer["residuals"]["pt"]["within_1pct"] == 1.0 for peer in baselines["peers"].values())
    assert (record.arrays["validation/hist_original"].sum(axis=1) == validation["n_jets"]).all(), "under- and overflow count"
    signal = record.evaluation["zprime350"]
    assert signal["dijet"]["n_events"] > 300 and 300 < signal["dijet"]["peak_original"] < 360
    assert len(record.arrays["zprime350/dijet_decoded"]) == signal["dijet"]["n_events"]
    assert set(np.unique(record.arrays["discrete/N90Constituents"])) <= set(range(0, 100))


def test_a_received_trial_file_whose_cut_is_code_is_refused_and_runs_nothing(evaluated_trial, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    record = read_trial(evaluated_trial)
    record.varset = {**record.varset, "cuts": [{"name": "evil", "action": "keep", "expression": "pt.to_csv('MARK') or pt > 0"}]}
    received = tmp_path / "received.h5"
    write_trial(received, record)
    assert main(["evaluate", str(received)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "variable set 'generated': cuts.0: cut 'evil': a call of '.to_csv' is not allowed" in errors[0], errors
    assert not (tmp_path / "MARK").exists()


def test_evaluate_command_tests_a_stored_model_on_a_signal_it_never_saw(evaluated_trial, zprime_file, capsys):
    assert main(["evaluate", str(evaluated_trial), "--source", str(zprime_file), "--label", "signal"]) == 0
    out = capsys.readouterr().out
    assert "dijet mass" in out and "evaluation['signal']" in out
    record = read_trial(evaluated_trial)
    assert record.evaluation["signal"]["n_jets"] > 1000
    assert "zprime350" in record.evaluation, "earlier evaluations are kept"
    record.metrics.pop("anomaly", None)
    record.evaluation["zprime350"].pop("anomaly", None)
    write_trial(evaluated_trial, record)  # as a trial file written before anomaly figures of merit
    assert main(["evaluate", str(evaluated_trial)]) == 0
    again = read_trial(evaluated_trial)
    assert again.evaluation["validation"]["mse"] == pytest.approx(record.metrics["best_val_mse"], rel=1e-5)
    assert set(again.metrics["anomaly"]) == {"zprime350", "signal"}, "the samples it was evaluated on, read again from their files"
    assert 0.5 < again.metrics["anomaly"]["zprime350"]["auc"] < 1, "Z' jets reconstruct worse than QCD jets"
