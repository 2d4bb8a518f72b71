# mtsearch: every target installs what it needs first (a fresh clone needs no manual step).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every package `make setup` installs, pinned; `make lock` rewrites it.
LOCK := requirements.lock
# torch goes first, with pip and pinned exactly: pip then takes the CPU wheel that this machine's pip
# configuration finds on local disk, where any looser spec would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
# The lock is installed with uv when it can honour pip's configuration here (faster from nothing),
# otherwise with pip; `make setup INSTALLER=pip` forces pip.
INSTALLER ?= uv
UV_VERSION := 0.13.9
MIRROR ?= ../shared/data/cs224n
# Python may write its bytecode caches (.pyc, ignored by git) whatever the shell says: the installs
# compile none (uv never does, torch goes in with --no-compile to keep setup short), and with
# PYTHONDONTWRITEBYTECODE=1, as on this machine, every process compiled torch, transformers and
# mlflow from source again: `import torch, transformers, mlflow, optuna` took 28 s, 8 s with caches.
# The first process that imports a module writes its cache; every later one reads it.
unexport PYTHONDONTWRITEBYTECODE
DATA := data/cs224n
CONFIG ?= search_spaces/presets/baseline.yaml
SET ?=
PORT ?= 5000
STUDY_PORT ?= 8080
# The runs folder, as mtsearch.paths.runs_dir() reads it: MTSEARCH_RUNS (relative: to here), else runs/.
RUNS := $(abspath $(or $(MTSEARCH_RUNS),runs))
DASH_PORT ?= 8501
SPACE ?= sampling
PROFILE ?= cpu
BACKEND ?= optuna
SWEEP_ARGS ?=
# Runs a sweep trains at once (`mtsearch sweep --jobs`, the cores split between them). auto, whose rule
# lives in mtsearch/backends/packing.py so that the Makefile and the CLI agree: without CUDA, 2 wherever
# there are 2 cores or more, else 1 (on 2 cores, 2 runs of 1 thread each got 1.09x and 1.27x the runs per
# minute of 1 run with 2 threads in two runs of benchmarks/bench_jobs.py on 2026-12-04); on CUDA, a short measurement of how many runs share a
# GPU, cached in the sweep folder (not yet measured on a GPU: see the README's GPU section).
# Ray (BACKEND=ray) runs trials side by side itself (--cpus-per-trial, and on CUDA --gpus-per-trial auto
# where PROFILE=gpu); JOBS is passed there only when given explicitly, and refused.
JOBS ?= auto
JOBS_FLAG = $(if $(and $(filter ray,$(BACKEND)),$(filter file,$(origin JOBS))),,--jobs $(JOBS))
GPUS_FLAG = $(if $(and $(filter ray,$(BACKEND)),$(filter gpu,$(PROFILE))),--gpus-per-trial auto)

# pytest-xdist workers of `make test` (it prints its 15 slowest tests: where the time goes): one per core, at most 4 (measured on 2 cores only; every worker
# imports torch and trains its own tiny models, and some tests start sweeps of two processes).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ "$$n" -gt 4 ] && n=4; echo $$n)

.PHONY: setup lock data train sweep results report test test-e2e test-all bench lint mlflow studies dashboard clean-cache help

help:
	@echo "make sweep SPACE=sampling [PROFILE=gpu] [BACKEND=ray] [JOBS=$(JOBS)]   run or resume a sweep (JOBS runs at once), print its ablation"
	@echo "make train        fine-tune MiniLM on SST+QQP+STS with $(CONFIG) (about ten minutes on 2 CPU cores)"
	@echo "make test         run the test suite but its end-to-end tests (make test-e2e; make test-all for both)"
	@echo "make bench        benchmarks (trainer, updates, freeze, sweep overhead, jobs, gpu) -> runs/bench/*.json; BENCH=trainer for one"
	@echo "make mlflow       MLflow UI on http://127.0.0.1:$(PORT) over $(RUNS) (MTSEARCH_RUNS)"
	@echo "make studies SPACE=sampling [SWEEP=name]   optuna-dashboard of a sweep's study on http://127.0.0.1:$(STUDY_PORT)"
	@echo "make dashboard    sweep dashboard (Streamlit) on http://127.0.0.1:$(DASH_PORT), links trials to MLflow on $(PORT)"
	@echo "make report SPACE=sampling   one self-contained HTML report of a sweep -> runs/sweeps/<name>/report.html"
	@echo "make setup        .venv: torch==2.13.0 (CPU) with pip, then exactly $(LOCK) (uv, else pip)"
	@echo "make lock         resolve pyproject.toml afresh in a throwaway venv and rewrite $(LOCK)"
	@echo "make data|lint|clean-cache"

