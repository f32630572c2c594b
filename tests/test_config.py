"""Sweep files: grid expansion, stable identities, overrides, and one-line errors for mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcsweep.cli import main
from hpcsweep.config import TrialConfig, load_sweep
from hpcsweep.errors import UserError
from hpcsweep.sweep import expand

DEFAULT = Path(__file__).parent.parent / "sweeps" / "default.yaml"


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_default_sweep_expands_to_the_full_grid_with_unique_ids():
    sweep = load_sweep(DEFAULT)
    trials = expand(sweep)
    sizes = [len(values) for values in sweep.grid.values()]
    assert len(trials) == sizes[0] * sizes[1] * sizes[2] * sizes[3] == 24
    assert len({t.identity() for t in trials}) == len(trials)
    assert {t.model.latent for t in trials} == {8, 12, 18}
    assert {(t.train.batch_size, t.train.lr, t.train.weight_decay) for t in trials if t.model.latent == 18} == {
        (bs, lr, wd) for bs in (256, 1024) for lr in (1e-2, 3e-2) for wd in (0.0, 1e-4)
    }


def test_identity_ignores_spelling_and_key_order(tmp_path):
    one = _write(tmp_path, "name: a\ntrain: {lr: 0.001, weight_decay: 0}\ngrid: {z: [4, 8]}\n", "a.yaml")
    two = _write(tmp_path, "grid: {latent: [8, 4]}\ntrain: {weight_decay: 0.0, lr: 1.0e-3}\nname: b\n", "b.yaml")
    assert {t.identity() for t in expand(load_sweep(one))} == {t.identity() for t in expand(load_sweep(two))}


def test_identity_is_stable_across_releases():
    # Changing this id means every existing sweep would rerun all its trials: do it on purpose only.
    assert TrialConfig().identity() == TrialConfig.model_validate({}).identity() == "2d883d630ea6"


def test_identity_changes_with_any_trial_key():
    base = TrialConfig()
    assert base.identity() != TrialConfig(train={"seed": 1}).identity()
    assert base.identity() != TrialConfig(data={"events": 10001}).identity()


def test_latent_override_restricts_the_grid_to_a_subset_of_the_same_trials():
    sweep = load_sweep(DEFAULT)
    restricted = sweep.with_overrides(latent=[18])
    ids = {t.identity() for t in expand(restricted)}
    assert len(ids) == 8 and ids <= {t.identity() for t in expand(sweep)}


def test_epochs_and_set_overrides_fix_keys_and_remove_their_axes():
    sweep = load_sweep(DEFAULT).with_overrides(epochs=5, sets={"lr": 0.5, "data.events": 100})
    trials = expand(sweep)
    assert len(trials) == 12
    assert {(t.train.epochs, t.train.lr, t.data.events) for t in trials} == {(5, 0.5, 100)}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\ntrian: {lr: 0.1}\n", ["unknown key 'trian'", "did you mean train", "valid keys:", "grid"]),
        ("name: x\ntrain: {lrate: 0.1}\n", ["unknown key 'lrate' in train", "valid keys:", "lr", "weight_decay"]),
        ("name: x\ntrain: {lr: fast}\n", ["train.lr", "valid number", "'fast'"]),
        ("name: x\ngrid: {lr: []}\n", ["grid", "axis 'lr' has no values"]),
        ("name: x\ngrid: {lrr: [0.1]}\n", ["unknown axis 'lrr'", "valid choices:", "train.lr"]),
        ("name: x\nmodel: {activation: gelu}\n", ["model.activation", "'tanh', 'leaky_relu' or 'relu'", "'gelu'"]),
        ("name: x\ndata: {varset: atlas72}\n", ["data.varset", "unknown variable set 'atlas72'", "atlas27", "generated"]),
        ("name: x\ngrid: {z: [30]}\n", ["model.latent = 30, more than the 24 inputs", "valid choices: 1..24"]),
        ("name: x\ngrid: {lr: [0.1, -1]}\n", ["grid point train.lr", "greater than 0"]),
        ("name: x\ntrain: [1, 2\n", ["not valid YAML"]),
        ("name: x\nmodel: {kind: transformer}\n", ["model.kind", "'ae', 'sparse', 'vae' or 'codec'", "'transformer'"]),
        ("name: x\nmodel: {kind: vae}\n", ["a VAE needs its KL weight: set model.beta"]),
        ("name: x\ngrid: {model.kind: [ae, vae]}\n", ["grid point model", "set model.beta"]),
        ("name: x\ntrain: {schedule: cosine}\n", ["train.schedule", "'onecycle', 'constant' or 'piecewise'"]),
        ("name: x\ntrain: {piecewise: [[null, 1.0e-3], [5, 1.0e-4]]}\n", ["train.piecewise", "only the last segment"]),
        ("name: x\nmodel: {hidden: [200, -5]}\n", ["model.hidden.1", "greater than 0", "-5"]),
        ("name: x\nsearch: tpe\nbudget: 5\ngrid: {lr: [0.1]}\n", ["search: tpe takes space:", "budget:, not grid:"]),
        ("name: x\nsearch: annealing\n", ["search", "'grid', 'random' or 'tpe'"]),
        ("name: x\nsearch: random\nbudget: 3\nspace: {lr: {low: 1, high: 0.1}}\n", ["space", "'lr': low (1) must be below high (0.1)"]),
        ("name: x\nsearch: random\nbudget: 3\nspace: {data.events: [10, 20]}\n", ["a search cannot vary data.events"]),
        ("name: x\nspace: {lr: [0.1]}\n", ["space: is for search: random or tpe"]),
        ("name: x\ndata: {events: null}\n", ["data: events is null, but generated data need it", "the default, 10000"]),
        ("name: x\ndispatch: {time: 2h}\n", ["dispatch.time", "'2h' is not a SLURM time", "valid forms: MM, MM:SS"]),
        ("name: x\ndispatch: {executor: slrum}\n", ["dispatch.executor", "unknown executor 'slrum'", "valid choices: local, debug, slurm"]),
        ("name: x\nmodel: {latent: 0}\n", ["model", "an autoencoder needs model.latent >= 1", "model.kind: codec"]),
        (
            "name: x\ndata: {events: 100000000000}\n",
            ["data.events", "100,000,000,000 events would take about 8,903 days", "generator_seed"],
        ),
        ("name: x\ncodec: {bounds: [1]}\n", ["codec.bounds", "a bound must lie between 0 and 0.5", "0.01 is 1 %"]),
        ("name: x\ncodec: {stepz: 10}\n", ["unknown key 'stepz' in codec", "did you mean steps", "latent_step"]),
        ("name: x\nevaluation: {max_error: 0.001}\n", ["evaluation.max_error = 0.001", "not among codec.bounds (0.01)", "add it there"]),
    ],
)
def test_mistakes_are_one_line_errors_naming_file_key_and_choices(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as error:
        expand(load_sweep(path), str(path))
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message
    for part in expected:
        assert part in message


def test_cli_refuses_a_bad_sweep_with_status_2_and_starts_nothing(tmp_path, capsys):
    path = _write(tmp_path, "name: bad\ntrain: {batchsize: 512}\n")
    results = tmp_path / "results"
    assert main(["sweep", str(path), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown key 'batchsize' in train" in err and "batch_size" in err
    assert not results.exists()


def test_unknown_sweep_name_lists_the_sweeps_that_exist(capsys, monkeypatch):
    monkeypatch.chdir(DEFAULT.parent.parent)
    assert main(["sweep", "defualt"]) == 2
    assert "sweeps/ has: compress, default, models" in capsys.readouterr().err


def test_a_missing_data_file_names_what_exists_and_starts_nothing(tmp_path, capsys):
    (tmp_path / "jets_2018.root").write_bytes(b"")
    path = _write(tmp_path, f"name: lost\ndata: {{source: {tmp_path / 'jets_2019.root'}}}\n")
    results = tmp_path / "results"
    assert main(["sweep", str(path), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "jets_2019.root: no such data file" in err and "jets_2018.root" in err
    assert not results.exists()


def test_every_rank_by_choice_has_its_one_measure():
    """The choices are listed once (`RankBy`, which validates them); what each means to tables and figures, once too."""
    from typing import get_args

    from hpcsweep.config import RankBy
    from hpcsweep.sweep.rank import MEASURES

    assert list(MEASURES) == list(get_args(RankBy))


def test_the_data_version_is_part_of_the_identity_and_the_path_is_not(tmp_path):
    one = TrialConfig(data={"source": str(tmp_path / "a.root"), "varset": "fourvec"})
    moved = TrialConfig(data={"source": str(tmp_path / "b.root"), "varset": "fourvec"})
    assert one.identity() != moved.identity(), "without a version, the config is all there is"
    assert one.with_data_version("abc").identity() == moved.with_data_version("abc").identity(), "same jets, another place"
    assert one.with_data_version("abc").identity() != one.with_data_version("abd").identity(), "other jets, new trials"


def test_a_variable_set_file_is_found_beside_the_sweep_file_and_stored_whole(tmp_path, monkeypatch):
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "mine_vars.yaml").write_text("variables: [{name: pt, positive: true}, {name: eta}]\n")
    path = _write(tmp_path / "sweeps", "name: mine\ndata: {source: jets.root, varset: mine_vars.yaml}\ngrid: {z: [1]}\n")
    monkeypatch.chdir(tmp_path)  # not where the sweep file is
    sweep = load_sweep(path)
    assert sweep.data.varset["name"] == "mine_vars" and [v["name"] for v in sweep.data.varset["variables"]] == ["pt", "eta"]
    assert sweep.data.source == "jets.root", "a file found nowhere is kept as written, for the reader to name"
    (tmp_path / "sweeps" / "jets.root").write_bytes(b"")
    assert load_sweep(path).data.source == str(tmp_path / "sweeps" / "jets.root")
    (trial,) = expand(load_sweep(path))
    assert trial.data.varset == sweep.data.varset and trial.data.events is None, "a file source has no generator settings"


def test_the_compressor_alone_has_no_latents_and_no_network_keys(tmp_path):
    """Model kind codec is z = 0 and trains nothing: crossed with a grid over z and lr, its points are one trial, whose
    stored config holds only what makes it (its codec settings and the seed its fitting uses)."""
    path = _write(tmp_path, "name: x\ngrid: {model.kind: [codec, ae], z: [2, 4], lr: [1.0e-2, 3.0e-2]}\ncodec: {steps: 50}\n")
    trials = expand(load_sweep(path))
    alone = [t for t in trials if t.model.kind == "codec"]
    assert len(trials) == 5 and len(alone) == 1 and alone[0].model.latent == 0
    dumped = alone[0].model_dump()
    assert dumped["model"] == {"kind": "codec", "latent": 0} and dumped["train"] == {"seed": 0} and dumped["codec"]["steps"] == 50
    assert TrialConfig.model_validate(dumped).identity() == alone[0].identity()


def test_a_default_compressor_leaves_identities_as_they_were_and_any_setting_makes_new_trials():
    base = TrialConfig()
    assert base.identity() == TrialConfig(codec={"bounds": [0.01], "steps": 600}, train={"rate_lambda": 0}).identity() == "2d883d630ea6"
    changed = [
        {"codec": {"steps": 601}},
        {"codec": {"bounds": [0.01, 0.001]}},
        {"train": {"rate_lambda": 1e-3}},
        {"codec": {"hidden": [8]}},
    ]
    assert len({base.identity(), *(TrialConfig.model_validate(c).identity() for c in changed)}) == 1 + len(changed)


@pytest.mark.parametrize(
    "validate",
    [
        "load_sweep(sys.argv[1]).with_overrides(dispatch={'executor': 'local'})",
        "SweepConfig(name='s', dispatch={'executor': 'slurm', 'time': '30'}, grid={'z': [2, 3]})",
    ],
)
def test_validating_a_sweep_imports_nothing_heavy(tmp_path, validate):
    """The configuration is read by every command, also those that run nothing: no numpy, h5py, submitit or torch."""
    import subprocess
    import sys

    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\ndispatch: {executor: slurm, time: '30'}\ngrid: {z: [2, 3]}\n")
    code = (
        f"import sys; from hpcsweep.config import SweepConfig, load_sweep; {validate}; "
        "print(sorted(m for m in ('numpy', 'h5py', 'submitit', 'torch', 'pandas') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code, str(sweep)], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", loaded


def test_the_executors_own_checks_run_in_a_fresh_process():
    """The slurm backend's check of its time limits reaches the configuration through the registry, with nothing of
    the sweep stage imported beforehand."""
    import subprocess
    import sys

    code = "from hpcsweep.config import SweepConfig; SweepConfig(name='s', dispatch={'time': '2h'})"
    refused = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert refused.returncode != 0 and "dispatch.time" in refused.stderr and "'2h' is not a SLURM time" in refused.stderr
