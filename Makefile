# Two commands: `make demo` serves the example app, `make test` runs every check.
# Both set up their own virtual environment in .venv first, and the system
# packages they need (see "System packages" below).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-oldest lint typecheck pytest bench loadtest chaos soak overload instances \
	fuzz clean \
	system-packages system-libmagic

# --- System packages ----------------------------------------------------------
# What each needs besides Python packages:
#   libmagic      upload validation (the extension, the demo, the tests, the harnesses)
#   chromium      headless Chromium and its driver (the dashboard test)
#   promtool      from Prometheus (the metrics tests)
#   mariadb       mariadbd and mariadb-install-db (the MySQL/MariaDB deadline tests)
# `$(call system-packages,NAMES)` checks each of NAMES. As root with apt-get, the
# missing ones are installed (one `apt-get update`, then `apt-get install -y`);
# anywhere else it stops with the command that installs them.
define system-packages
@deb=""; dnf=""; brew=""; cask=""; \
for need in $(1); do \
  case $$need in \
    libmagic) \
      $(PYTHON) -c "import ctypes.util, sys; sys.exit(ctypes.util.find_library('magic') is None)" \
        || { deb="$$deb libmagic1"; dnf="$$dnf file-libs"; brew="$$brew libmagic"; } ;; \
    chromium) \
      command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
        || { deb="$$deb chromium"; dnf="$$dnf chromium"; cask="$$cask chromium"; }; \
      command -v chromedriver >/dev/null \
        || { deb="$$deb chromium-driver"; dnf="$$dnf chromedriver"; cask="$$cask chromedriver"; } ;; \
    promtool) \
      command -v promtool >/dev/null \
        || { deb="$$deb prometheus"; dnf="$$dnf golang-github-prometheus"; brew="$$brew prometheus"; } ;; \
    mariadb) \
      { command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; } \
        && command -v mariadb-install-db >/dev/null \
        || { deb="$$deb mariadb-server"; dnf="$$dnf mariadb-server"; brew="$$brew mariadb"; } ;; \
  esac; \
done; \
if [ -n "$$deb" ]; then \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
    echo "Installing the missing system packages:$$deb"; \
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$deb || exit 1; \
  else \
    echo "System packages are missing. Install them first:"; \
    echo "  Debian/Ubuntu: sudo apt-get install$$deb"; \
    echo "  Fedora/RHEL:   sudo dnf install$$dnf"; \
    mac="$${brew:+brew install$$brew}"; \
    [ -z "$$cask" ] || mac="$${mac:+$$mac && }brew install --cask$$cask"; \
    echo "  macOS:         $$mac"; \
    exit 1; \
  fi; \
fi
endef

# Everything `make test` needs.
system-packages:
	$(call system-packages,libmagic chromium promtool mariadb)

# All that the extension itself needs: the demo and the harnesses.
system-libmagic:
	$(call system-packages,libmagic)

# --- Python packages ----------------------------------------------------------

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check flask_resilience tests example_app bench harness
	$(BIN)/ruff format --check flask_resilience tests example_app bench harness

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite in PYTEST_PROCESSES processes (pytest-xdist; 0 runs it in this one), each
# with throwaway servers of its own; the harnesses' smoke runs all in one of them.
PYTEST_PROCESSES ?= 2
PYTEST_OPTIONS = --numprocesses $(PYTEST_PROCESSES) --dist loadgroup

pytest: $(STAMP) | system-packages
	$(BIN)/pytest $(PYTEST_OPTIONS) --cov --cov-branch --cov-report=term-missing --cov-fail-under=90

test: system-packages lint typecheck pytest

# The suite again in .venv-oldest, with every direct dependency (the dev extra's
# included) at the lowest version pyproject.toml allows: uv's lowest-direct
# resolution. Packages that those depend on get their newest compatible version.
OLDEST_VENV := .venv-oldest
OLDEST_STAMP := $(OLDEST_VENV)/.installed-stamp
OLDEST_PYTHON ?= $(PYTHON)

$(BIN)/uv: $(STAMP)
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	@touch $@

$(OLDEST_STAMP): pyproject.toml | $(BIN)/uv
	rm -rf $(OLDEST_VENV)
	$(BIN)/uv venv --quiet --python $(OLDEST_PYTHON) $(OLDEST_VENV)
	$(BIN)/uv pip install --quiet --python $(OLDEST_VENV)/bin/python \
	  --resolution lowest-direct -e '.[dev]'
	@touch $(OLDEST_STAMP)

test-oldest: $(OLDEST_STAMP) | system-packages
	$(BIN)/uv pip list --python $(OLDEST_VENV)/bin/python
	$(OLDEST_VENV)/bin/pytest $(PYTEST_OPTIONS)

bench: $(STAMP) | system-libmagic
	$(BIN)/python -m bench

# The reliability harnesses: each starts its own PostgreSQL, Redis and gunicorn on
# loopback, prints a table and writes it under docs/. `make soak SOAK_MINUTES=30`.
# The load test and the chaos run serve the app with each of WORKER_CLASSES in turn:
# `make chaos WORKER_CLASSES=gthread THREADS=8`.
SOAK_MINUTES ?= 10
WORKER_CLASSES ?= sync gthread
THREADS ?= 4
WORKER_OPTIONS = $(foreach class,$(WORKER_CLASSES),--worker-class $(class)) --threads $(THREADS)

loadtest: $(STAMP) | system-libmagic
	$(BIN)/python -m harness.loadtest $(WORKER_OPTIONS)

chaos: $(STAMP) | system-libmagic
	$(BIN)/python -m harness.chaos $(WORKER_OPTIONS)

instances: $(STAMP) | system-libmagic
	$(BIN)/python -m harness.instances

soak: $(STAMP) | system-libmagic
	$(BIN)/python -m harness.soak --minutes $(SOAK_MINUTES)

# One small app at three times its capacity, plain and with the extension. It uses the
# PostgreSQL and Redis already running (OVERLOAD_DATABASE_URL, OVERLOAD_REDIS_URL; by
# default the `test` database on 127.0.0.1:5432 and Redis on 127.0.0.1:6379).
overload: $(STAMP) | system-libmagic
	$(BIN)/python -m harness.overload

# Every route of the example app with many more hostile requests than `make test` sends.
fuzz: $(STAMP) | system-libmagic
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/example_app/test_fuzz.py -q

demo: $(STAMP) | system-libmagic
	EXAMPLE_DEMO=1 $(BIN)/flask --app example_app init-db
	@echo
	@echo "Serving the example app on http://127.0.0.1:5000 (Ctrl-C to stop)."
	@echo "  Demo settings: plain HTTP and per-worker rate limits; production sets SESSION_COOKIE_SECURE=True and REDIS_URL."
	@echo "  Log in at http://127.0.0.1:5000/login as alice@acme.test / alice-password"
	@echo "  curl -s http://127.0.0.1:5000/api/documents -u alice@acme.test:alice-password"
	@echo
	EXAMPLE_DEMO=1 $(BIN)/gunicorn --config example_app/gunicorn.conf.py 'example_app:create_app()'

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .coverage .pytest_cache .mypy_cache .ruff_cache
