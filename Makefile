# Two commands do all set-up on a fresh machine: `make run` and `make test`.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
BENCH_STAMP := $(VENV)/.bench-$(shell cat requirements.txt benchmarks/requirements.txt | sha1sum | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000
export DEBIAN_FRONTEND := noninteractive

.PHONY: install system-deps run cluster test test-sqlite test-postgres lint format clean bench

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests drive for real: Chromium (browser tests),
# redis-server and PostgreSQL (scale-out tests). Installed only when missing.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_admin
	@echo "Serving on http://$(HOST):$(PORT)/executions/ (Ctrl-C stops)"
	# 4 MiB: executions.flow.SERVER_MESSAGE_LIMIT (docs/install.md)
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) \
		--websocket-max-message-size=4194304 --websocket-max-frame-size=4194304 \
		peace_site.asgi:application

# Distributed mode on one machine: redis-server, a Celery worker, daphne, on
# DATABASE_URL (SQLite by default; POSTGRES=1: a throwaway PostgreSQL).
cluster: install system-deps
	$(PY) $(if $(POSTGRES),scripts/with_postgres.py $(PY)) scripts/cluster.py $(CLUSTER_ARGS)

# Every test on SQLite, then again on a throwaway PostgreSQL cluster (the
# browser tests exercise the pages, not the database, so they run once).
test: install system-deps lint test-sqlite test-postgres

# Two workers, a file each at a time: most tests wait on real processes
# (daphne, Chromium, Redis, workers), so two run in the time of one.
PYTEST := $(VENV)/bin/pytest -n 2 --dist loadfile

test-sqlite: install
	$(PYTEST)

test-postgres: install
	$(PY) scripts/with_postgres.py $(PYTEST) --ignore=tests/e2e

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

$(BENCH_STAMP): requirements.txt benchmarks/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	rm -f $(VENV)/.bench-*
	touch $(BENCH_STAMP)

# Benchmarks against the floors and against Celery and RQ (docs/benchmarks.md).
# Starts redis-server, daphne, workers, a Celery and an RQ worker on 127.0.0.1
# and stops them. 10-20 minutes, then up to 5 for a py-spy profile of each
# target missed (BENCH_ARGS=--no-profiles skips them); `make bench
# BENCH_ARGS=--quick` for a smoke run of about 2 (its report goes to
# var/benchmarks/).
bench: $(BENCH_STAMP)
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "Installing Debian packages: redis-server"; \
		apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
	BENCH_COMMAND="make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" $(PY) -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test_db.sqlite3*
