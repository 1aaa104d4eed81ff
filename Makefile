# Every target bootstraps .venv (and node_modules: buf, the dashboard's Chart.js) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
STAMP := $(VENV)/.installed

.PHONY: run test gen lint check-gen bench bench-reads migrate strava-sim gateway clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(BUF): package.json
	npm install --no-audit --no-fund --silent
	touch $(BUF)

## run: start the server on the embedded default (SQLite, in-process Huey workers)
run: $(STAMP)
	$(PY) -m server

## test: the whole test suite (PostgreSQL and Redis on 127.0.0.1 are used when up; Chromium for the dashboard's)
test: $(STAMP) $(BUF)
	$(PY) -m pytest $(PYTEST_ARGS)

## gen: regenerate gen/ from protos/
gen: $(STAMP)
	$(PY) scripts/protos.py gen

## check-gen: fail when gen/ is stale
check-gen: gen
	git diff --exit-code --stat -- gen
	test -z "$$(git status --porcelain -- gen)"

## lint: ruff, mypy, buf lint, buf breaking (against the released v1 baseline, RELEASED_V1 in scripts/protos.py), gen freshness
lint: $(STAMP) $(BUF) check-gen
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) scripts/protos.py image build/stride.binpb
	$(BUF) lint build/stride.binpb --path stride/v1
	$(PY) scripts/protos.py image build/released.binpb --ref released-v1
	$(BUF) breaking build/stride.binpb --against build/released.binpb

## bench: throughput benchmarks (ratios against a bare baseline in the same run)
bench: $(STAMP)
	$(PY) -m bench

## bench-reads: only the reads benchmark (h2load; BENCH_QUICK=1 for a quick check; options: python -m bench.reads --help)
bench-reads: $(STAMP)
	$(PY) -m bench --only reads

## migrate: apply database migrations to STRIDE_DATABASE_URL
migrate: $(STAMP)
	$(PY) -m storage.migrate upgrade

## strava-sim: the Strava-compatible simulator on 127.0.0.1:8700 (more options: STRAVA_SIM_ARGS)
strava-sim: $(STAMP)
	$(PY) -m tests.strava_sim --port 8700 --seed 1 --athletes 3 --activities 300 $(STRAVA_SIM_ARGS)

## gateway: Envoy on 127.0.0.1:8080 in front of `make run` (REST/JSON, gRPC-Web, the dashboard at http://127.0.0.1:8080/; admin on 127.0.0.1:9901; other addresses: GATEWAY_ARGS)
GATEWAY_ARGS ?= --listen 127.0.0.1:8080 --upstream 127.0.0.1:50051 --cors-origin http://localhost:8080
# node_modules holds the dashboard's Chart.js, which Envoy serves.
gateway: $(STAMP) $(BUF)
	$(PY) -m gateway.render $(GATEWAY_ARGS) --out build/envoy.yaml
	$(VENV)/bin/envoy -c build/envoy.yaml --log-level warn --disable-hot-restart

## compose-gateway: gateway/envoy.compose.yaml, the gateway's configuration in compose.yml (CORS_ORIGIN: the site the dashboard or other pages are served from)
CORS_ORIGIN ?= http://localhost:8080
compose-gateway: $(STAMP) $(BUF)
	$(PY) -m gateway.render --listen 0.0.0.0:8080 --upstream server-1:50051 --upstream server-2:50051 \
		--cors-origin $(CORS_ORIGIN) --descriptor-path /etc/envoy/stride.binpb \
		--dashboard-path /etc/envoy/dashboard --out gateway/envoy.compose.yaml

clean:
	rm -rf $(VENV) node_modules build .mypy_cache .ruff_cache .pytest_cache
