# net-tc-filter. Targets install what they need on Debian 12 (as root).
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Packages whose tests need no kernel privileges beyond root-owned files: run with -race.
UNIT_PKGS := ./daemon/config ./daemon/policy ./daemon/watch ./daemon/logging ./cmd/...
# The service's end-to-end tests: real daemons (built with -race as well)
# in namespaces, real traffic as real uids.
SERVICE_PKGS := ./daemon ./dbus
# The kernel program's tests: too slow under -race for what it would check.
KERNEL_PKGS := ./bpf/...

.PHONY: all build deps generate check-generated test unit lint demo clean

all: build

deps:
	@command -v clang >/dev/null && command -v ethtool >/dev/null && command -v nsenter >/dev/null && command -v python3 >/dev/null && \
	  command -v dbus-daemon >/dev/null && command -v dbus-send >/dev/null && command -v busctl >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang llvm libbpf-dev iproute2 ethtool util-linux python3 dbus systemd)

build:
	CGO_ENABLED=1 $(GO) build -ldflags "$(LDFLAGS)" -o net-tc-filter ./cmd/net-tc-filter

# Regenerate the BPF object and its Go bindings from bpf/filter.c.
generate: deps
	$(GO) generate ./bpf

# CI: the committed BPF objects must be what the committed C source gives.
check-generated: generate
	git diff --exit-code -- bpf/ || (echo "bpf/: generated files differ from the committed ones; run make generate" >&2; exit 1)

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

# Everything: generated-code check, lint, unit tests with -race, the
# service tests (reload triggers, swap under load, kill -9, hotplug,
# sd_notify, journald), the privileged kernel tests (netns traffic,
# differential, BPF_PROG_TEST_RUN), and the demo as an end-to-end test.
test: deps check-generated lint build
	mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	$(MAKE) unit
	$(GO) test -race -count=1 -p 1 $(SERVICE_PKGS)
	$(GO) test -count=1 -p 1 $(KERNEL_PKGS)
	./contrib/demo.sh ./net-tc-filter

demo: deps build
	./contrib/demo.sh ./net-tc-filter

clean:
	rm -f net-tc-filter
