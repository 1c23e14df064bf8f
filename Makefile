# Callgate: two public targets.
#   make run   set everything up and start the daemon on config/callgate.toml
#   make test  set everything up and run the whole test suite
# Each setup step is idempotent and skipped when already done.

SHELL := /bin/bash
# The distribution's python3 (the one apt's python3-venv and python3-dev serve), built with
# PGO and LTO. A self-built 3.11 without --enable-optimizations (pyenv's default) cost
# the daemon and engine a third more CPU per call (docs/BENCHMARKS.md, December round,
# part 6). Expanded on use, after apt has run. A .venv made by another interpreter is
# kept: `make clean` first to switch.
PYTHON ?= $(or $(wildcard /usr/bin/python3),python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := $(VENV)/.stamps

APT_PACKAGES := build-essential pkg-config swig xz-utils ca-certificates \
	debian-archive-keyring python3-dev python3-venv \
	libsrtp2-dev libspeex-dev libspeexdsp-dev libgsm1-dev libopus-dev libssl-dev uuid-dev \
	sip-tester systemd postgresql dnsmasq-base

.PHONY: run test setup lint typecheck unit docs clean

run: setup
	mkdir -p var
	$(VENV)/bin/callgate run --config config/callgate.toml

test: setup lint typecheck
	$(VENV)/bin/pytest -q

setup: $(STAMPS)/apt $(STAMPS)/python $(STAMPS)/pjsua2 $(STAMPS)/npm

lint: $(STAMPS)/python
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMPS)/python
	$(VENV)/bin/mypy gateway media smpp recording

docs: $(STAMPS)/python
	$(VENV)/bin/callgate config-docs --output docs/configuration.md

# System packages: installed only when one is missing (needs root or sudo).
$(STAMPS)/apt: Makefile
	@missing=$$(dpkg-query -W -f='$${Package} $${Status}\n' $(APT_PACKAGES) 2>/dev/null \
		| awk '$$NF != "installed" {print $$1}'; \
		for p in $(APT_PACKAGES); do dpkg-query -W $$p >/dev/null 2>&1 || echo $$p; done); \
	if ! command -v npm >/dev/null; then missing="$$missing nodejs npm"; fi; \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -n "$${missing// /}" ]; then \
		echo "installing system packages: $$missing"; \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@mkdir -p $(STAMPS) && touch $@

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMPS)/python: pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@mkdir -p $(STAMPS) && touch $@

# The PJSIP build is cached by source version + config hash under ~/.cache/callgate.
$(STAMPS)/pjsua2: media/pjsip/build.sh media/pjsip/config_site.h $(STAMPS)/apt $(STAMPS)/python
	media/pjsip/build.sh $(PY)
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/npm: tests/smsc/package-lock.json $(STAMPS)/apt
	cd tests/smsc && npm ci --no-audit --no-fund --loglevel=error
	@mkdir -p $(STAMPS) && touch $@

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
