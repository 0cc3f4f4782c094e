# The README names two targets: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-peers install system-deps clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the browser tests (never a downloaded browser).
system-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "note: /usr/bin/chromium missing and not root; browser tests will be skipped"; fi; \
	fi

# One command: development settings, SQLite + embedded Redis unless DATABASE_URL / REDIS_URL are set;
# emulator, web, worker, beat. Ctrl-C stops all of it (the embedded Redis too).
run: install
	$(BIN)/python manage.py run_platform

# ruff everywhere; mypy on strategies/, risk/ and bots/engine/ (pyproject.toml [tool.mypy]; cache in var/)
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# Tests run against DATABASE_URL / REDIS_URL when set (CI: real Postgres and Redis), else SQLite + embedded Redis,
# in a shuffled order (modules and the tests inside them; the seed is printed: PYTEST_ARGS=--random-order-seed=N
# repeats an order, PYTEST_ARGS=--random-order-bucket=none keeps the file order), on TEST_WORKERS pytest-xdist
# processes that take the next test when idle (each with its own test database and Redis database: the
# Redis URL's database + the worker's number). TEST_WORKERS=0 runs them all in this one process, in exactly
# the seed's order.
TEST_WORKERS ?= 2
test: install system-deps lint
	$(BIN)/python -m pytest -q -p no:cacheprovider --random-order -n $(TEST_WORKERS) --dist worksteal \
		$(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

bench: install
	$(BIN)/python -m bench.run_all

# The backtester against Nautilus Trader (issue 17): Nautilus goes into its own venv, never the project's.
# nautilus-trader 1.231.0 needs Python 3.12-3.14: the first such interpreter found (PATH, then pyenv's
# versions) builds the venv; with none, $(PYTHON) and nautilus-trader 1.221.0 (its last release for 3.11).
PEER_VENV := var/bench-peers/venv
PEER_PYTHON ?= $(shell for p in python3.12 python3.13 $(wildcard $(HOME)/.pyenv/versions/3.1[234]*/bin/python3) $(PYTHON); do \
	$$p -c 'import sys; assert (3, 12) <= sys.version_info < (3, 15)' 2>/dev/null && echo $$p && break; done || true)
PEER_PYTHON := $(or $(PEER_PYTHON),$(PYTHON))
NAUTILUS_VERSION ?= $(shell $(PEER_PYTHON) -c 'import sys; print("1.231.0" if sys.version_info >= (3, 12) else "1.221.0")')
$(PEER_VENV)/.nautilus-$(NAUTILUS_VERSION):
	rm -rf $(PEER_VENV)
	$(PEER_PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet nautilus-trader==$(NAUTILUS_VERSION) numpy
	touch $@

bench-peers: install $(PEER_VENV)/.nautilus-$(NAUTILUS_VERSION)
	$(BIN)/python -m bench.bench_peers $(BENCH_PEERS_ARGS)

clean:
	rm -rf $(VENV) var
