# mtsearch: every target installs what it needs first (a fresh clone needs no manual step).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MIRROR ?= ../shared/data/cs224n
DATA := data/cs224n
CONFIG ?= search_spaces/presets/baseline.yaml
SET ?=
PORT ?= 5000
DASH_PORT ?= 8501
SPACE ?= sampling
PROFILE ?= cpu
BACKEND ?= optuna
SWEEP_ARGS ?=

.PHONY: setup data train sweep results report test bench lint mlflow dashboard clean-cache help

help:
	@echo "make sweep SPACE=sampling [PROFILE=gpu] [BACKEND=ray]   run or resume a sweep, print its ablation"
	@echo "make train        fine-tune MiniLM on SST+QQP+STS with $(CONFIG) (about ten minutes on 2 CPU cores)"
	@echo "make test         run the test suite"
	@echo "make bench        benchmarks (trainer, updates, freeze, sweep overhead) -> runs/bench/*.json; BENCH=trainer for one"
	@echo "make mlflow       MLflow UI on http://127.0.0.1:$(PORT)"
	@echo "make dashboard    sweep dashboard (Streamlit) on http://127.0.0.1:$(DASH_PORT), links trials to MLflow on $(PORT)"
	@echo "make report SPACE=sampling   one self-contained HTML report of a sweep -> runs/sweeps/<name>/report.html"
	@echo "make setup|data|lint|clean-cache"

setup: $(STAMP)

# torch goes first and pinned exactly: anything else would let pip pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Copies (and md5-checks) the CS224N files from the shared mirror when it exists,
# otherwise downloads them from the course repository.
data: $(DATA)/.fetched
$(DATA)/.fetched: $(STAMP)
	if [ -d "$(MIRROR)" ]; then $(BIN)/mtsearch data fetch --from "$(MIRROR)" --dest $(DATA); \
	else $(BIN)/mtsearch data fetch --dest $(DATA); fi
	touch $@

train: setup data
	$(BIN)/mtsearch train --config $(CONFIG) $(foreach s,$(SET),--set $(s))

sweep: setup data
	$(BIN)/mtsearch sweep $(SPACE) --profile $(PROFILE) --backend $(BACKEND) $(SWEEP_ARGS)

results: setup
	$(BIN)/mtsearch results $(SPACE)

test: setup data
	$(BIN)/python -m pytest -q

bench: setup data
	$(BIN)/python benchmarks/run_all.py $(BENCH)

lint: setup
	$(BIN)/ruff check mtsearch tests benchmarks dashboards
	$(BIN)/ruff format --check mtsearch tests benchmarks dashboards

# Loopback only; MTSEARCH_MLFLOW_PORT makes the trial links point at `make mlflow PORT=...`.
dashboard: setup
	MTSEARCH_MLFLOW_PORT=$(PORT) $(BIN)/streamlit run dashboards/app.py --server.address 127.0.0.1 --server.port $(DASH_PORT) --server.headless true --browser.gatherUsageStats false

report: setup
	$(BIN)/mtsearch report $(SPACE)

mlflow: setup
	$(BIN)/mlflow ui --host 127.0.0.1 --port $(PORT) --backend-store-uri sqlite:///$(CURDIR)/runs/mlflow.db

clean-cache:
	rm -rf runs/cache
