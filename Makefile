# feed-monitor: `make run` starts the daemon, `make test` runs lint, types and tests.
# Both create .venv and install the pinned dependencies first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config/monitor.yaml

.PHONY: run once check test lint typecheck bench lock clean

$(BIN)/.runtime: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(BIN)/.dev: $(BIN)/.runtime requirements-dev.lock
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	touch $@

run: $(BIN)/.runtime
	$(BIN)/feed-monitor run --config $(CONFIG)

once: $(BIN)/.runtime
	$(BIN)/feed-monitor -v once --config $(CONFIG)

check: $(BIN)/.runtime
	$(BIN)/feed-monitor check --config $(CONFIG)

lint: $(BIN)/.dev
	$(BIN)/ruff check monitor tests benchmarks
	$(BIN)/ruff format --check monitor tests benchmarks
	$(BIN)/mypy

# The tests run on every core (pytest-xdist); tests marked xdist_group share one worker.
test: lint
	$(BIN)/pytest -q -n auto --dist loadgroup

# All benchmarks (about half an hour), or some: `make bench BENCH="poll capacity"`. The poll
# and capacity benchmarks make .venv/reader (reader 3.27 on Python 3.12, pinned in
# benchmarks/reader.lock) on first use. Benchmarks are not tests: `make test` runs none.
bench: $(BIN)/.dev
	$(BIN)/python benchmarks/run.py $(BENCH)

# Re-pin after editing dependencies in pyproject.toml (needs uv: pip install uv).
lock:
	uv pip compile pyproject.toml -o requirements.lock --python-version 3.11 -q
	uv pip compile pyproject.toml --extra dev -o requirements-dev.lock --python-version 3.11 -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
