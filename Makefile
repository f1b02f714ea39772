# SPDX-License-Identifier: Apache-2.0
# net-tc-filter. Targets install what they need on Debian 12 (as root).
GO      ?= go
# A release tag vX.Y.Z gives X.Y.Z; between releases: 0.1.0~git<commits>.<sha>,
# which sorts before 0.1.0 and grows with every commit (Debian and RPM).
VERSION ?= $(shell git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null | sed 's/^v//' | grep . || \
	echo 0.1.0~git$$(git rev-list --count HEAD 2>/dev/null || echo 0).$$(git rev-parse --short HEAD 2>/dev/null || echo unknown))
LDFLAGS := -X main.version=$(VERSION)
# Evaluated where used, so that a make without Go says so (go-version)
# rather than "go: not found" from the shell.
NFPM     = $(shell $(GO) env GOPATH)/bin/nfpm
# The oldest Go the module builds with: go.mod's go line.
GO_MIN  := $(shell sed -n 's/^go \([0-9][0-9.]*\).*/\1/p' go.mod)
# Packages whose tests need no kernel privileges beyond root-owned files: run with -race.
UNIT_PKGS := ./daemon/config ./daemon/policy ./daemon/nss ./daemon/watch ./daemon/logging ./daemon/lastgood ./cmd/...
# The service's end-to-end tests: real daemons (built with -race as well)
# in namespaces, real traffic as real uids; and the lab they run in.
SERVICE_PKGS := ./daemon ./dbus ./internal/...
# The kernel program's tests: too slow under -race for what it would check.
KERNEL_PKGS := ./bpf/...

.PHONY: all go-version build deps generate check-generated test unit lint demo clean man deb rpm package-deps e2e bench bench-deps

all: build

# clang and llvm (llvm-strip) build the BPF object from bpf/ alone: its
# headers are the repository's, none of the host's. bash-completion, zsh and
# fish: the CLI's completion scripts are tested in the real shells.
deps:
	@command -v clang >/dev/null && command -v llvm-strip >/dev/null && command -v ethtool >/dev/null && command -v nsenter >/dev/null && command -v python3 >/dev/null && \
	  command -v dbus-daemon >/dev/null && command -v dbus-send >/dev/null && command -v busctl >/dev/null && \
	  command -v zsh >/dev/null && command -v fish >/dev/null && test -f /usr/share/bash-completion/bash_completion || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang llvm iproute2 ethtool util-linux python3 dbus systemd bash-completion zsh fish)

# Every target that runs Go depends on this: one `go env` (a few ms), and a
# plain sentence instead of "go: not found ... Error 127" or a compiler
# error from an old toolchain.
go-version:
	@have=$$($(GO) env GOVERSION 2>/dev/null | sed -n '1s/^\(devel \)\{0,1\}go\([0-9][0-9.]*\).*/\2/p'); \
	  if [ -z "$$have" ] || [ "$$(printf '%s\n' "$(GO_MIN)" "$$have" | sort -V | head -n 1)" != "$(GO_MIN)" ]; then \
	    echo "Go ≥ $(GO_MIN) is needed (go.mod); found: $$( $(GO) env GOVERSION 2>/dev/null | head -n 1 | grep . || echo none)" >&2; \
	    echo "Install it from https://go.dev/dl/ and put its bin/ on PATH (or make GO=/path/to/go)." >&2; exit 1; \
	  fi

build: go-version
	CGO_ENABLED=1 $(GO) build -ldflags "$(LDFLAGS)" -o net-tc-filter ./cmd/net-tc-filter

# Regenerate the BPF object and its Go bindings from bpf/filter.c.
generate: go-version deps
	$(GO) generate ./bpf

# CI: the committed BPF objects must be what the committed C source gives.
check-generated: generate
	git diff --exit-code -- bpf/ || (echo "bpf/: generated files differ from the committed ones; run make generate" >&2; exit 1)

