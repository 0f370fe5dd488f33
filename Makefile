# Two commands for a fresh machine with Python 3.11 and pip: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

# Everything the demo writes (ledger, Airflow home) goes here; `make clean` removes it.
DEMO_HOME := $(CURDIR)/var/demo

.PHONY: demo test clean chromium redis-server lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# First, pip and setuptools at their pinned versions: the venv module seeds whatever the system's Python
# bundles (pip 23.2 and setuptools 65.5 on Python 3.11, both with published advisories).
$(VENV)/.tools: $(BIN)/python constraints.txt
	$(PIP) pip setuptools
	touch $@

# The project itself is built with the venv's pinned setuptools (no isolated build environment, which
# would fetch the newest setuptools instead).
$(VENV)/.runtime: $(VENV)/.tools requirements.txt constraints.txt pyproject.toml
	$(PIP) -r requirements.txt
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

demo: $(VENV)/.dev
	RETENTION_HOME=$(DEMO_HOME) $(BIN)/python -m retention.demo

test: $(VENV)/.dev chromium redis-server lint
	$(BIN)/python -m pytest

# ruff (pyflakes, bugbear, import order, pyupgrade) and mypy (strict, every module), configured in
# pyproject.toml.
lint: $(VENV)/.dev
	$(BIN)/ruff check plugins dags tests bench
	$(BIN)/mypy

# The operator views are tested in Debian's chromium (a test tool's own browser download needs the open
# internet). Installed with apt when missing; RETENTION_CHROMIUM=/path/to/chromium uses another binary.
chromium:
	@if [ -z "$$RETENTION_CHROMIUM" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	fi

# The Redis store kind is tested against Debian's redis-server, which the tests start on a free loopback port
# with no persistence. Installed with apt when missing.
redis-server:
	@if ! command -v redis-server >/dev/null; then \
	  echo "installing Debian's redis-server for the Redis store tests"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
	fi

# The operator page's screenshots under docs/images (light, dark, phone), taken in the browser tests' Chromium
# over the test stack; the file is not a test module, so `make test` leaves it out.
.PHONY: screenshots
screenshots: $(VENV)/.dev chromium
	$(BIN)/python -m pytest tests/browser/screenshots.py -q -p no:cacheprovider

clean:
	rm -rf var .pytest_cache .hypothesis

# Benchmarks against s5cmd, `aws s3 rm`, plain DELETE statements and a per-day COUNT for the forecast
# (bench/README.md); ~30-40 minutes here.
# `make bench BENCH_ARGS=--quick` for a smoke run of about a minute.
.PHONY: bench
bench: $(VENV)/.dev
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/subjects.py $(filter --quick,$(BENCH_ARGS))
