"""A trial's compressor on its own: the numpy halves of an autoencoder reproduce torch (the decoder on integers too), special values come back exactly
through latents and coded residuals, every other value within the bound, and a stored compressor writes the same bytes."""

from __future__ import annotations

import os
import subprocess
import sys

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
    # the decoder on integers, at the rounded latents it is given (step 1): its weights are integers of 2**-16 to 2**-19
    # here, its activations of 2**-20, so it is off by ~1e-4 of the normalised values' unit spread (side features only)
    q = np.rint(encoded).astype(np.int64)
    np.testing.assert_allclose(latents.side(q)[:, : held.shape[1]], latents.decoder(q.astype(np.float64)), atol=1e-3)


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
    in_mev = odd / np.where(np.isin(np.arange(odd.shape[1]), [pt, m]), 1e-3, 1.0)  # a file's own values, in MeV
    in_mev[7, m] = -0.0038282908499240875e3 * 1.000000001  # no float64 times 1e-3 and back is this one
    units = np.where(np.isin(np.arange(odd.shape[1]), [pt, m]), 1e-3, 1.0)
    back = compressor.decode(compressor.encode(in_mev, 0.01, units), 0.01, units)
    escaped = [0, 1, 2, 3, 4, 7]  # zero, negative, NaN, inf, far out: stored as the file holds them, bit for bit
    assert back[escaped, m].tobytes() == in_mev[escaped, m].tobytes()
    regular = np.isfinite(in_mev[:, pt]) & (in_mev[:, pt] > 0)
    np.testing.assert_allclose(back[regular, pt], in_mev[regular, pt], rtol=0.01)
    coded = bytearray(compressor.encode(held, 0.01))
    coded[len(coded) // 2] ^= 0xFF
    with pytest.raises(ValueError):
        compressor.decode(bytes(coded), 0.01)
    with pytest.raises(ValueError, match="runs past its end"):
        compressor.decode(b"\xff" * 8 + bytes(coded[8:]), 0.01)


_DECODE_ELSEWHERE = """
import sys
from pathlib import Path
import numpy as np
from hpcsweep.compress.embed import unpack
folder = Path(sys.argv[1])
compressor = unpack((folder / "compressor").read_bytes())
coded = (folder / "coded").read_bytes()
assert compressor.encode(np.load(folder / "jets.npy"), 0.001) == coded, "encoded to other bytes"
np.save(folder / sys.argv[2], compressor.decode(coded, 0.001))
"""


def test_a_stored_compressor_codes_the_same_bits_with_one_or_two_blas_threads_and_without_blas(fitted, tmp_path):
    """Rebuilt from its state (as a bundle or a compressed file gives it back), in fresh processes whose BLAS runs 1 or 2
    threads, and here with every product in int64 (`exact.reference`: no BLAS), the compressor codes the jets into the
    same bytes and decodes them to the same bits: its predictions and the AE's decoder run on integers."""
    *_, compressor, _, held = fitted
    from hpcsweep.codec import exact
    from hpcsweep.compress.embed import pack

    coded = compressor.encode(held, 0.001)
    (tmp_path / "compressor").write_bytes(pack(compressor, 0.001))
    (tmp_path / "coded").write_bytes(coded)
    np.save(tmp_path / "jets.npy", held)
    for threads in ("1", "2"):
        variables = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), threads)
        subprocess.run(
            [sys.executable, "-c", _DECODE_ELSEWHERE, str(tmp_path), f"threads{threads}.npy"], check=True, env=os.environ | variables
        )
    again = Compressor.from_state(*compressor.state())
    with exact.reference():
        assert again.encode(held, 0.001) == coded
        plain = again.decode(coded, 0.001)
    here = compressor.decode(coded, 0.001)
    for decoded in (np.load(tmp_path / "threads1.npy"), np.load(tmp_path / "threads2.npy"), plain):
        assert decoded.tobytes() == here.tobytes()
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