setup: $(STAMP)

# pip first becomes the lock's (the venv's own is older and slower), then installs torch (--no-compile,
# as uv does: byte-compiling all of torch takes 18 s, Python compiles what it imports), then the lock
# goes in as it is (--no-deps: it already holds every dependency) and the project, built with the
# lock's setuptools; `pip check` proves that the lock satisfies pyproject.toml. On an existing .venv
# this adds and changes packages but removes none: rm -rf .venv for an exact one.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@v=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); grep -q "^# python $$v " $(LOCK) || \
	  echo "warning: $(LOCK) was made for $$(grep -o '^# python [^ ]*' $(LOCK) | cut -c3-), .venv has $$v: some pins may not install" >&2
	$(BIN)/python -m pip install --quiet $$(grep '^pip==' $(LOCK))
	$(BIN)/python -m pip install --quiet --no-compile $(TORCH)
	inst=$$($(BIN)/python -c "$$INSTALL_CMD" $(INSTALLER) $(UV_VERSION)) && \
	  eval "$$inst --no-deps -r $(LOCK)" && eval "$$inst --no-deps --no-build-isolation -e ."
	@$(BIN)/python -c "$$TORCH_KEPT"
	@$(BIN)/python -m pip check > /dev/null || { $(BIN)/python -m pip check; \
	  echo "mtsearch: error: $(LOCK) does not satisfy pyproject.toml: run make lock" >&2; exit 1; }
	touch $(STAMP)

# Resolves pyproject.toml (with [dev]) afresh in a throwaway venv, installed the way setup installs
# (torch first, with pip), checks that torch is the CPU build, and freezes it into the lock: every
# package but the project itself and uv (pinned above). torch is written without its local label
# (+cpu) so that a machine without the local wheel takes the same release from the index.
lock:
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; py=$$tmp/venv/bin/python; \
	echo "make lock: resolving pyproject.toml afresh in $$tmp/venv"; \
	$(PYTHON) -m venv $$tmp/venv; \
	$$py -m pip install --quiet --upgrade pip setuptools; \
	$$py -m pip install --quiet $(TORCH); \
	inst=$$($$py -c "$$INSTALL_CMD" $(INSTALLER) $(UV_VERSION)); \
	eval "$$inst --no-build-isolation -e '.[dev]'"; \
	$$py -c "$$TORCH_KEPT"; \
	$$py -c "import sys, torch; sys.exit(torch.version.cuda and 'mtsearch: error: torch ' + torch.__version__ + ' is a CUDA build')"; \
	if $$py -m pip freeze | grep -i '^nvidia-'; then echo "mtsearch: error: CUDA packages in the lock venv" >&2; exit 1; fi; \
	case "$$inst" in *bin/uv\ *) how="uv $(UV_VERSION)";; *) how="pip $$($$py -m pip --version | cut -d' ' -f2)";; esac; \
	{ echo "# $(LOCK): every package that \`make setup\` installs, at the version it installs (all but"; \
	  echo "# the project itself and uv, which the Makefile pins). Written by \`make lock\`; do not edit."; \
	  echo "# How: a fresh venv, pip install $(TORCH) (the CPU wheel on this machine's disk), then"; \
	  echo "# pyproject.toml's dependencies with [dev] resolved afresh by $$how, then pip freeze --all."; \
	  echo "# torch is written without its +cpu label so that other machines take the same release."; \
	  echo "# Made $$(date -u +%F) for:"; \
	  $$py -c "import platform, sys, torch; print('# python %d.%d' % sys.version_info[:2], '(' + platform.python_implementation(), platform.python_version() + '),', platform.system(), platform.machine(), '-'.join(platform.libc_ver()) + ', torch', torch.__version__)"; \
	  $$py -m pip freeze --all --exclude-editable | grep -v -i -E '^(#|mtsearch==|uv==)' | sed -E 's/^(torch==[^+]*)\+.*/\1/'; \
	} > $(LOCK).tmp; \
	mv $(LOCK).tmp $(LOCK); \
	echo "make lock: $$(grep -c -v '^#' $(LOCK)) packages in $(LOCK)"

# Prints the command that installs into the venv of the python running it: uv when argv[1] is uv,
# uv==argv[2] installs with that venv's pip, and every pip setting that chooses packages has a uv
# equivalent; pip otherwise. uv reads no pip configuration, so the indexes, find-links, cert and
# constraints that `pip config list` shows here are passed to it.
define INSTALL_CMD
import ast, os, shlex, subprocess, sys

py = sys.executable


def use_pip(why):
    print("installing with pip: " + why, file=sys.stderr)
    print(shlex.join([py, "-m", "pip", "install", "--quiet"]))
    sys.exit()