lint: go-version
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	@missing=$$(git ls-files '*.go' '*.c' '*.h' '*.sh' ':!bpf/headers/' | xargs grep -L 'SPDX-License-Identifier' | xargs -r grep -L '^// Code generated'); \
	  test -z "$$missing" || (echo "no SPDX-License-Identifier line in:" $$missing >&2; exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

unit: go-version
	$(GO) test -race -count=1 $(UNIT_PKGS)

# Everything: generated-code check, lint, unit tests with -race, the
# service tests (reload triggers, swap under load, kill -9, hotplug,
# sd_notify, journald), the privileged kernel tests (netns traffic,
# differential, BPF_PROG_TEST_RUN), the demo, contrib/ (manifests, alerts,
# Ansible role), the package's journey on a real systemd (e2e: two amd64
# .debs, lintian-checked and installed), the other packages (the amd64 .rpm,
# the arm64 .deb and .rpm), and the kernel tests on Debian 12's and 13's
# amd64 kernels and Debian 12's arm64 kernel under qemu (the host's kernel
# ran them just before; the emulated arm64 guest runs the subset of
# .ci/kernels/tests.conf).
test: go-version deps check-generated lint build
	mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	$(MAKE) unit
	$(GO) test -race -count=1 -p 1 $(SERVICE_PKGS)
	$(GO) test -count=1 -p 1 $(KERNEL_PKGS)
	$(MAKE) fuzz FUZZROUNDS=1
	$(MAKE) bench-deps
	$(GO) test -count=1 ./bench/...
	./contrib/demo.sh ./net-tc-filter
	$(MAKE) contrib-test
	$(MAKE) e2e
	$(MAKE) rpm ARCH=amd64
	$(MAKE) deb rpm ARCH=arm64
	$(MAKE) kernels KERNELS="bookworm trixie bookworm-arm64"

# Issue 6: net-tc-filter vs iptables -m owner vs nftables meta skuid, each on
# a veth pair between throwaway namespaces (bench/cmd/ntf-bench): the
# classifier under BPF_PROG_TEST_RUN, throughput (iperf3 TCP, 64-byte UDP
# through all four lanes in turns),
# load/reload, daemon footprint under a flood. Writes bench/results.json,
# bench/results.md and bench/results.svg; exits 1 only when a filter lets
# the denied user through or blocks the allowed one (speed goals are
# PASS/FAIL in the report). BENCHFLAGS=-quick for a smoke run (~30 s).
BENCHFLAGS ?=
bench-deps:
	@command -v iperf3 >/dev/null && command -v iptables-restore >/dev/null && command -v nft >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 iptables nftables)

bench: deps bench-deps build
	mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	mkdir -p build
	$(GO) build -o build/ntf-bench ./bench/cmd/ntf-bench
	./build/ntf-bench -daemon ./net-tc-filter -repo . -out bench $(BENCHFLAGS)

# Fuzzing (issue 15): the configuration loader (any bytes: a valid set or
# positioned errors, never a panic), its fast YAML path (whatever it reads,
# read as yaml.v3 reads it) and the packet parser (BPF_PROG_TEST_RUN
# against a Go reference parser). What they find is kept in testdata/fuzz/
# and replayed by every `go test`; `make test` runs a short pass.
# Each target runs a number of executions, FUZZROUNDS times what one round
# takes ~20 s on the 2-core VM, not a -fuzztime duration: Go <= 1.26 can
# fail a duration-bounded run with a bare "context deadline exceeded" when
# its deadline fires (go.dev/issue/75804), which CI hit on a clean run.
# A new input is minimised for 10 s at most: the packet parser's default
# minimisation stalls the search for a minute each time.
FUZZROUNDS ?= 6
.PHONY: fuzz
fuzz: go-version deps
	mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $$(( $(FUZZROUNDS) * 50000 ))x ./daemon/config
	$(GO) test -run '^$$' -fuzz '^FuzzFastYAML$$' -fuzztime $$(( $(FUZZROUNDS) * 300000 ))x ./daemon/config
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $$(( $(FUZZROUNDS) * 20000 ))x -fuzzminimizetime 10s ./bpf

demo: deps build
	./contrib/demo.sh ./net-tc-filter

# Packages. The binary is position-independent and stripped, as Debian wants.
package-deps: go-version
	@command -v go-md2man >/dev/null && command -v lintian >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq go-md2man lintian)
	@test -x $(NFPM) || $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.44.0

