# The README names two targets: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench install system-deps clean

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

lint: install
	$(BIN)/ruff check .

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

clean:
	rm -rf $(VENV) var
