# Edge SBC: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.installed
# Debian packages the test tiers use: SIPp as the SIP peer, tshark for captures, clang/bpftool for XDP,
# net-snmp clients and snmptrapd as the SNMP manager, Chromium and its driver for the web UI test,
# dbus-daemon for a private bus the hw/ D-Bus tests run against, nftables for the host firewall's tests;
# Kamailio (the cloud PBX), baresip (the phones) and sox (their test tones) for the interop tier.
APT_PACKAGES := sip-tester tshark clang llvm bpftool libbpf-dev iproute2 ethtool iptables snmp snmpd snmptrapd \
	libnetfilter-queue-dev chromium chromium-driver dbus dnsmasq-base nftables kamailio baresip-core sox
BPF_OBJ := dataplane/bpf/relay.o
BPF_SRC := $(wildcard dataplane/bpf/*.c dataplane/bpf/*.h dataplane/include/*.h)
CONFIG ?=
PYTEST_ARGS ?=
ARCH ?= x86-64

.PHONY: run test test-unit test-integration test-interop bench lint system-deps image-deps binfmt-arm64 image vm test-arm64 venv bpf \
	clean help

help:
	@echo "make run    - install what is needed and run the SBC on the embedded default config"
	@echo "make test   - install what is needed and run every test tier"
	@echo "make bench  - benchmarks: calls per second, relay packets per second"
	@echo "make image  - the firmware image (ARCH=arm64 for ARM64); make vm boots it; make test-arm64"

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

# The image tools. mkosi 24 and systemd >= 254 come from bookworm-backports (bookworm's mkosi 14 is
# too old); only that suite is added: trixie would upgrade the host's libc. Idempotent: nothing is
# done when every tool is there.
BACKPORTS_LIST := /etc/apt/sources.list.d/bookworm-backports.sources
IMAGE_BACKPORTS := mkosi systemd systemd-container systemd-boot systemd-boot-efi
IMAGE_PACKAGES := qemu-system-x86 qemu-system-arm qemu-utils qemu-user-static binfmt-support ovmf qemu-efi-aarch64 \
	dosfstools mtools e2fsprogs erofs-utils squashfs-tools cpio zstd kmod debian-archive-keyring \
	clang libbpf-dev python3-venv python3-pefile reprepro snmp chromium iproute2

image-deps: system-deps
	@SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	if [ ! -f $(BACKPORTS_LIST) ]; then \
		printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			| $$SUDO tee $(BACKPORTS_LIST) >/dev/null; \
		$$SUDO apt-get update -qq; \
	fi; \
	missing=""; for p in $(IMAGE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi; \
	if ! mkosi --version 2>/dev/null | grep -q '^mkosi 2[4-9]' || ! dpkg -s systemd-boot-efi >/dev/null 2>&1 \
		|| ! dpkg -s systemd-container >/dev/null 2>&1 || dpkg --compare-versions "$$(dpkg-query -W -f='$${Version}' systemd)" lt 254; then \
		echo "installing from bookworm-backports: $(IMAGE_BACKPORTS)"; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports $(IMAGE_BACKPORTS); \
	fi

# ARM64 images are built by running the target's binaries through qemu-user-static: binfmt_misc must be
# mounted and qemu-aarch64 registered (with the F flag Debian sets, so it works inside mkosi's sandbox).
binfmt-arm64: image-deps
	@if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		[ -e /proc/sys/fs/binfmt_misc/register ] || $$SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; \
		$$SUDO update-binfmts --enable qemu-aarch64; \
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
	$(BIN)/ruff check sbc dataplane mgmt hw tests image
	$(BIN)/mypy

test: system-deps image-deps $(VENV_STAMP) bpf
	$(BIN)/pytest -q -ra $(PYTEST_ARGS)

# The firmware image (build/image.raw and the signed update bundle); prints its size and build time.
image: image-deps $(VENV_STAMP) $(if $(filter arm64 aarch64,$(ARCH)),binfmt-arm64)
	$(BIN)/python image/build.py --arch $(ARCH)

# Boot the built image in QEMU (TCG) with its serial console on this terminal.
vm: image-deps $(VENV_STAMP) $(if $(filter arm64 aarch64,$(ARCH)),binfmt-arm64)
	$(BIN)/python image/build.py --arch $(ARCH) --if-needed
	$(BIN)/python -m image.qemu --arch $(ARCH)

# The image tests on the ARM64 image (AAVMF, qemu-system-aarch64; the build runs through binfmt).
test-arm64: system-deps image-deps binfmt-arm64 $(VENV_STAMP)
	SBC_IMAGE_ARCH=arm64 $(BIN)/pytest -q -ra tests/image $(PYTEST_ARGS)

test-unit: $(VENV_STAMP)
	$(BIN)/pytest -q tests/unit

# The interop tier alone (Kamailio + baresip around the real SBC); `make test` runs it too.
test-interop: system-deps $(VENV_STAMP)
	$(BIN)/pytest -q -ra tests/interop $(PYTEST_ARGS)

bench: system-deps $(VENV_STAMP) bpf
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) $(BPF_OBJ) .pytest_cache .mypy_cache .ruff_cache
