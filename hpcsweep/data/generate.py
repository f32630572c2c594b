"""Real simulated jets: Pythia 8 pp events at 13 TeV clustered by FastJet into a ROOT file.

Visible final-state particles (no neutrinos, |eta| < 5) are clustered with
anti-kt R = 0.4 into jets with pt > 20 GeV, with the active area from explicit
ghosts on a fixed grid (so the area is deterministic and quantised, as
ATLAS' ActiveArea is). Each jet gets 24 variables, named as ATLAS or CMS PF
jets name them where the analog is exact. Particles are sorted into CMS PF
species: inside the tracker (|eta| < 2.5) charged hadrons and electrons are
seen as such; outside it they deposit as neutral hadrons and photons.

A claim (`hpcsweep.claims`) lets one process generate a sample while others wait for it.

Work is split into chunks of `chunk_events` events with seeds derived from the
sample seed, run in parallel processes, and written in order: the file is the
same whatever the number of workers. Output is written to a temporary name and
renamed, so an existing file is always complete and a second run is instant.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, get_args

import numpy as np

from hpcsweep.allocation import allocated_cores
from hpcsweep.claims import Claim
from hpcsweep.config import Process
from hpcsweep.errors import UserError
from hpcsweep.files import atomic, sweep_temporaries

if TYPE_CHECKING:
    import pythia8mc

GENERATOR_VERSION = 1
CHUNK_EVENTS = 500
GENERATION_STALE_S = 600.0  # a generating process on another host silent this long is gone (the heartbeat beats every minute)
JET_R = 0.4
JET_PT_MIN = 20.0
PARTICLE_ETA_MAX = 5.0
TRACKER_ETA_MAX = 2.5
GHOST_AREA = 0.01
PROCESSES = get_args(Process)

#: Per-jet branches (`jet_<name>` in the file), in the order they are written.
JET_FLOATS = (
    "pt", "eta", "phi", "m", "E",
    "ActiveArea", "ActiveArea4vec_pt", "ActiveArea4vec_eta", "ActiveArea4vec_phi", "ActiveArea4vec_m",
    "Width", "WidthPhi",
    "mChargedHadronEnergy", "mNeutralHadronEnergy", "mPhotonEnergy", "mElectronEnergy", "mMuonEnergy",
    "EMFrac", "LeadingConstituentPt", "ptD",
)  # fmt: skip
JET_INTS = ("N90Constituents", "mChargedMultiplicity", "mNeutralMultiplicity", "mPhotonMultiplicity")


@dataclass(frozen=True)
class Sample:
    """What to simulate; together with GENERATOR_VERSION it names the output file."""

    process: str = "qcd"
    events: int = 10000
    seed: int = 1
    zprime_mass: float = 350.0
    chunk_events: int = CHUNK_EVENTS

    @property
    def filename(self) -> str:
        mass = f"_m{self.zprime_mass:g}" if self.process == "zprime" else ""
        chunks = f"_c{self.chunk_events}" if self.chunk_events != CHUNK_EVENTS else ""
        return f"{self.process}{mass}_n{self.events}_s{self.seed}{chunks}_v{GENERATOR_VERSION}.root"

    def pythia_settings(self) -> list[str]:
        """Pythia 8 settings: QCD 2->2 with pTHat > 100 GeV, or Z' -> q qbar (d, u, s, c, b)."""
        common = ["Beams:eCM = 13000.", "Next:numberCount = 0", "Print:quiet = on", "Random:setSeed = on"]
        if self.process == "qcd":
            return common + ["HardQCD:all = on", "PhaseSpace:pTHatMin = 100."]
        m = self.zprime_mass
        return common + [
            "NewGaugeBoson:ffbar2gmZZprime = on",
            "Zprime:gmZmode = 3",
            f"32:m0 = {m}",
            f"32:mMin = {0.5 * m}",
            f"32:mMax = {1.5 * m}",
            "32:onMode = off",
            "32:onIfAny = 1 2 3 4 5",
        ]


