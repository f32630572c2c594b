"""The autoencoder family: plain, sparse (L1 / KL) and variational, behind one interface."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hpcsweep.config import ModelConfig, TrainConfig
from hpcsweep.data import load_varset, make_normaliser, open_cache
from hpcsweep.store import read_trial, trial_path
from hpcsweep.trial import run_trial
from hpcsweep.trial.models import Autoencoder, SparseAutoencoder, VariationalAutoencoder, build_model, fold_batchnorm
from hpcsweep.trial.train import train
from tests.helpers import trial_spec


def test_thesis_architectures_are_mirrored():
    four = build_model(ModelConfig(hidden=[200, 100, 50], latent=3, activation="tanh", batchnorm=False), 4)
    widths = [(m.in_features, m.out_features) for m in four.modules() if isinstance(m, nn.Linear)]
    assert widths == [(4, 200), (200, 100), (100, 50), (50, 3), (3, 50), (50, 100), (100, 200), (200, 4)]
    assert sum(isinstance(m, nn.Tanh) for m in four.modules()) == 6
    wide = build_model(ModelConfig(hidden=[200, 200, 200], latent=12, dropout=0.1), 27)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in wide.modules()) == 6
    assert sum(isinstance(m, nn.Dropout) for m in wide.modules()) == 6
    assert wide.encode(torch.zeros(5, 27)).shape == (5, 12) and wide(torch.zeros(5, 27)).shape == (5, 27)


@pytest.mark.parametrize(
    "config, cls",
    [
        (ModelConfig(kind="ae"), Autoencoder),
        (ModelConfig(kind="sparse", sparsity="l1"), SparseAutoencoder),
        (ModelConfig(kind="sparse", sparsity="kl", sparsity_rho=0.05), SparseAutoencoder),
        (ModelConfig(kind="vae", beta=1e-3), VariationalAutoencoder),
    ],
)
def test_every_kind_has_the_same_interface(config, cls):
    torch.manual_seed(0)
    model = build_model(config, 24)
    assert type(model) is cls
    x = torch.randn(64, 24)
    objective, mse = model.objective(x)
    assert objective.shape == mse.shape == () and objective >= mse
    if cls is not Autoencoder:
        assert objective > mse, "the sparsity or KL penalty adds to the reconstruction loss"
    model.eval()
    assert model.encode(x).shape == (64, config.latent)
    assert torch.equal(model(x), model(x)), "evaluation is deterministic (the VAE decodes its latent mean)"


@pytest.mark.parametrize(
    "config", [ModelConfig(hidden=[200, 200, 200], latent=12, dropout=0.1), ModelConfig(kind="vae", latent=5, beta=1.0)]
)
def test_folded_batchnorm_decodes_as_the_model_with_fewer_layers(config):
    torch.manual_seed(0)
    model = build_model(config, 27)
    model.train()
    for _ in range(3):  # running statistics and affine parameters away from their initial 0/1
        model(torch.randn(256, 27) * 3 + 1)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm1d)):
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.randn(512, 27)
    with torch.no_grad():
        assert torch.allclose(folded.encode(x), model.encode(x), rtol=1e-4, atol=1e-5)
        assert torch.allclose(folded(x), model(x), rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.Dropout)) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules()), "the model itself is left as it was"


def test_vae_reconstruction_uses_the_latent_mean():
    torch.manual_seed(0)
    vae = build_model(ModelConfig(kind="vae", latent=5, beta=1.0), 10).eval()
    x = torch.randn(8, 10)
    mean = vae.encoder(x)[:, :5]
    assert torch.equal(vae(x), vae.decode(mean))


@pytest.mark.parametrize("sparsity", ["l1", "kl"])
def test_sparse_ae_beats_pca_on_real_jets(qcd_file, tmp_path, sparsity):
    spec = trial_spec(qcd_file, tmp_path, model={"kind": "sparse", "sparsity": sparsity, "sparsity_lambda": 1e-3})
    assert run_trial(spec, threads=1, log=lambda _: None) == "done"
    metrics = read_trial(trial_path(tmp_path, spec.trial_id)).metrics
    assert metrics["best_val_mse"] < metrics["pca_val_mse"]


def test_vae_trains_and_is_evaluated_from_its_mean(qcd_file, tmp_path):
    spec = trial_spec(qcd_file, tmp_path, model={"kind": "vae", "beta": 1e-3})
    assert run_trial(spec, threads=1, log=lambda _: None) == "done"
    record = read_trial(trial_path(tmp_path, spec.trial_id))
    assert record.evaluation["validation"]["mse"] == pytest.approx(record.metrics["best_val_mse"], rel=1e-5)


def _real_jets(qcd_file, results) -> torch.Tensor:
    """The session's Pythia jets, normalised as a trial normalises them."""
    spec = trial_spec(qcd_file, results)
    x = open_cache(spec.dataset).matrix()
    return torch.from_numpy(make_normaliser(spec.config.data.normalisation, load_varset("generated")).fit(x).transform(x))


def _out_of_place(model: Autoencoder) -> Autoencoder:
    """A copy of `model` whose activations write fresh tensors: the step as it was before they ran in place."""
    copied = copy.deepcopy(model)
    for module in copied.modules():
        if isinstance(module, (nn.LeakyReLU, nn.ReLU)):
            module.inplace = False
    return copied


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(hidden=[64, 64], latent=4),
        ModelConfig(kind="sparse", hidden=[64, 32], latent=4, sparsity="kl", dropout=0.1),
        ModelConfig(kind="vae", hidden=[64, 64], latent=4, activation="relu", batchnorm=False, beta=1e-3),
    ],
)
def test_in_place_activations_train_as_out_of_place_ones(qcd_file, tmp_path, config):
    """Activations run in place on the Linear layers' outputs; on real jets, the step and three epochs of training are
    those of out-of-place activations bit for bit (losses, gradients, weights, running statistics, state_dict keys)."""
    x = _real_jets(qcd_file, tmp_path)
    torch.manual_seed(0)
    model = build_model(config, x.shape[1])
    plain = _out_of_place(model)
    assert any(getattr(m, "inplace", False) for m in model.modules()), "precondition: activations in place"
    assert not any(getattr(m, "inplace", False) for m in plain.modules())
    steps = []
    for each in (model, plain):
        torch.manual_seed(1)
        loss, mse = each.objective(x[:512])
        loss.backward()
        steps.append(([loss, mse], {k: p.grad for k, p in each.named_parameters()}, each.state_dict()))
    (losses, grads, state), (plain_losses, plain_grads, plain_state) = steps
    assert all(torch.equal(a, b) for a, b in zip(losses, plain_losses, strict=True))
    assert grads.keys() == plain_grads.keys() and all(torch.equal(grads[k], plain_grads[k]) for k in grads)
    assert state.keys() == plain_state.keys() and all(torch.equal(state[k], plain_state[k]) for k in state)
    results = []
    for each in (model, plain):
        torch.manual_seed(2)
        train_config = TrainConfig(epochs=3, batch_size=256, lr=1e-3, schedule="constant")
        results.append(train(each, x[: len(x) * 4 // 5], x[len(x) * 4 // 5 :], train_config, log=lambda _: None, compile="never"))
    ours, theirs = results
    assert ours.history == theirs.history and ours.best_epoch == theirs.best_epoch
    assert ours.best_state.keys() == theirs.best_state.keys() == plain_state.keys()
    assert all(torch.equal(ours.best_state[k], theirs.best_state[k]) for k in plain_state)
