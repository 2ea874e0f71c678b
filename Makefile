# clip_annotated: the two commands of the quick start are `make reproduce` and `make test`.
# Each one sets up a local virtual environment (.venv) on first use.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed-$(shell cat settings.ini setup.py | cksum | cut -d' ' -f1)
# torch is pinned here (not in settings.ini) so a fresh machine gets a known build.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: help venv test reproduce readme sync export execute bench bench-loader bench-e2e gpu-check preview

help:
	@echo "make reproduce   train MiniCLIP on the emoji set and its bias twin, write runs/mini/report.md"
	@echo "make test        nbdev_test over every notebook, then pytest (what CI runs)"
	@echo "make sync        sync notebooks with their text twins in nbs/_py (jupytext)"
	@echo "make export      nbdev_export + nbdev_clean (run before committing)"
	@echo "make bench       tokenizer and encoder benchmark against open_clip"
	@echo "make bench-loader  input pipeline against open_clip's data loader (its own venv, .venv-openclip)"
	@echo "make bench-e2e   our trainer against open_clip's, end to end on the emoji shards (SEEDS, STEPS; .venv-openclip)"
	@echo "make gpu-check   CUDA tests, GPU benchmarks and a kill-and-resume run under one deadline (tiny sizes without CUDA)"
	@echo "make preview     the site as local HTML in _preview/ (no Quarto needed)"

$(STAMP):
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*; touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/nbdev_test --n_workers 2 --timing
	$(BIN)/pytest -q tests

# The book's main run: MiniCLIP trained on the emoji set (runs/mini/: checkpoint, metrics, curves, report.md,
# results.json, model_card.md), then its bias twin (runs/bias-captions/) and the report's bias section.
# Running it again resumes the finished run and only rewrites the report.
reproduce: $(STAMP)
	$(BIN)/clip-annotated reproduce

# The README's results block, rewritten from runs/mini/results.json (and runs/bias-seeds.json, which the bias
# chapter writes) with the machine they ran on (appendix 98b): run after `make reproduce` and `make execute`.
readme: $(STAMP)
	$(PY) -c "from clip_annotated.results import update_readme; update_readme('README.md')"

