# Every target creates the virtual environment first if it is missing, so on a fresh
# machine `make demo` and `make test` are the only commands needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv deps demo test lint fmt bench bundle clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,fast]'
	touch $@

venv: $(STAMP)

deps: $(STAMP)  ## tools the tests drive: systemd-analyze, promtool/prometheus, rsyslog, hadolint
	bash scripts/install-test-deps.sh $(VENV)

demo: $(STAMP)  ## run the checks against the built-in loopback simulators
	$(BIN)/probe demo

test: deps  ## the built wheel installed as users install it, then the whole test suite
	bash scripts/start-services.sh
	bash scripts/test-installed.sh
	$(BIN)/python -m pytest

bundle: $(STAMP)  ## offline bundle for the ops host: dist/hotline-probe-<version>-<platform>.tar.gz
	bash scripts/bundle.sh dist

lint: deps  ## ruff, mypy --strict, import-linter and shellcheck, as CI runs them
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports
	shellcheck scripts/*.sh deploy/install.sh

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## speed targets; prints figures and ratios against a baseline
	bash scripts/install-test-deps.sh --bench $(VENV)
	$(BIN)/python bench/bench_probe_all.py
	$(BIN)/python bench/bench_daemon.py
	$(BIN)/python bench/bench_events.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
