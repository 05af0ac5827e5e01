# Edge SBC: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.installed
# Debian packages the test tiers use: SIPp as the SIP peer, tshark for captures, clang/bpftool for XDP,
# net-snmp clients and snmptrapd as the SNMP manager, Chromium and its driver for the web UI test,
# dbus-daemon for a private bus the hw/ D-Bus tests run against.
APT_PACKAGES := sip-tester tshark clang llvm bpftool libbpf-dev iproute2 ethtool iptables snmp snmpd snmptrapd \
	libnetfilter-queue-dev chromium chromium-driver dbus
BPF_OBJ := dataplane/bpf/relay.o
BPF_SRC := $(wildcard dataplane/bpf/*.c dataplane/bpf/*.h dataplane/include/*.h)
CONFIG ?=
PYTEST_ARGS ?=

.PHONY: run test test-unit test-integration bench lint system-deps venv bpf clean help

help:
	@echo "make run    - install what is needed and run the SBC on the embedded default config"
	@echo "make test   - install what is needed and run every test tier"
	@echo "make bench  - benchmarks: calls per second, relay packets per second"

$(VENV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV_STAMP)

# Installs the Debian packages only when one is missing; needs root (or sudo) the first time.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BPF_OBJ): $(BPF_SRC)
	@if true; then \
		clang -target bpf -g -O2 -Wall -I dataplane/include -I /usr/include/$$(uname -m)-linux-gnu \
			-c dataplane/bpf/relay.c -o $@; \
	fi

bpf: $(BPF_OBJ)

run: $(VENV_STAMP)
	$(BIN)/sbc run $(if $(CONFIG),--config $(CONFIG))

lint: $(VENV_STAMP)
	$(BIN)/ruff check sbc dataplane mgmt hw tests
	$(BIN)/mypy

test: system-deps $(VENV_STAMP) bpf
	$(BIN)/pytest -q -ra $(PYTEST_ARGS)

test-unit: $(VENV_STAMP)
	$(BIN)/pytest -q tests/unit

bench: system-deps $(VENV_STAMP) bpf
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) $(BPF_OBJ) .pytest_cache .mypy_cache .ruff_cache
