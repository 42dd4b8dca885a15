# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet -c constraints.txt
# The checked torch/torchvision pair (see README, "Why these pins"). Always named explicitly:
# an unpinned torch resolves to the newest release with several GB of downloads.
TORCH  := torch==2.14.1 torchvision==0.29.1
DATA   ?=

.PHONY: demo test bench docs reproduce reproduce-faces clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) $(TORCH) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) $(TORCH) -e ".[dev]"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python examples/demo.py $(if $(DATA),--data $(DATA),)

$(VENV)/.installed-docs: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) $(TORCH) -e ".[docs]"
	touch $@

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

docs: $(VENV)/.installed-docs
	$(BIN)/python -m sphinx -b html -q docs docs/_build/html
	@echo "docs built: docs/_build/html/index.html"

reproduce: $(VENV)/.installed-dev
	$(BIN)/python experiments/reproduce.py

# the paper's UTKFace settings at CPU scale (about 60 minutes on 2 cores); needs ../shared/data
reproduce-faces: $(VENV)/.installed-dev
	$(BIN)/python experiments/reproduce_faces.py

# about 20 minutes on 2 cores; each script prints its ratios and writes benchmarks/results/*.json
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/ceag_overhead.py
	$(BIN)/python benchmarks/short_step_overhead.py
	$(BIN)/python benchmarks/fit_vs_hand_loop.py
	$(BIN)/python benchmarks/gmp_cost.py
	$(BIN)/python benchmarks/channel_export_speed.py
	$(BIN)/python benchmarks/gmp_cache_gridsearch.py
	$(BIN)/python benchmarks/report_bootstrap.py
	$(BIN)/python benchmarks/heldout_step_cost.py
	$(BIN)/python benchmarks/criteria_cost.py
	$(BIN)/python benchmarks/summarize.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis docs/_build
