"""The rate term: without it training is what it was, bit for bit; with it the latents cost fewer bits as its weight rises."""

from __future__ import annotations

import pytest
import torch

from hpcsweep.config import ModelConfig, TrainConfig, TrialConfig
from hpcsweep.store import read_trial, trial_path
from hpcsweep.trial import run_trial
from hpcsweep.trial.models import build_model
from hpcsweep.trial.train import train
from tests.helpers import trial_spec

#: Losses of three epochs of each kind on seeded random data, written by hpcsweep before the rate term existed
#: (commit bf12707, CPU, one thread): the same code path must give the same floats.
BEFORE = {
    "ae": ([1.1449441984295845, 0.9000773876905441, 0.8056551292538643], [0.919982524313312, 0.9045179183549962, 0.876136490221821]),
    "sparse": ([1.1449571624398232, 0.9001127853989601, 0.806316427886486], [0.9195602704890785, 0.9035291724441015, 0.8753205248969103]),
    "vae": ([1.1773319989442825, 1.0255897492170334, 0.973000131547451], [0.9327338906293651, 0.9184586905267741, 0.9030886668963193]),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(BEFORE))
def test_without_a_rate_term_training_is_what_it_was_bit_for_bit(kind):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(5)
        x, validation = torch.randn(512, 6, generator=generator), torch.randn(128, 6, generator=generator)
        torch.manual_seed(0)
        config = TrialConfig(model=ModelConfig(kind=kind, hidden=[16, 16], latent=2, beta=1e-3), train=TrainConfig(epochs=3, batch_size=64))
        model = build_model(config.model, 6, config.train.rate_lambda)
        result = train(model, x, validation, config.train, log=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    assert (result.history["train_loss"], result.history["val_loss"]) == BEFORE[kind]
    assert not any(name.startswith("prior.") for name in model.state_dict()), "no entropy model without a rate term"
    assert "rate_lambda" not in config.model_dump()["train"], "the stored config (and so the identity) is the one of before"


def test_latents_cost_fewer_bits_as_the_rate_weight_rises(qcd_file, tmp_path):
    """Three trials that differ only in the weight of their latents' bits: the rounded latents their compressor codes
    take fewer bytes per jet at each step up, and the prior's parameters are stored with the weights."""
    sizes = []
    for rate in (1e-4, 1e-2, 1.0):
        spec = trial_spec(qcd_file, tmp_path / "results", model={"latent": 6}, train={"epochs": 15, "rate_lambda": rate})
        assert run_trial(spec, threads=1, log=lambda _: None) == "done"
        record = read_trial(trial_path(tmp_path / "results", spec.trial_id))
        sizes.append(record.metrics["latent_per_jet"])
        assert any(name.startswith("prior.") for name in record.weights)
        assert record.evaluation["validation"]["compressor"]["kind"] == "autoencoder"
    assert sizes[0] > sizes[1] > sizes[2], sizes


def test_a_rate_trained_model_decodes_its_rounded_latents_in_evaluation():
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=[8], latent=3, batchnorm=False), 5, rate=0.1)
    x = 3 * torch.randn(64, 5)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model.decode(torch.round(model.encode(x))))
    model.train()
    loss, mse = model.objective(x)
    assert loss > mse > 0, "the loss adds the latents' bits"
