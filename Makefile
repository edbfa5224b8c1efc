# Two commands on a fresh Debian machine: `make run` serves, `make test` tests.
# Both install what is missing first: system packages (PostgreSQL 15 + PostGIS 3, Redis), uv,
# the virtualenv and the locked Python dependencies.

SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
HOST ?= 127.0.0.1
PORT ?= 8000
ARGS ?=
TEST_WORKERS ?= 2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv

.PHONY: run demo test test-quick test-cluster fuzz lint fmt deps system-deps python-deps bench-deps \
	bench-search bench-search-ingest bench-ingest bench-dispatch bench-telephony bench-booking \
	bench-safety bench-console bench-ledger bench-board bench-scaleout chaos soak

run: deps
	$(UV) run --locked dispatch migrate
	exec $(UV) run --locked dispatch serve --host $(HOST) --port $(PORT) $(ARGS)

demo: ARGS += --demo
demo: run

# Two pytest-xdist workers (TEST_WORKERS=1: one process), each with its own private PostgreSQL
# and Redis; the heavy multi-process tests all go to one of them (`tests/processes.py`).
test: deps
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .
	$(UV) run --locked pytest $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup) \
	  --durations=20 $(PYTEST_ARGS)

# Everything but the multi-process and slow tests (about 2 minutes).
test-quick: deps
	$(UV) run --locked pytest -m "not slow" $(PYTEST_ARGS)

# The dispatch, live-index and notifications suites against a local 3-primary Redis Cluster the
# session starts itself (`DISPATCH_LOCAL_REDIS=cluster`'s launcher; the multi-process tests run
# two app processes on it). Set TEST_REDIS_URL (a seed node) with TEST_DATABASE_URL to use yours.
test-cluster: deps
	TEST_REDIS_CLUSTER=1 $(UV) run --locked pytest tests/dispatch tests/geo tests/notifications \
	  $(PYTEST_ARGS)

# The schemathesis run of `make test`, longer: 500 examples an operation, a random seed.
fuzz: deps
	SCHEMATHESIS_EXAMPLES=$${SCHEMATHESIS_EXAMPLES:-500} SCHEMATHESIS_SEED=$${SCHEMATHESIS_SEED:-$$RANDOM} \
	  $(UV) run --locked pytest tests/test_openapi.py -k schemathesis $(PYTEST_ARGS)

# Chaos (issue 17): 10,000 grab jobs, 50 racing workers, 4 app processes, Redis killed, emptied
# and flushed and PostgreSQL restarted under load; prints its figures (ARGS="--jobs 2000" ...).
chaos: deps
	$(UV) run --locked python -m bench.chaos $(ARGS)

# Soak (issue 17): 2,000 workers pinging every 4 s, a job a second, 20 consoles for 30 minutes;
# errors, p99 per endpoint per minute, RSS, descriptors, connections (ARGS="--minutes 5").
soak: deps
	$(UV) run --locked python -m bench.soak $(ARGS)

# Benchmarks (not part of `make test`): each prints a table and writes bench/results/.
bench-deps: deps
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }

bench-search: deps
	$(UV) run --locked python -m bench.search $(ARGS)

bench-search-ingest: deps
	$(UV) run --locked python -m bench.search_ingest $(ARGS)

bench-ingest: bench-deps
	$(UV) run --locked python -m bench.ingest $(ARGS)

bench-scaleout: bench-deps
	$(UV) run --locked python -m bench.scaleout $(ARGS)

bench-dispatch: deps
	$(UV) run --locked python -m bench.dispatch $(ARGS)

bench-telephony: deps
	$(UV) run --locked python -m bench.telephony $(ARGS)

bench-booking: deps
	$(UV) run --locked python -m bench.booking $(ARGS)

bench-safety: deps
	$(UV) run --locked python -m bench.safety $(ARGS)

bench-console: deps
	$(UV) run --locked python -m bench.console $(ARGS)

bench-ledger: deps
	$(UV) run --locked python -m bench.ledger $(ARGS)

bench-board: deps
	$(UV) run --locked python -m bench.board $(ARGS)

lint:
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .

fmt:
	$(UV) run --locked ruff check --fix .
	$(UV) run --locked ruff format .

deps: system-deps python-deps

system-deps:
	@missing=""; \
	[ -x /usr/lib/postgresql/15/bin/postgres ] || missing="$$missing postgresql-15"; \
	[ -f /usr/share/postgresql/15/extension/postgis.control ] || missing="$$missing postgresql-15-postgis-3"; \
	command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -d /usr/share/fonts/truetype/wqy ] || missing="$$missing fonts-wqy-zenhei"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

python-deps:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q uv \
	  || $(PYTHON) -m pip install -q --break-system-packages uv
	$(UV) sync --locked --quiet
