# hpcsweep: every user task is one target; the first one run builds .venv.
#   make sweep LATENT=18          the main job (SWEEP=default, EPOCHS=, EXECUTOR=local|slurm, SITE=local, PARTITION=)
#   make test                     the test suite
#   make help                     everything else
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.dev-installed
BENCH_STAMP := $(VENV)/.bench-installed

SWEEP ?= default
LATENT ?=
EPOCHS ?=
EXECUTOR ?=
SITE ?=
PARTITION ?=
RESULTS ?= results
PYTEST_ARGS ?=
TOP ?= 1
SEEDS ?= 3
FILE ?=
DRAFT ?=
ONLY ?=

SWEEP_ARGS := $(SWEEP) --results $(RESULTS) --wait $(if $(LATENT),--latent $(LATENT)) $(if $(EPOCHS),--epochs $(EPOCHS)) \
	$(if $(EXECUTOR),--executor $(EXECUTOR)) $(if $(SITE),--site $(SITE)) $(if $(PARTITION),--partition $(PARTITION))

.PHONY: help venv dev sweep status aggregate report rerun-best inspect data test test-fast bench bench-compress chaos lint format clean clean-results slurm-up slurm-down

help: ## list the targets and the variables they take
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "  variables: SWEEP=$(SWEEP) LATENT=$(LATENT) EPOCHS=$(EPOCHS) EXECUTOR=$(EXECUTOR) SITE=$(SITE) PARTITION=$(PARTITION) RESULTS=$(RESULTS) TOP=$(TOP) SEEDS=$(SEEDS) FILE=$(FILE) DRAFT=$(DRAFT) ONLY=$(ONLY)"

venv: $(STAMP) ## create .venv with what the main job needs: hpcsweep, its pinned dependencies and the peers (SZ3, ZFP, fpzip)

dev: $(DEV_STAMP) ## add the tools of the tests and lint, ONNX export and tracking (make test and make lint do)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $$(grep -o '"torch==[0-9.]*"' pyproject.toml | tr -d '"')
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[compare]'
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(DEV_STAMP)

sweep: $(STAMP) ## run the unfinished trials of SWEEP and print its best/median tables
	$(BIN)/hpcsweep sweep $(SWEEP_ARGS)

status: $(STAMP) ## count SWEEP's trials by state and latent dimension (LATENT=, EPOCHS= as for sweep)
	$(BIN)/hpcsweep status $(SWEEP) --results $(RESULTS) $(if $(LATENT),--latent $(LATENT)) $(if $(EPOCHS),--epochs $(EPOCHS))

aggregate: $(STAMP) ## write SWEEP's tables (Markdown, CSV, LaTeX) and figures (PNG, PDF) from its trial files
	$(BIN)/hpcsweep aggregate $(SWEEP) --results $(RESULTS)

report: $(STAMP) ## write RESULTS/SWEEP/report/index.html: every table and figure on one page
	$(BIN)/hpcsweep report $(SWEEP) --results $(RESULTS)

rerun-best: $(STAMP) ## retrain the TOP best configs per latent dimension of SWEEP with SEEDS new seeds; stability table
	$(BIN)/hpcsweep rerun-best $(SWEEP) --top $(TOP) --seeds $(SEEDS) --results $(RESULTS) --wait \
		$(if $(EXECUTOR),--executor $(EXECUTOR)) $(if $(SITE),--site $(SITE)) $(if $(PARTITION),--partition $(PARTITION))

inspect: $(STAMP) ## what FILE (ROOT or Parquet) holds; DRAFT=mine.yaml also drafts a variable set for it
	@test -n "$(FILE)" || { echo "make inspect FILE=path/to/jets.root [DRAFT=sweeps/mine_vars.yaml]"; exit 2; }
	$(BIN)/hpcsweep data inspect $(FILE) $(if $(DRAFT),--draft-varset $(DRAFT))

data: $(STAMP) ## generate the default QCD sample and the Z' 350/600 GeV signal samples
	$(BIN)/hpcsweep data generate --process qcd --events 10000
	$(BIN)/hpcsweep data generate --process zprime --mass 350 --events 2000
	$(BIN)/hpcsweep data generate --process zprime --mass 600 --events 2000

test: $(DEV_STAMP) ## run the test suite (PYTEST_ARGS= passes options to pytest)
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(DEV_STAMP) ## the tests without real sweeps, SLURM or Chromium (about 90 s on 2 cores): the loop while editing
	$(BIN)/pytest -m "not slow and not slurm" $(PYTEST_ARGS)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## benchmarks against peers (Lightning, Hydra on SLURM after make slurm-up, SZ3) -> docs/benchmarks.md; ONLY="training review" reruns sections
	$(BIN)/python benchmarks/bench.py --out docs/benchmarks.md $(if $(ONLY),--only $(ONLY))

bench-compress: $(STAMP) ## only the compression benchmarks (the compression sweep's bytes/jet vs SZ3/ZFP/fpzip, a 4-variable file, throughput, memory) -> docs/benchmarks.md
	$(BIN)/python benchmarks/bench.py --out docs/benchmarks.md --only compression

chaos: $(STAMP) ## kill a 12-trial sweep 15 times at random (EXECUTOR=local|slurm) -> counts in docs/reliability.md
	$(BIN)/python benchmarks/chaos.py --executor $(or $(EXECUTOR),local) --out docs/reliability.md

lint: $(DEV_STAMP) ## ruff (lint and formatting) and mypy (types of hpcsweep/)
	$(BIN)/ruff check hpcsweep tests benchmarks
	$(BIN)/ruff format --check hpcsweep tests benchmarks
	$(BIN)/mypy

format: $(DEV_STAMP) ## ruff: apply formatting and safe fixes
	$(BIN)/ruff check --fix hpcsweep tests benchmarks
	$(BIN)/ruff format hpcsweep tests benchmarks

slurm-up: ## start a single-node SLURM cluster here (root; Debian slurm-wlm, munge, slurmdbd + MariaDB)
	LOCAL_SLURM_ACCOUNTING=1 bash tools/local-slurm/start.sh

slurm-down: ## stop the cluster that slurm-up started
	bash tools/local-slurm/stop.sh

clean-results: ## delete SWEEP's results (trial files, tables, logs)
	rm -rf $(RESULTS)/$(SWEEP)

clean: ## delete the virtualenv and caches (generated data in data/ is kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