sync: $(STAMP)
	$(BIN)/jupytext --sync nbs/*.ipynb nbs/_py/*.py

export: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(BIN)/jupytext --sync nbs/*.ipynb

bench: $(STAMP)
	$(PY) -m clip_annotated.bench

# The input pipeline against open_clip's training data loader (appendix 99c): pictures/s from a CSV of JPEGs and
# from shards, 0, 1 and 2 workers. open_clip's training package runs in its own virtual environment,
# .venv-openclip, made on first use; `make bench-loader OPEN_CLIP_TRAIN_PYTHON=/path/to/python` uses another
# Python with open-clip-torch[training] instead. The results go to $(LOADER_JSON), which appendix 99c shows;
# LOADER_ARGS passes options on (e.g. --pictures 1024 --repeats 5; see python -m clip_annotated.loaderbench -h).
OPEN_CLIP_VENV := .venv-openclip
OPEN_CLIP_TRAIN_PYTHON ?= $(OPEN_CLIP_VENV)/bin/python
LOADER_JSON ?= nbs/bench_loader.json
LOADER_ARGS ?=

$(OPEN_CLIP_VENV)/.installed:
	test -x $(OPEN_CLIP_VENV)/bin/python || python3 -m venv $(OPEN_CLIP_VENV)
	$(OPEN_CLIP_VENV)/bin/python -m pip install -q --upgrade pip
	$(OPEN_CLIP_VENV)/bin/python -m pip install -q $(TORCH) 'open-clip-torch[training]==3.3.0'
	touch $@

bench-loader: $(STAMP) $(if $(filter $(OPEN_CLIP_VENV)/bin/python,$(OPEN_CLIP_TRAIN_PYTHON)),$(OPEN_CLIP_VENV)/.installed)
	OPEN_CLIP_TRAIN_PYTHON=$(OPEN_CLIP_TRAIN_PYTHON) $(PY) -m clip_annotated.loaderbench --save $(LOADER_JSON) $(LOADER_ARGS)

# Our trainer against open_clip's training script, end to end (appendix 99b; chapter 16 shows the results): every arm
# of E2E_ARMS (ours, open_clip, or ours+buffer=N / ours+zoom=LO:HI; the default's zoom arm is chapter 3's earlier crop range) trained for STEPS steps once per seed of SEEDS,
# one run at a time, on the emoji set written as shards, then judged alike (held-out image→name R@1). Runs and
# results.jsonl (one line per run; a run already there is not trained again) go to runs/bench-e2e, the summary to
# $(E2E_JSON). open_clip's side runs in .venv-openclip, as for bench-loader. Chapter 16 shows two committed
# summaries: nbs/bench_e2e_today.json (`make bench-e2e E2E_ARMS="ours open_clip" E2E_JSON=nbs/bench_e2e_today.json`
# replaces it) and nbs/bench_e2e.json, the one-difference-at-a-time ablation measured at an older commit (see the file).
SEEDS ?= 0 1 2 3
STEPS ?= 250
E2E_ARMS ?= ours open_clip ours+buffer=256 ours+zoom=1.0:1.2
E2E_JSON ?= runs/bench-e2e/bench_e2e.json

bench-e2e: $(STAMP) $(if $(filter $(OPEN_CLIP_VENV)/bin/python,$(OPEN_CLIP_TRAIN_PYTHON)),$(OPEN_CLIP_VENV)/.installed)
	OPEN_CLIP_TRAIN_PYTHON=$(OPEN_CLIP_TRAIN_PYTHON) $(PY) -m clip_annotated.e2e --seeds $(SEEDS) --steps $(STEPS) \
	  --arms $(E2E_ARMS) --save $(E2E_JSON)

# The GPU check (appendix 99a): tests with a CUDA path, training and zero-shot benchmarks against open_clip
# in bfloat16, and a killed-and-resumed run of the vit-b32-gpu preset, all within DEADLINE seconds; it
# writes runs/gpu-check/gpu_check.json and gpu_check.md. Without CUDA it runs with tiny sizes and says so.
DEADLINE ?= 540
gpu-check: $(STAMP)
	$(PY) -m clip_annotated.gpucheck --deadline $(DEADLINE)

# Re-run notebooks top to bottom and keep their outputs (the site shows committed outputs).
# `make execute NB=02_model` runs one chapter, `NB="index 02_model"` several; the default runs them all.
NB ?= index [0-9]*
execute: $(STAMP)
	$(BIN)/jupytext --sync $(foreach n,$(NB),nbs/_py/$(n).py)
	$(BIN)/nbdev_export
	for nb in $(foreach n,$(NB),nbs/$(n).ipynb); do \
	  (cd nbs && CLIP_ANNOTATED_PROGRESS=0 $(abspath $(BIN))/jupyter nbconvert --to notebook --execute --inplace \
	     --ExecutePreprocessor.timeout=3600 $$(basename $$nb)) || exit 1; done
	for nb in $(foreach n,$(NB),nbs/$(n).ipynb); do $(BIN)/nbdev_clean --fname $$nb || exit 1; done
	$(BIN)/nbdev_export
	$(BIN)/jupytext --sync $(foreach n,$(NB),nbs/$(n).ipynb)

# A local HTML preview without Quarto: nbdev's own processing of the notebooks into _proc/ (what
# `nbdev_proc_nbs` does, except that cells mixing imports with other code keep their saved outputs),
# then each page to _preview/ with nbconvert: figure captions and alt text, math as MathML and Mermaid
# flowcharts as SVG (.ci/flowchart.py; no network needed), the sidebar of _quarto.yml. With Quarto
# installed, `nbdev_docs` builds the real site from the same notebooks. `make preview NB=13_visualize`
# redoes one page.
preview: $(STAMP)
	$(PY) .ci/preview.py $(if $(filter command line,$(origin NB)),$(NB))
