# One-command workflows. `make ablation` runs the study; `make test` runs every test (as CI does).
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup chromium data verify ablation test lint format lab clean-runs

# uv installs several times faster than pip (README); it falls back to pip (.ci/install-venv says why).
$(VENV)/.done: pyproject.toml constraints-cpu.txt .ci/install-venv
	python3 .ci/install-venv $(VENV)
	touch $@

# Also installs nbstripout as this clone's git filter: notebook outputs are stripped when a notebook is added.
setup: $(VENV)/.done
	@if git rev-parse --git-dir >/dev/null 2>&1; then $(VENV)/bin/nbstripout --install; fi

# Generated data is committed; regenerate only if the check fails (for example after editing a generator).
data: setup
	$(PY) -m arclib data check || $(PY) -m arclib data generate

verify: setup
	$(PY) -m arclib tasks verify

ablation: verify data
	$(PY) -m arclib ablation --profile $(PROFILE)

# The browser test needs chromium: installed here when missing and possible, else one line says what to do.
chromium:
	.ci/ensure-chromium

# Two workers, each taking whole files (a notebook's cells share one kernel) on one thread each.
TEST_WORKERS ?= 2
test: setup chromium
	OMP_NUM_THREADS=1 ARCLIB_SMOKE=1 $(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile tests notebooks \
		--nbval-lax --nbval-current-env --durations=15

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

lab: setup
	$(VENV)/bin/jupyter lab notebooks