def generate(sample: Sample, out_dir: Path, workers: int | None = None, progress: bool = True) -> Path:
    """Simulate `sample` into `out_dir` (or return the cached file) and return its path."""
    if sample.process not in PROCESSES:
        raise UserError(f"unknown process {sample.process!r}; valid choices: {', '.join(PROCESSES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / sample.filename
    if path.exists():
        return path
    with Claim(out_dir / ".claims", sample.filename, GENERATION_STALE_S).waiting(print if progress else lambda _: None):
        if path.exists():  # another process generated it while this one waited
            return path
        sweep_temporaries(out_dir)  # what an interrupted generation left: it starts again from zero
        _generate(sample, path, workers, progress)
    return path


def _generate(sample: Sample, path: Path, workers: int | None, progress: bool) -> None:
    chunks = _chunks(sample)
    workers = max(1, min(workers or allocated_cores(), len(chunks)))
    start = time.perf_counter()
    with atomic(path) as tmp:
        n_jets = _write(sample, chunks, tmp, workers, progress)
    elapsed = time.perf_counter() - start
    if progress:
        print(
            f"generated {sample.events:,} {sample.process} events -> {n_jets:,} jets in {elapsed:.1f} s "
            f"({sample.events / elapsed:.0f} events/s, {workers} workers): {path}"
        )


def _chunks(sample: Sample) -> list[tuple[list[str], int, int, int]]:
    settings = sample.pythia_settings()
    chunks = []
    for index, first in enumerate(range(0, sample.events, sample.chunk_events)):
        digest = hashlib.sha256(f"{sample.seed}:{index}".encode()).digest()
        seed = 1 + int.from_bytes(digest[:8], "little") % 900_000_000
        chunks.append((settings, seed, first, min(sample.chunk_events, sample.events - first)))
    return chunks


def _write(sample: Sample, chunks: list, tmp: Path, workers: int, progress: bool) -> int:
    import awkward as ak
    import uproot
    from tqdm import tqdm

    done: dict[int, dict[str, np.ndarray]] = {}
    next_index, n_jets = 0, 0
    with (
        uproot.recreate(tmp) as root_file,
        ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool,
        tqdm(total=sample.events, unit="ev", desc=f"Pythia {sample.process}", disable=not progress) as bar,
    ):
        root_file["generator"] = f"hpcsweep generator v{GENERATOR_VERSION}: {sample}"
        tree = None
        futures = {pool.submit(simulate_chunk, *chunk): i for i, chunk in enumerate(chunks)}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            bar.update(chunks[futures[future]][3])
            while next_index in done:
                arrays = done.pop(next_index)
                jets = ak.unflatten(ak.zip({k: arrays[k] for k in JET_FLOATS + JET_INTS}), arrays["njet"])
                if tree is None:
                    tree = root_file.mktree("events", {"eventNumber": "int64", "jet": jets.type}, title="jets")
                tree.extend({"eventNumber": arrays["eventNumber"], "jet": jets})
                n_jets += len(arrays["pt"])
                next_index += 1
    return n_jets


def simulate_chunk(settings: list[str], seed: int, first_event: int, n_events: int) -> dict[str, np.ndarray]:
    """Generate, cluster and describe one chunk of events (runs in a worker process)."""
    import awkward as ak
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in settings + [f"Random:seed = {seed}"]:
        pythia.readString(line)
    if not pythia.init():
        raise RuntimeError(f"Pythia failed to initialise with {settings}")
    batch = pythia.nextBatch(n_events)
    counts = ak.to_numpy(ak.num(batch.prt))
    flat = ak.flatten(batch.prt)
    particles = {
        "px": ak.to_numpy(flat.p.px), "py": ak.to_numpy(flat.p.py),
        "pz": ak.to_numpy(flat.p.pz), "e": ak.to_numpy(flat.p.e),
        "id": ak.to_numpy(flat.id), "status": ak.to_numpy(flat.status),
    }  # fmt: skip
    event_of = np.repeat(np.arange(len(counts)), counts)
    charge = _charges(pythia, particles["id"])
    visible = _visible(particles)
    particles = {k: v[visible] for k, v in particles.items()}
    particles["charge"] = charge[visible]
    counts = np.bincount(event_of[visible], minlength=len(counts))
    jets, members = _cluster(particles, counts)
    arrays = _jet_features(particles, jets, members)
    arrays["eventNumber"] = first_event + np.arange(len(counts), dtype=np.int64)
    return arrays


def _charges(pythia: pythia8mc.Pythia, pdg_ids: np.ndarray) -> np.ndarray:
    unique, inverse = np.unique(pdg_ids, return_inverse=True)
    return np.array([pythia.particleData.charge(int(i)) for i in unique])[inverse]


def _visible(p: dict[str, np.ndarray]) -> np.ndarray:
    abs_id = np.abs(p["id"])
    eta = _pseudorapidity(p["px"], p["py"], p["pz"])
    neutrino = (abs_id == 12) | (abs_id == 14) | (abs_id == 16)
    return (p["status"] > 0) & ~neutrino & (np.abs(eta) < PARTICLE_ETA_MAX)


def _pseudorapidity(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
    return np.arcsinh(pz / np.maximum(np.hypot(px, py), 1e-12))


def _cluster(p: dict[str, np.ndarray], counts: np.ndarray) -> tuple[dict[str, list], dict[str, np.ndarray]]:
    """Anti-kt with active area per event; returns jet kinematics and jet -> particle membership."""
    import fastjet

    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, JET_R)
    ghosts = fastjet.GhostedAreaSpec(PARTICLE_ETA_MAX, 1, GHOST_AREA, 0.0, 0.0)  # no scatter: deterministic
    area_def = fastjet.AreaDefinition(fastjet.active_area_explicit_ghosts, ghosts)
    _silence_fastjet_banner(fastjet)
    four = np.stack([p["px"], p["py"], p["pz"], p["e"]], axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    jets: dict[str, list] = {k: [] for k in ("pt", "eta", "phi", "m", "E", "area", "a_pt", "a_eta", "a_phi", "a_m", "njet")}
    member_particle: list[int] = []
    member_jet: list[int] = []
    for event in range(len(counts)):
        start = int(offsets[event])
        inputs = []
        for index, row in enumerate(four[start : offsets[event + 1]].tolist()):
            pseudojet = fastjet.PseudoJet(*row)
            pseudojet.set_user_index(start + index)
            inputs.append(pseudojet)
        sequence = fastjet.ClusterSequenceArea(inputs, jet_def, area_def)
        found = fastjet.sorted_by_pt(sequence.inclusive_jets(JET_PT_MIN))
        jets["njet"].append(len(found))
        for jet in found:
            area4 = jet.area_4vector()
            for key, value in zip(
                ("pt", "eta", "phi", "m", "E", "area", "a_pt", "a_eta", "a_phi", "a_m"),
                (jet.pt(), jet.eta(), jet.phi_std(), jet.m(), jet.E(), jet.area(),
                 area4.pt(), area4.eta(), area4.phi_std(), area4.m()),
                strict=True,
            ):  # fmt: skip
                jets[key].append(value)
            members = [c.user_index() for c in jet.constituents() if c.user_index() >= 0]
            member_jet.extend([len(jets["pt"]) - 1] * len(members))
            member_particle.extend(members)
    return jets, {"jet": np.asarray(member_jet, dtype=np.int64), "particle": np.asarray(member_particle, dtype=np.int64)}


_banner_silenced = False  # this process has clustered once with stdout closed


def _silence_fastjet_banner(fastjet: ModuleType) -> None:
    """FastJet prints its banner to stdout on first use; cluster nothing once with stdout closed."""
    global _banner_silenced
    if _banner_silenced:
        return
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            fastjet.ClusterSequence([fastjet.PseudoJet(1.0, 0.0, 0.0, 1.0)], fastjet.JetDefinition(fastjet.antikt_algorithm, JET_R))
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _banner_silenced = True


def _species(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CMS PF-like species masks over visible particles."""
    abs_id = np.abs(p["id"])
    in_tracker = np.abs(_pseudorapidity(p["px"], p["py"], p["pz"])) < TRACKER_ETA_MAX
    muon = abs_id == 13
    electron = (abs_id == 11) & in_tracker
    photon = (abs_id == 22) | ((abs_id == 11) & ~in_tracker)
    charged_hadron = (p["charge"] != 0) & ~muon & (abs_id != 11) & in_tracker
    neutral_hadron = ~(muon | electron | photon | charged_hadron)
    return {"ChargedHadron": charged_hadron, "NeutralHadron": neutral_hadron, "Photon": photon, "Electron": electron, "Muon": muon}


def _jet_features(p: dict[str, np.ndarray], jets: dict[str, list], members: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-jet substructure and PF-species content from the constituents (vectorised over the chunk)."""
    n = len(jets["pt"])
    jet_of, index = members["jet"], members["particle"]
    pt = np.hypot(p["px"], p["py"])[index]
    energy = p["e"][index]
    eta = _pseudorapidity(p["px"], p["py"], p["pz"])[index]
    phi = np.arctan2(p["py"], p["px"])[index]
    jet_pt, jet_eta, jet_phi, jet_e = (np.asarray(jets[k], dtype=np.float64) for k in ("pt", "eta", "phi", "E"))

    def per_jet(weights: np.ndarray) -> np.ndarray:
        return np.bincount(jet_of, weights=weights, minlength=n)

    dphi = np.abs((phi - jet_phi[jet_of] + np.pi) % (2 * np.pi) - np.pi)
    d_r = np.hypot(eta - jet_eta[jet_of], dphi)
    sum_pt = per_jet(pt)
    out: dict[str, np.ndarray] = {
        "pt": jet_pt, "eta": jet_eta, "phi": jet_phi, "E": jet_e,
        "m": np.maximum(np.asarray(jets["m"]), 0.0),
        "ActiveArea": np.asarray(jets["area"]),
        "ActiveArea4vec_pt": np.asarray(jets["a_pt"]), "ActiveArea4vec_eta": np.asarray(jets["a_eta"]),
        "ActiveArea4vec_phi": np.asarray(jets["a_phi"]), "ActiveArea4vec_m": np.maximum(np.asarray(jets["a_m"]), 0.0),
        "Width": per_jet(pt * d_r) / sum_pt,
        "WidthPhi": per_jet(pt * dphi) / sum_pt,
        "ptD": np.sqrt(per_jet(pt**2)) / sum_pt,
    }  # fmt: skip
    species = {name: mask[index] for name, mask in _species(p).items()}
    for name, mask in species.items():
        out[f"m{name}Energy"] = per_jet(energy * mask)
    out["EMFrac"] = (out["mPhotonEnergy"] + out["mElectronEnergy"]) / jet_e
    charged = species["ChargedHadron"] | species["Electron"] | species["Muon"]
    out["mChargedMultiplicity"] = per_jet(charged.astype(float))
    out["mNeutralMultiplicity"] = per_jet((~charged).astype(float))
    out["mPhotonMultiplicity"] = per_jet(species["Photon"].astype(float))
    starts = np.flatnonzero(np.r_[True, jet_of[1:] != jet_of[:-1]]) if n else np.zeros(0, dtype=np.int64)
    out["LeadingConstituentPt"] = np.maximum.reduceat(pt, starts) if n else np.zeros(0)
    out["N90Constituents"] = _n90(jet_of, energy, n)
    result = {k: out[k].astype(np.float32) for k in JET_FLOATS}
    result.update({k: np.rint(out[k]).astype(np.int32) for k in JET_INTS})
    result["njet"] = np.asarray(jets["njet"], dtype=np.int64)
    return result


def _n90(jet_of: np.ndarray, energy: np.ndarray, n: int) -> np.ndarray:
    """Fewest constituents (highest energy first) that carry 90 % of the jet energy."""
    order = np.lexsort((-energy, jet_of))
    jets_sorted, e_sorted = jet_of[order], energy[order]
    cumulative = np.cumsum(e_sorted)
    total = np.bincount(jets_sorted, weights=e_sorted, minlength=n)
    before_jet = np.concatenate([[0.0], np.cumsum(total)])[jets_sorted]
    carried_before = cumulative - e_sorted - before_jet
    return np.bincount(jets_sorted, weights=(carried_before < 0.9 * total[jets_sorted]).astype(float), minlength=n)
