# One-command workflows. `make ablation` runs the study; `make test` runs every test (as CI does).
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup data verify ablation test lint format lab clean-runs

$(VENV)/.done: pyproject.toml constraints-cpu.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints-cpu.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.done

# Generated data is committed; regenerate only if the check fails (for example after editing a generator).
data: setup
	$(PY) -m arclib data check || $(PY) -m arclib data generate

verify: setup
	$(PY) -m arclib tasks verify

ablation: verify data
	$(PY) -m arclib ablation --profile $(PROFILE)

test: setup
	ARCLIB_SMOKE=1 $(VENV)/bin/pytest tests notebooks --nbval-lax --nbval-current-env

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

lab: setup
	$(VENV)/bin/jupyter lab notebooks
