# Two commands: `make demo` serves the example app, `make test` runs every check.
# Both set up their own virtual environment in .venv first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck pytest bench loadtest chaos soak fuzz clean check-libmagic

check-libmagic:
	@$(PYTHON) -c "import ctypes.util, sys; sys.exit(ctypes.util.find_library('magic') is None)" || { \
	  echo "libmagic is missing. Install it first:"; \
	  echo "  Debian/Ubuntu: sudo apt-get install libmagic1"; \
	  echo "  Fedora/RHEL:   sudo dnf install file-libs"; \
	  echo "  macOS:         brew install libmagic"; \
	  exit 1; }

$(STAMP): pyproject.toml | check-libmagic
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check flask_resilience tests example_app bench harness
	$(BIN)/ruff format --check flask_resilience tests example_app bench harness

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest --cov --cov-branch --cov-report=term-missing --cov-fail-under=90

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m bench

# The reliability harnesses: each starts its own PostgreSQL, Redis and gunicorn on
# loopback, prints a table and writes it under docs/. `make soak SOAK_MINUTES=30`.
SOAK_MINUTES ?= 10

loadtest: $(STAMP)
	$(BIN)/python -m harness.loadtest

chaos: $(STAMP)
	$(BIN)/python -m harness.chaos

soak: $(STAMP)
	$(BIN)/python -m harness.soak --minutes $(SOAK_MINUTES)

# Every route of the example app with many more hostile requests than `make test` sends.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/example_app/test_fuzz.py -q

demo: $(STAMP)
	EXAMPLE_DEMO=1 $(BIN)/flask --app example_app init-db
	@echo
	@echo "Serving the example app on http://127.0.0.1:5000 (Ctrl-C to stop)."
	@echo "  Demo settings: plain HTTP and per-worker rate limits; production sets SESSION_COOKIE_SECURE=True and REDIS_URL."
	@echo "  Log in at http://127.0.0.1:5000/login as alice@acme.test / alice-password"
	@echo "  curl -s http://127.0.0.1:5000/api/documents -u alice@acme.test:alice-password"
	@echo
	EXAMPLE_DEMO=1 $(BIN)/gunicorn --config example_app/gunicorn.conf.py 'example_app:create_app()'

clean:
	rm -rf $(VENV) .coverage .pytest_cache .mypy_cache .ruff_cache
