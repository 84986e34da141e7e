# Two commands do everything on a fresh clone:  make run  (set-up + dvc repro)  and  make test  (set-up + pytest).
PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
# The CPU build of torch 2.13.0 lies on this kind of machine's disk; any other torch spec pulls a multi-GB CUDA build.
TORCH     ?= torch==2.13.0
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
# dvc.yaml's commands say `python -m stages...`: that must be this environment's python, not the system's.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup run test bench clean

# The stamp depends on pyproject.toml: a second call reuses the environment, a dependency change reinstalls.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed
	@test -d .git || (echo "error: not a git checkout; dvc needs one: git init && git add -A && git commit" >&2; exit 2)
	@test -f .dvc/config || (echo "error: .dvc/config missing; run: $(BIN)/dvc init" >&2; exit 2)

run: setup
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest -q --timeout=1200 $(PYTEST_ARGS)

bench: setup
	$(BIN)/python scripts/bench.py

clean:
	rm -rf data models metrics plots reports/*/ mlflow.db .dvc/tmp
