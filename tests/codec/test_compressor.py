"""A trial's compressor on its own: the numpy halves of an autoencoder reproduce torch, special values come back exactly
through latents and coded residuals, every other value within the bound, and a stored compressor writes the same bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpcsweep.codec import Compressor, Latents, Settings, codec_kinds, energy_of, fit_compressor, measure
from hpcsweep.config import ModelConfig
from hpcsweep.data import load_jets, load_varset, make_normaliser
from hpcsweep.trial import split_indices
from hpcsweep.trial.compressor import networks
from hpcsweep.trial.models import build_model


@pytest.fixture(scope="module")
def fitted(qcd_file):
    """An AE (with BatchNorm and a rate term) trained a few epochs on the session's jets, and its compressor at 1 % and 0.1 %."""
    varset = load_varset("generated")
    x = load_jets(qcd_file, varset).matrix().astype(np.float64)
    train, held = split_indices(len(x), 0.2, 0)
    normaliser = make_normaliser("custom+standard", varset).fit(x[train])
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=[32, 32], latent=4), x.shape[1], rate=1e-2)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = torch.from_numpy(normaliser.transform(x[train]))
    for _ in range(150):
        loss, _ = model.objective(data[torch.randint(0, len(data), (256,))])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    encoder, decoder = networks(model)
    latents = Latents.of(encoder, decoder, normaliser, codec_kinds(varset), x[train], 1.0)
    compressor = fit_compressor(
        varset.names, codec_kinds(varset), x[train], [0.01, 0.001], energy_of(varset), latents, Settings(steps=60), seed=0
    )
    return varset, model, normaliser, compressor, x[train], x[held]


def test_the_numpy_halves_compute_what_torch_does(fitted):
    varset, model, normaliser, compressor, _, held = fitted
    latents = compressor.latents
    normalised = normaliser.transform(held)
    with torch.no_grad():
        encoded = model.encode(torch.from_numpy(normalised)).numpy()
        decoded = model.decode(torch.from_numpy(encoded)).numpy()
    np.testing.assert_allclose(latents.encoder(normalised.astype(np.float64)), encoded, atol=2e-5)
    np.testing.assert_allclose(latents.decoder(encoded.astype(np.float64)), decoded, atol=2e-5)


def test_special_values_come_back_exactly_through_latents_and_residuals(fitted):
    varset, _, _, compressor, _, held = fitted
    odd = held[:40].copy()
    m, pt, n90 = (varset.names.index(name) for name in ("m", "pt", "N90Constituents"))
    odd[0, m], odd[1, m], odd[2, m], odd[3, m], odd[4, m] = 0.0, -1.5, np.nan, np.inf, 1e30
    odd[5, pt] = 1e-30  # far below every value seen in training
    odd[6, n90] = 12345.0  # a discrete value never seen in training
    for bound in compressor.bounds:
        back = compressor.decode(compressor.encode(odd, bound), bound)
        np.testing.assert_array_equal(back[:5, m], odd[:5, m])
        assert back[6, n90] == 12345.0 and back[5, pt] == pytest.approx(1e-30, rel=bound)
        stats, decoded = measure(compressor, held, bound)
        assert stats["largest_error"] <= 1.0 and stats["latent_per_jet"] > 0 and stats["kind"] == "autoencoder"
        assert stats["bytes_per_jet"] == pytest.approx(stats["payload_per_jet"] + stats["model_bytes"] / 1e6)
    coded = bytearray(compressor.encode(held, 0.01))
    coded[len(coded) // 2] ^= 0xFF
    with pytest.raises(ValueError):
        compressor.decode(bytes(coded), 0.01)
    with pytest.raises(ValueError, match="runs past its end"):
        compressor.decode(b"\xff" * 8 + bytes(coded[8:]), 0.01)


def test_a_stored_compressor_writes_the_same_bytes_with_one_or_two_threads(fitted):
    """Rebuilt from its state (as a trial file or bundle gives it back), the compressor codes the jets into the same bytes
    and decodes them to the same values, whatever torch's thread count: the networks run in numpy."""
    *_, compressor, _, held = fitted
    again = Compressor.from_state(*compressor.state())
    threads = torch.get_num_threads()
    try:
        outputs = []
        for count in (1, 2):
            torch.set_num_threads(count)
            coded = again.encode(held, 0.001)
            outputs.append((coded, again.decode(coded, 0.001)))
    finally:
        torch.set_num_threads(threads)
    assert outputs[0][0] == outputs[1][0] == compressor.encode(held, 0.001)
    np.testing.assert_array_equal(outputs[0][1], outputs[1][1])
    assert again.bounds == [0.01, 0.001] and again.kind == "autoencoder"
    with pytest.raises(KeyError):
        again.coder(0.05)


def test_the_learned_coder_alone_is_a_compressor_too(fitted):
    varset, _, _, _, train, held = fitted
    alone = fit_compressor(varset.names, codec_kinds(varset), train, [0.01], energy_of(varset), settings=Settings(steps=60))
    stats, decoded = measure(alone, held, 0.01)
    assert alone.kind == "codec" and stats["latent_per_jet"] == pytest.approx(8 / len(held)), "the empty latent part's header only"
    assert stats["largest_error"] <= 1.0 and decoded.shape == held.shape
    assert stats["payload_per_jet"] < 0.5 * 4 * held.shape[1], "fewer than half the bytes of float32"