if sys.argv[1] != "uv":
    use_pip("INSTALLER=" + sys.argv[1])
listed = subprocess.run([py, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True)
# As in pip: an [install] setting overrides a [global] one, an environment variable both.
rank = {"global": 0, "install": 1, ":env:": 2}
items = []
for line in listed.stdout.splitlines():
    key, _, value = line.partition("=")
    section, _, name = key.rpartition(".")
    if section in rank:
        items.append((rank[section], name, ast.literal_eval(value)))
settings = {name: value for _, name, value in sorted(items)}
many = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraints",
    "trusted-host": "--allow-insecure-host",
}
# Settings that do not change which packages get installed.
harmless = {"disable-pip-version-check", "default-timeout", "timeout", "retries", "no-input", "progress-bar",
            "quiet", "verbose", "no-color", "cache-dir", "no-cache-dir", "root-user-action",
            "no-warn-script-location", "require-virtualenv"}
# pip takes the best version across all its indexes; uv, by default, the first index that has the name.
args = ["--index-strategy", "unsafe-best-match"]
for name, value in settings.items():
    if name in many:
        for item in value.split():
            args += [many[name], item]
    elif name == "cert":
        args += ["--cert", value]
    elif name not in harmless:
        use_pip(f"pip setting {name}={value!r} has no uv equivalent here")
uv = os.path.join(os.path.dirname(py), "uv")
got = subprocess.run([py, "-m", "pip", "install", "--quiet", "uv==" + sys.argv[2]], capture_output=True, text=True)
if got.returncode != 0 or not os.access(uv, os.X_OK):
    use_pip("uv " + sys.argv[2] + " could not be installed: " + (got.stderr.strip().splitlines() or ["?"])[-1])
print("installing with uv " + sys.argv[2] + " " + shlex.join(args), file=sys.stderr)
print(shlex.join([uv, "pip", "install", "--quiet", "--python", py] + args))
endef
export INSTALL_CMD

# torch must stay the build pip installed first (its INSTALLER record says pip): uv must never swap it.
define TORCH_KEPT
import sys
from importlib.metadata import distribution

if distribution("torch").read_text("INSTALLER").strip() != "pip":
    sys.exit("mtsearch: error: the lock install replaced torch; rm -rf .venv && make setup INSTALLER=pip")
endef
export TORCH_KEPT

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
	$(BIN)/mtsearch sweep $(SPACE) --profile $(PROFILE) --backend $(BACKEND) $(JOBS_FLAG) $(GPUS_FLAG) $(SWEEP_ARGS)

results: setup
	$(BIN)/mtsearch results $(SPACE)

# make test: everything but the end-to-end tests (marker e2e: sweeps across processes, Ray clusters,
# servers, Chromium, torch.compile), on TEST_WORKERS cores. make test-e2e: those, one at a time (on 2
# cores two of them at once were slower than in turn: each starts processes that want both cores).
# .ci/run runs both; make test-all is the two in a row.
test: setup data
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not e2e" --durations=15

test-e2e: setup data
	$(BIN)/python -m pytest -q -m e2e --durations=15

test-all: test test-e2e

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

# The store every run writes (mtsearch.tracking: <runs>/mlflow.db, artifacts in <runs>/mlartifacts);
# experiments created from the UI keep theirs there too, never in ./mlartifacts of the current folder.
mlflow: setup
	MLFLOW_DISABLE_TELEMETRY=$${MLFLOW_DISABLE_TELEMETRY:-true} $(BIN)/mlflow server --host 127.0.0.1 --port $(PORT) --backend-store-uri sqlite:///$(RUNS)/mlflow.db \
	  --artifacts-destination $(RUNS)/mlartifacts

# One sweep's Optuna study (each sweep keeps its own in <runs>/sweeps/<name>/study.db): its trials are
# its runs, one curve per (configuration, seed). SWEEP defaults to the name `make sweep` gives.
SWEEP ?= $(if $(filter cpu,$(PROFILE)),$(SPACE),$(SPACE)-$(PROFILE))
studies: setup
	@test -f "$(RUNS)/sweeps/$(SWEEP)/study.db" || { echo "mtsearch: error: no Optuna study at \
	$(RUNS)/sweeps/$(SWEEP)/study.db (run make sweep SPACE=$(SPACE) first, or pass SWEEP=<name>)" >&2; exit 1; }
	$(BIN)/optuna-dashboard sqlite:///$(RUNS)/sweeps/$(SWEEP)/study.db --host 127.0.0.1 --port $(STUDY_PORT)

clean-cache:
	rm -rf runs/cache
