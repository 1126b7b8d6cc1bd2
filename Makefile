# The front door. `make run` brings the platform up on this machine; `make test` runs every test.
# Each target says what it does; `make help` lists them.

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
PINS        := requirements/pins.txt
SERVICE_PKGS := $(patsubst %/pyproject.toml,%,$(filter-out services/runtime/pyproject.toml,$(wildcard services/*/pyproject.toml)))
PACKAGES    := contracts services/runtime $(SERVICE_PKGS) $(wildcard gateway)
EDITABLES   := $(foreach p,$(PACKAGES),-e $(if $(filter services/runtime,$(p)),'$(p)[nameko]',$(p)))
STAMP       := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install infra migrate run stop status ops-status token test test-unit test-integration test-e2e bench bench-scale lint fmt contracts up down clean

help:  ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(STAMP): $(PINS) requirements/dev.txt $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	@test -x $(BIN)/python || { echo "creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing pinned dependencies and the platform's packages into $(VENV)"
	@$(BIN)/pip install -q --upgrade 'pip<27'
	@$(BIN)/pip install -q -c $(PINS) -r requirements/dev.txt $(EDITABLES)
	@touch $@

install: $(STAMP)  ## create .venv and install everything from the pins

infra:  ## make sure local RabbitMQ (with management) and PostgreSQL answer
	@deploy/local/ensure-infra.sh

migrate: install infra  ## create the database, schemas and tables (crm-migrate)
	@$(BIN)/crm-migrate

run: install infra  ## start the platform under a supervisor that restarts crashed processes (CRM_REPLICAS=customer=2,...)
	@CRM_EXPORTER=$${CRM_EXPORTER:-on} $(BIN)/crm-platform start
	@echo
	@echo "Gateway: http://127.0.0.1:$${GATEWAY_PORT:-8000}   (OpenAPI: /openapi.json)   lag metrics: http://127.0.0.1:$${EXPORTER_PORT:-9400}/metrics"
	@echo "Token (crm:read crm:write, 12h):"
	@$(BIN)/python -m crm_gateway.auth
	@echo "Stop it with: make stop"

stop:  ## stop the supervisor and every process `make run` started
	@$(BIN)/crm-platform stop

status:  ## show each process: state, pid, readiness, port, restarts, last exit code
	@$(BIN)/crm-platform status

ops-status:  ## relay and consumer lag, dead letters and readiness of the running platform (crm-admin status)
	@$(BIN)/crm-admin status

token: install  ## print a development JWT (secret from CRM_JWT_SECRET)
	@$(BIN)/python -m crm_gateway.auth

test: install infra  ## every test: unit, integration, contract, end-to-end (not the quarantined ones)
	@$(BIN)/pytest -q -m "not quarantine"

test-unit: install  ## unit tests only (no broker; PostgreSQL for the parametrised store suites)
	@$(BIN)/pytest -q -m "not integration and not e2e and not chaos"

test-integration: install infra  ## integration tests against real RabbitMQ and PostgreSQL
	@$(BIN)/pytest -q -m integration

test-e2e: install infra  ## end-to-end tests: real processes, driven over HTTP
	@$(BIN)/pytest -q -m "e2e or chaos"

bench: install infra  ## benchmark: raw baselines and the platform, as ratios (writes bench/results/)
	@$(BIN)/python -m bench

bench-scale: install infra  ## 360 read and search latency with 10k, then 1M events in the stores (long)
	@$(BIN)/python -m bench.reads

lint:  ## ruff and mypy
	@$(BIN)/ruff check .
	@$(BIN)/mypy contracts/crm_contracts services/runtime/crm_runtime gateway/crm_gateway

fmt:  ## format the code with ruff
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

contracts: install  ## write the JSON Schemas and the AsyncAPI document of every published event (and record new samples)
	@$(BIN)/python -m crm_contracts.export

up:  ## docker compose up (where a Docker engine runs)
	docker compose up --build -d

down:  ## docker compose down
	docker compose down

clean:  ## remove the virtualenv, run/ logs and caches
	rm -rf $(VENV) run .pytest_cache .mypy_cache .ruff_cache .hypothesis