# ARCH: the Debian architecture of the package (amd64, the default, or
# arm64). The binary for an architecture A is build/A/net-tc-filter; for a
# foreign one it is cross-compiled with cgo (the NSS resolver) through
# Debian's cross toolchain, which cross-deps-A installs. Both embed the same
# committed little-endian bpf/filter_bpfel.o.
ARCH      ?= amd64
HOST_ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
CROSS_amd64 := x86_64-linux-gnu
CROSS_arm64 := aarch64-linux-gnu
CROSS_PKG_amd64 := gcc-x86-64-linux-gnu libc6-dev-amd64-cross
CROSS_PKG_arm64 := gcc-aarch64-linux-gnu libc6-dev-arm64-cross
cross-env = $(if $(filter $(HOST_ARCH),$(1)),,GOARCH=$(1) CC=$(CROSS_$(1))-gcc)
# Debian's hardening for the C the binary links (cgo's NSS resolver, the
# runtime's glue): fortified libc calls, full RELRO with immediate binding
# (lintian: hardening-no-fortify-functions, hardening-no-bindnow); the
# compiler's .comment goes after linking (binary-has-unneeded-section).
HARDENING := CGO_CPPFLAGS="-D_FORTIFY_SOURCE=2" CGO_LDFLAGS="-Wl,-z,relro,-z,now"

.PHONY: cross-deps-amd64 cross-deps-arm64
cross-deps-amd64 cross-deps-arm64: cross-deps-%:
	@if [ "$*" != "$(HOST_ARCH)" ] && ! { command -v $(CROSS_$*)-gcc && test -f /usr/$(CROSS_$*)/include/stdio.h; } >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CROSS_PKG_$*); fi

build/amd64/net-tc-filter build/arm64/net-tc-filter: build/%/net-tc-filter: go-version cross-deps-% FORCE
	mkdir -p $(@D)
	CGO_ENABLED=1 $(HARDENING) $(call cross-env,$*) $(GO) build -trimpath -buildmode=pie -ldflags "$(LDFLAGS) -s -w" -o $@ ./cmd/net-tc-filter
	$(if $(filter $(HOST_ARCH),$*),objcopy,$(CROSS_$*)-objcopy) --remove-section=.comment $@

# What nfpm.yaml packages: the binary for ARCH.
build/net-tc-filter: build/$(ARCH)/net-tc-filter
	install -m 0755 $< $@

# A line of a man page's source that starts with a number and a dot
# ("65535.") renders as a numbered list item: refused.
man: package-deps
	mkdir -p build/man
	for p in net-tc-filter.8 net-tc-filter.yml.5; do \
	  go-md2man -in packaging/man/$$p.md > build/man/$$p && \
	  if grep -nE '^\.IP "[[:space:]]*[0-9]+[.)]"' build/man/$$p; then \
	    echo "packaging/man/$$p.md: a line that starts with a number and a dot (\"65535.\") renders as a numbered list; rewrap the paragraph" >&2; exit 1; \
	  fi && gzip -9nf build/man/$$p || exit 1; done

# The completion scripts, from the command tree (the same for every
# architecture, so a host build writes them: a cross-built binary cannot run
# here).
.PHONY: completion
completion: build/$(HOST_ARCH)/net-tc-filter
	mkdir -p build/completion
	$< completion bash > build/completion/net-tc-filter.bash
	$< completion zsh  > build/completion/_net-tc-filter
	$< completion fish > build/completion/net-tc-filter.fish

# packaging/copyright must list every Go module the binary links, no more.
.PHONY: check-copyright
check-copyright: go-version build/net-tc-filter
	@go version -m build/net-tc-filter | awk '$$1=="dep"{print $$2}' | sort > build/linked-modules
	@sed -n 's|^\(Files:\)\{0,1\} *\([a-z][a-z0-9.-]*\.[a-z]\{2,\}/[^ ]*\)/\*$$|\2|p' packaging/copyright | sort -u > build/copyright-modules
	@diff -u --label linked build/linked-modules --label packaging/copyright build/copyright-modules || \
	  (echo "packaging/copyright: its Go module paragraphs differ from what build/net-tc-filter links (go version -m)" >&2; exit 1)

