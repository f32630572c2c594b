"""The peer of hpcsweep's SLURM dispatch: a Hydra multirun through hydra-submitit-launcher.

What a physicist would write instead of hpcsweep: one Hydra app whose task trains one
grid point, launched as

    python benchmarks/peers/hydra_app.py -m lr=1e-3,3e-3 wd=0,1e-4 seed=0 sweep_file=... dataset=... results=...

Each grid point becomes one SLURM array task (submitit's map_array). The task runs the
same trial function as an hpcsweep array task (`hpcsweep.sweep.dispatch.run_one`: train,
evaluate, write the trial file and its attempt times), so the two differ only in how they
are dispatched. benchmarks/bench.py times both on the local SLURM cluster.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="short")
def main(cfg: DictConfig) -> str:
    """Train and evaluate the grid point (lr, wd, seed) of the sweep file on its prepared dataset."""
    from hpcsweep.config import TrialSpec, load_sweep
    from hpcsweep.sweep import expand
    from hpcsweep.sweep.dispatch import run_one

    sweep = load_sweep(cfg.sweep_file)
    config = next(
        t for t in expand(sweep) if (t.train.lr, t.train.weight_decay, t.train.seed) == (float(cfg.lr), float(cfg.wd), int(cfg.seed))
    )
    trial_id = f"lr{cfg.lr}_wd{cfg.wd}_seed{cfg.seed}".replace(".", "p").replace("-", "m")
    spec = TrialSpec(trial_id=trial_id, sweep=sweep.name, config=config, dataset=cfg.dataset, results_dir=cfg.results,
                     evaluation=sweep.evaluation)  # fmt: skip
    return str(run_one(spec, threads=1))


if __name__ == "__main__":
    main()
