# agentwire — the two commands a newcomer needs are `make demo` and `make test`.
# Each installs what it needs: uv (bootstrapped with pip if missing), then every Python dependency
# pinned in uv.lock; the CDK CLI (pinned in infra/package-lock.json) only for synth/deploy.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
# uv from PATH if there is one; else the project's own copy in .bootstrap/, installed by pip with --target:
# that never touches the system Python (Debian's refuses pip installs, PEP 668) and needs no venv module.
BOOTSTRAP_DIR := $(CURDIR)/.bootstrap
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(BOOTSTRAP_DIR)/bin/uv
endif
RUN := $(UV) run --frozen
PYTEST_ARGS ?=

.PHONY: help bootstrap install demo test lint unit bench up schemas synth deploy deploy-all clean

help:
	@echo "make demo        start the local stack, run a conversation, print it, stop"
	@echo "make test        lint, type-check and run the whole test suite"
	@echo "make bench       benchmark concurrent runs on the scripted provider (writes bench/results.json)"
	@echo "make up          run the local stack in the foreground (Ctrl-C stops it)"
	@echo "make synth       synthesize the CDK assembly (no AWS credentials needed)"
	@echo "make deploy SERVICE=llm | make deploy-all   deploy with the CDK CLI"

bootstrap:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check \
		--target "$(BOOTSTRAP_DIR)" "uv==$(UV_VERSION)"

install: bootstrap
	@$(UV) sync --frozen --all-packages --quiet

demo: install
	$(RUN) agentwire demo

up: install
	$(RUN) agentwire up

bench: install
	$(RUN) agentwire bench

schemas: install
	$(RUN) python -m agentwire_contracts.schemagen

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) python -m agentwire_contracts.schemagen --check
	$(RUN) mypy contracts/agentwire_contracts
	$(RUN) mypy services/gateway/agentwire_gateway
	$(RUN) mypy services/orchestrator/agentwire_orchestrator
	$(RUN) mypy services/llm/agentwire_llm
	$(RUN) mypy services/tools/agentwire_tools
	$(RUN) mypy services/memory/agentwire_memory
	$(RUN) mypy infra/agentwire_infra

test: lint
	$(RUN) pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

unit: install
	$(RUN) pytest -m "unit or contract" $(PYTEST_ARGS)

infra/node_modules: infra/package.json infra/package-lock.json
	npm ci --prefix infra --no-audit --no-fund
	@touch infra/node_modules

CDK_APP := $(UV) run --frozen python -m agentwire_infra.cdk.app

# Builds the ARM64 Lambda bundles with uv (no Docker), synthesizes every stack into cdk.out/.
synth: install
	$(RUN) python -m agentwire_infra.cdk.synth --out cdk.out

deploy: install infra/node_modules
	@test -n "$(SERVICE)" || (echo "usage: make deploy SERVICE=bus|memory|tools|llm|orchestrator|gateway" && exit 2)
	cd infra && npx cdk deploy agentwire-$(SERVICE) --exclusively --app "$(CDK_APP)"

deploy-all: install infra/node_modules
	cd infra && npx cdk deploy --all --require-approval never --app "$(CDK_APP)"

clean:
	rm -rf .agentwire cdk.out build .mypy_cache .ruff_cache .bootstrap