build/changelog.gz: packaging/changelog FORCE
	mkdir -p build
	{ printf 'net-tc-filter (%s) unstable; urgency=medium\n\n  * Build of %s.\n\n -- %s  %s\n\n' \
	    "$(VERSION)" "$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	    "net-tc-filter developers <maintainers@users.noreply.r-seed-e34b04b7.example>" \
	    "$$(date -R -d @$$(git log -1 --format=%ct 2>/dev/null || date +%s))"; \
	  cat packaging/changelog; } | gzip -9n > $@

# Debian has no License field (nfpm.yaml's licence is the rpm's tag), and
# lintian must report neither errors nor warnings.
deb: package-deps build/net-tc-filter check-copyright man completion build/changelog.gz
	mkdir -p dist
	sed '/^license:/d' nfpm.yaml | VERSION=$(VERSION) ARCH=$(ARCH) $(NFPM) package --config - --packager deb --target dist/
	lintian --fail-on error,warning dist/net-tc-filter_$(VERSION)_$(ARCH).deb

rpm: package-deps build/net-tc-filter check-copyright man completion
	mkdir -p dist
	VERSION=$(VERSION) ARCH=$(ARCH) $(NFPM) package --config nfpm.yaml --packager rpm --target dist/

# The administrator's journey on a real systemd (systemd-nspawn, bookworm
# rootfs cached under /var/cache/net-tc-filter-e2e): install, drop-in, reload,
# D-Bus, a denied connection in the journal, upgrade, remove, purge.
e2e: package-deps
	@command -v debootstrap >/dev/null && command -v systemd-nspawn >/dev/null && command -v zstd >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap systemd-container zstd)
	$(MAKE) deb VERSION=$(VERSION)+e2e1
	$(MAKE) deb VERSION=$(VERSION)+e2e2
	packaging/e2e/e2e.sh dist/net-tc-filter_$(VERSION)+e2e1_amd64.deb dist/net-tc-filter_$(VERSION)+e2e2_amd64.deb

# The kernel matrix (.ci/kernels): the privileged tests of ./bpf ./daemon
# ./dbus on the stock cloud kernels of Debian 12 (6.1, no tcx) and Debian 13
# (6.12) booted under qemu (-nic none; TCG unless KVM is real), on Debian
# 12's arm64 cloud kernel under qemu-system-aarch64 (always TCG; arm64 test
# binaries cross-compiled), and on this host's kernel. Guests are built once
# (.ci/kernels/rootfs.sh: Debian's packages unpacked by mmdebstrap without
# running any of their code, so an arm64 one needs no emulation; ~35 s
# each) and cached under /var/cache/net-tc-filter-kernels; the summary goes to
# build/kernels/results.md. KERNELS picks targets (host bookworm trixie
# bookworm-arm64); exit 1 when a kernel fails. The emulated arm64 guest runs
# the subset .ci/kernels/tests.conf names; kernels-full runs everything
# everywhere.
KERNELS ?= host bookworm trixie bookworm-arm64
KERNEL_TOOLS := qemu-system-x86 mmdebstrap kmod cpio xz-utils e2fsprogs systemd
ifneq ($(filter %-arm64,$(KERNELS)),)
KERNEL_TOOLS += qemu-system-arm gcc-aarch64-linux-gnu libc6-dev-arm64-cross
endif
.PHONY: kernels kernels-full
kernels: go-version
	@missing=$$(for p in $(KERNEL_TOOLS); do dpkg-query -W -f '$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || echo $$p; done); \
	  test -z "$$missing" || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing)
	.ci/kernels/run.sh $(KERNELS)

kernels-full:
	NTF_KERNELS_FULL=1 $(MAKE) kernels

FORCE:

clean:
	rm -rf net-tc-filter build dist

# contrib/: the fleet pieces. Go test: the Kubernetes manifests' structure
# and their ConfigMaps through the real `check` as a pod lays them out, the
# dashboard's and alerts' metric names. Then promtool (check + unit tests)
# and the Ansible role (syntax, ansible-lint, the validation helper run for
# real); those scripts apt-install prometheus, ansible and ansible-lint.
.PHONY: contrib-test
contrib-test: build
	NTF_TEST_BINARY=$(CURDIR)/net-tc-filter $(GO) test -count=1 ./contrib
	contrib/prometheus/test.sh
	NTF_TEST_BINARY=$(CURDIR)/net-tc-filter contrib/ansible/test.sh
