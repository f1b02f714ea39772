#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Run the privileged test suite from prebuilt binaries (no Go toolchain):
# on the host natively, or inside a kernel-matrix guest.
#
#   job.sh BIN RESULTS
#
# BIN (made by run.sh) holds net-tc-filter, PKG.test for each package of
# tests.conf, tests.conf itself, and tree/: the files of the source tree the
# tests read, with an empty directory per package to run its tests in (as
# `go test` would). RESULTS gets PKG.log (go test -v) and PKG.rc for each
# package, kernel.txt, tcx.txt, times.txt and selection.txt (subset: the
# tests.conf run.sh wrote says subset=1, else full).
set -u
bin=$(cd "$1" && pwd) results=$2
mkdir -p "$results"
export CI=true NTF_TEST_BINARY="$bin/net-tc-filter" GOTRACEBACK=all
uname -r >"$results/kernel.txt"
: >"$results/times.txt"
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

# For the summary: whether this kernel has tcx (6.6 and later), else auto
# mode attaches by clsact. The tests assert it themselves.
major=$(uname -r | cut -d. -f1) minor=$(uname -r | cut -d. -f2)
if [ "$major" -gt 6 ] || { [ "$major" -eq 6 ] && [ "$minor" -ge 6 ]; }; then
	echo yes >"$results/tcx.txt"
else
	echo no >"$results/tcx.txt"
fi

. "$bin/tests.conf"
# Under emulation (qemu TCG) the guest's CPU is several times slower than
# the host's: the tests stretch their waits for what must happen
# (internal/netlab.Slowed).
if [ "${emulated:-0}" = 1 ]; then export NTF_TEST_TIME_SCALE=4; fi
if [ "${subset:-0}" = 1 ]; then echo subset; else echo full; fi >"$results/selection.txt"
status=0
for pkg in $packages; do
	eval "run=\${${pkg}_run:-} skip=\${${pkg}_skip:-} timeout=\${${pkg}_timeout:-60m}"
	set -- -test.v -test.count=1 -test.timeout="$timeout"
	[ -n "$run" ] && set -- "$@" -test.run "$run"
	[ -n "$skip" ] && set -- "$@" -test.skip "$skip"
	echo "== $pkg: $pkg.test $*"
	start=$(date +%s)
	(cd "$bin/tree/$pkg" && "$bin/$pkg.test" "$@" >"$results/$pkg.log" 2>&1)
	rc=$?
	end=$(date +%s)
	echo "$rc" >"$results/$pkg.rc"
	echo "$pkg $((end - start))" >>"$results/times.txt"
	grep -E '^(--- |ok|FAIL|PASS|panic)' "$results/$pkg.log"
	echo "== $pkg: exit $rc after $((end - start)) s"
	[ "$rc" -eq 0 ] || status=1
	sync
done
exit $status
