#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The kernel matrix: the privileged test suite (netns traffic as real uids in
# both attach modes, the differential test, the service through the real
# daemon) on the kernels our users run, and on the host's.
#
#   run.sh [TARGET...]      TARGET: host, bookworm, trixie, bookworm-arm64
#                           (default: all four)
#
# host runs the suite natively. bookworm and trixie boot that suite's stock
# linux-image-cloud-amd64 (Debian 12: 6.1, Debian 13: 6.12) under
# qemu-system-x86_64 with a root filesystem of the same suite (rootfs.sh:
# packages unpacked by mmdebstrap, none of their code run; cached), no
# network (-nic none), the test binaries on a second disk, and read the
# results back from it with debugfs. The guest needs no Go toolchain: the
# tests are built here with `go test -c`.
#
# bookworm-arm64 is the same for Debian 12's linux-image-cloud-arm64 (6.1)
# on qemu-system-aarch64 (-M virt, always TCG: a foreign architecture), with
# an arm64 root filesystem (built the same way: no emulation) and the binaries
# cross-compiled for arm64 (cgo through aarch64-linux-gnu-gcc). Emulating
# another architecture is several times slower, so such a guest runs the
# subset tests.conf names (subset=1) unless NTF_KERNELS_FULL=1.
#
# Writes $NTF_KERNELS_OUT/results.md (per kernel: attach modes, tests passed,
# wall time) and the logs beside it; exits 1 when any kernel fails.
#
# Environment (all optional):
#   NTF_KERNELS_SRC      the source tree to build the binaries from (this checkout)
#   NTF_KERNELS_CACHE    cached root filesystems and kernels (/var/cache/net-tc-filter-kernels)
#   NTF_KERNELS_OUT      results and logs (build/kernels)
#   NTF_KERNELS_REFRESH  1: rebuild the cached guests (new kernel packages)
#   NTF_KERNELS_MAX_AGE  days after which a cached guest is rebuilt (14)
#   NTF_KERNELS_ACCEL    auto (KVM when usable, else TCG), kvm or tcg
#   NTF_KERNELS_SMP, NTF_KERNELS_MEM   guest CPUs (2) and memory (2G)
#   NTF_KERNELS_JOBS     guests booted at the same time (3)
#   NTF_KERNELS_TIMEOUT  seconds a target may take before it counts as failed (2700)
#   NTF_KERNELS_FULL     1: the whole suite on emulated foreign-architecture guests too
#   NTF_KERNELS_MIRROR   Debian mirror for the guests (http://deb.debian.org/debian)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
src=${NTF_KERNELS_SRC:-$repo}
cache=${NTF_KERNELS_CACHE:-/var/cache/net-tc-filter-kernels}
out=${NTF_KERNELS_OUT:-$repo/build/kernels}
smp=${NTF_KERNELS_SMP:-2}
mem=${NTF_KERNELS_MEM:-2G}
limit=${NTF_KERNELS_TIMEOUT:-2700}
max_age=${NTF_KERNELS_MAX_AGE:-14}
full=${NTF_KERNELS_FULL:-0}
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(host bookworm trixie bookworm-arm64)

die() { echo "kernels: $*" >&2; exit 2; }
[[ $(id -u) == 0 ]] || die "needs root (bpffs, network namespaces, mmdebstrap)"
# A target's Debian architecture: SUITE-ARCH, else the host's.
host_arch=$(dpkg --print-architecture)
arch_of() { if [[ $1 == *-* ]]; then echo "${1#*-}"; else echo "$host_arch"; fi; }
arches=()
tools=(go mmdebstrap depmod cpio mkfs.ext4 debugfs timeout)
for t in "${targets[@]}"; do
	case $t in
	host) ;;
	bookworm | trixie) tools+=(qemu-system-x86_64) ;;
	bookworm-arm64) tools+=(qemu-system-aarch64 aarch64-linux-gnu-gcc) ;;
	*) die "unknown target $t (host, bookworm, trixie, bookworm-arm64)" ;;
	esac
	[[ " ${arches[*]} " == *" $(arch_of "$t") "* ]] || arches+=("$(arch_of "$t")")
done
for tool in "${tools[@]}"; do
	command -v "$tool" >/dev/null || [[ -x $tool ]] || die "$tool is missing (make kernels installs it)"
done

# KVM only where it is real: a nested PVM /dev/kvm (kvm_pvm) hangs guests.
accel=${NTF_KERNELS_ACCEL:-auto}
if [[ $accel == auto ]]; then
	accel=tcg
	if [[ -r /dev/kvm && -w /dev/kvm && ! -d /sys/module/kvm_pvm ]] &&
		[[ -d /sys/module/kvm_intel || -d /sys/module/kvm_amd ]]; then
		accel=kvm
	fi
fi
case $accel in
kvm) qemu_accel=(-accel kvm -cpu host) ;;
tcg) qemu_accel=(-accel tcg,thread=multi -cpu max) ;;
*) die "NTF_KERNELS_ACCEL=$accel: auto, kvm or tcg" ;;
esac
# arm64 guests: the virt board, always emulated. pauth-impdef: pointer
# authentication with QEMU's cheap algorithm instead of emulating QARMA5,
# which costs a large share of TCG's time for no test's benefit.
qemu_arm64=(qemu-system-aarch64 -M virt -accel tcg,thread=multi -cpu max,pauth-impdef=on)

# One matrix at a time: runs share the cached guests and the output.
mkdir -p "$cache" "$out"
exec 9>"$cache/.lock"
flock -n 9 || { echo "kernels: waiting for another run to finish"; flock 9; }

# The binaries, one set per architecture in $out/bin-ARCH: the daemon the
# service tests run ($NTF_TEST_BINARY) and one test binary per package of
# tests.conf, without -race (too slow emulated). A foreign architecture's
# are cross-compiled, cgo through Debian's cross compiler; the BPF object
# embedded in them is the same little-endian one. -trimpath -buildmode=pie
# as the packages' binary (Makefile): the daemon tested is built as shipped,
# and `make deb ARCH=...` and these builds share their compiled packages
# (on a fresh machine that spares compiling everything twice for arm64).
. "$here/tests.conf"
build_bin() {
	local arch=$1 bin=$out/bin-$1 env=(CGO_ENABLED=1)
	case $arch in
	"$host_arch") ;;
	arm64) env+=(GOARCH=arm64 CC=aarch64-linux-gnu-gcc) ;;
	*) die "no cross compiler known for $arch" ;;
	esac
	rm -rf "$bin"
	mkdir -p "$bin"
	echo "kernels: building the daemon and the test binaries for $arch"
	(
		cd "$src"
		env "${env[@]}" go build -trimpath -buildmode=pie -o "$bin/net-tc-filter" ./cmd/net-tc-filter
		for pkg in $packages; do
			env "${env[@]}" go test -c -trimpath -buildmode=pie -o "$bin/$pkg.test" "./$pkg"
		done
	)
	# An emulated guest (a foreign architecture, or any guest without KVM)
	# stretches the tests' waits (emulated=1); a foreign architecture's
	# runs the subset unless the whole suite is asked for.
	{
		if [[ $arch != "$host_arch" || $accel != kvm ]]; then echo "emulated=1"; fi
		if [[ $arch != "$host_arch" && $full != 1 ]]; then echo "subset=1"; fi
		cat "$here/tests.conf"
	} >"$bin/tests.conf"
	for pkg in $packages; do mkdir -p "$bin/tree/$pkg"; done
	for f in $files; do
		mkdir -p "$bin/tree/$(dirname "$f")"
		cp "$src/$f" "$bin/tree/$f"
	done
	chmod -R a+rX "$bin"
}
rm -rf "$out/bin"
for arch in "${arches[@]}"; do build_bin "$arch"; done

# One target: its results in $out/TARGET/results, console or output in
# $out/TARGET/console.log, wall time in $out/TARGET/wall.
run_host() {
	local dir=$out/host
	rm -rf "$dir"
	mkdir -p "$dir"
	echo "kernels: host $(uname -r): running the suite natively"
	local start=$SECONDS
	timeout -k 30 "$limit" "$here/job.sh" "$out/bin-$host_arch" "$dir/results" 2>&1 | tee "$dir/console.log" | sed -u 's/^/[host] /' || true
	echo $((SECONDS - start)) >"$dir/wall"
	uname -r >"$dir/release"
	echo "the host's" >"$dir/package"
	return 0
}

run_guest() {
	local target=$1 dir=$out/$1 img=$cache/$1 arch qemu console
	arch=$(arch_of "$target")
	case $arch in
	amd64) qemu=(qemu-system-x86_64 "${qemu_accel[@]}") console=ttyS0 ;;
	arm64) qemu=("${qemu_arm64[@]}") console=ttyAMA0 ;;
	esac
	rm -rf "$dir"
	mkdir -p "$dir/job/results"
	if [[ ${NTF_KERNELS_REFRESH:-} == 1 ]] ||
		[[ -f $img/rootfs.img && -n $(find "$img/rootfs.img" -mtime +"$max_age" 2>/dev/null) ]]; then
		rm -f "$img/stamp"
	fi
	if ! "$here/rootfs.sh" "$target" "$img"; then
		echo "the guest could not be built (rootfs.sh $target)" >"$dir/error"
		return 0
	fi

	cp -a "$out/bin-$arch" "$dir/job/bin"
	install -m 0755 "$here/guest-init.sh" "$dir/job/init.sh"
	install -m 0755 "$here/job.sh" "$dir/job/job.sh"
	local size=$(($(du -sm "$dir/job" | cut -f1) + 256))
	mkfs.ext4 -q -F -L ntf-job -d "$dir/job" "$dir/job.img" "${size}M" >/dev/null
	rm -rf "$dir/job"

	echo "kernels: $target $(cat "$img/kernel.txt"): booting under ${qemu[0]} ($([[ $arch == amd64 ]] && echo "$accel" || echo tcg), $smp CPUs, $mem)"
	local start=$SECONDS attempt
	# A guest whose kernel dies before the job starts (an emulation fault
	# while booting: 6.12 once oopsed on an int3 in its idle loop under
	# TCG) is booted once more; the job disk is untouched until then.
	for attempt in 1 2; do
		# The root image stays clean (snapshot=on); the job disk is written.
		timeout -k 10 "$limit" "${qemu[@]}" -smp "$smp" -m "$mem" \
			-display none -monitor none -serial stdio -no-reboot -nic none \
			-kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
			-append "root=/dev/vda rw console=$console panic=-1 init=/sbin/ntf-init quiet loglevel=4" \
			-drive "file=$img/rootfs.img,if=virtio,format=raw,snapshot=on" \
			-drive "file=$dir/job.img,if=virtio,format=raw" </dev/null 2>&1 |
			sed -u 's/\r//g; s/\x1b\[[0-9;?]*[a-zA-Z]//g' | tee "$dir/console.log" | sed -u "s/^/[$target] /" || true
		grep -q '^ntf-guest: ' "$dir/console.log" && break
		((attempt == 1)) || break
		mv "$dir/console.log" "$dir/console-1.log"
		echo "booted twice: the first boot died before the job started (console-1.log)" >"$dir/retried"
		echo "kernels: $target: the guest died before its job started; booting it once more"
	done
	echo $((SECONDS - start)) >"$dir/wall"
	debugfs -R "rdump /results $dir" "$dir/job.img" >/dev/null 2>&1 || true
	sed 's/ (.*//' "$img/kernel.txt" >"$dir/package"
	sed 's/.*(\(.*\))$/\1/' "$img/kernel.txt" >"$dir/release"
	rm -f "$dir/job.img"
	return 0
}

# Guests run side by side, NTF_KERNELS_JOBS at a time: most of a guest's
# time is the service tests waiting for the daemon (a kernel matrix on 2
# cores kept them 40% busy one guest at a time), so waiting guests overlap.
# Their waits are stretched (emulated=1), and every line is prefixed with
# its target. The host's suite runs alone, first: it is timed natively.
jobs=${NTF_KERNELS_JOBS:-3}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || die "NTF_KERNELS_JOBS=$jobs: a number of guests (1 or more)"
for t in "${targets[@]}"; do
	[[ $t != host ]] || run_host
done
running=0
for t in "${targets[@]}"; do
	[[ $t != host ]] || continue
	if ((running >= jobs)); then
		wait -n || true
		running=$((running - 1))
	fi
	run_guest "$t" &
	running=$((running + 1))
done
wait

# The summary: one row per kernel, from each target's results.
summary=$out/results.md
# failing_lines prints what the failing tests of a `go test -v` log said
# (their t.Log/t.Error lines, each after its test's name) and any panic.
failing_lines() {
	awk -v fails="$(sed -nE 's/^ *--- FAIL: ([^ ]*).*/\1/p' "$1" | paste -sd' ')" '
		BEGIN { n = split(fails, a, " "); for (i = 1; i <= n; i++) failed[a[i]] = 1 }
		/^panic/ { print; next }
		/^=== (RUN|NAME|CONT|PAUSE) / { cur = $3; next }
		/^ +[A-Za-z0-9_]+\.go:[0-9]+: / { if (cur in failed) print cur ":" $0 }
	' "$1"
}

fail=0
{
	echo "# Kernel matrix"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$src" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)'), guests under qemu ($accel for amd64, tcg for arm64; $smp CPUs, $mem)."
	echo
	echo "| kernel | package | attach mode (auto) | tests passed | result | wall time |"
	echo "|---|---|---|---|---|---|"
} >"$summary"
details="" why=""
for t in "${targets[@]}"; do
	dir=$out/$t res=$out/$t/results
	release=$(cat "$dir/release" 2>/dev/null || echo "?")
	package=$(cat "$dir/package" 2>/dev/null || echo "?")
	wall=$(cat "$dir/wall" 2>/dev/null || echo 0)
	case $(cat "$res/tcx.txt" 2>/dev/null) in
	yes) modes="tcx (clsact tested too)" ;;
	no) modes="clsact (no tcx before 6.6)" ;;
	*) modes="?" ;;
	esac
	passed=0 total=0 result=pass notes=""
	[[ ! -f $dir/error ]] || notes+=" $(cat "$dir/error");"
	[[ ! -f $dir/retried ]] || notes+=" $(cat "$dir/retried");"
	for pkg in $packages; do
		log=$res/$pkg.log
		if [[ ! -f $res/$pkg.rc ]]; then
			result=FAIL notes+=" $pkg: did not finish;"
			continue
		fi
		p=$(grep -cE '^ *--- PASS' "$log" || true)
		n=$(grep -cE '^ *--- (PASS|FAIL|SKIP)' "$log" || true)
		passed=$((passed + p)) total=$((total + n))
		if [[ $(cat "$res/$pkg.rc") != 0 ]] || grep -qE '^ *--- (FAIL|SKIP)' "$log"; then
			result=FAIL
			notes+=" $pkg: $(grep -E '^ *--- (FAIL|SKIP)' "$log" | sed -E 's/^ *--- (FAIL|SKIP): ([^ ]*).*/\2 (\1)/' | paste -sd, -);"
			# Why, where CI shows it: a guest's logs are gone with it.
			why+="$release $pkg:"$'\n'"$(failing_lines "$log" | sed -n 1,40p)"$'\n'
		fi
	done
	[[ $result == pass ]] || fail=1
	[[ $(cat "$res/selection.txt" 2>/dev/null) != subset ]] || total+=" (subset)"
	echo "| $release | $package | $modes | $passed/$total | $result | $((wall / 60))m$(printf %02d $((wall % 60)))s |" >>"$summary"
	[[ -z $notes ]] || details+="- $release:$notes"$'\n'
	times=$(awk '{printf "%s%s %ds", sep, $1, $2; sep=", "}' "$res/times.txt" 2>/dev/null || true)
	booted=$(sed -n 's/.* \([0-9.]*\) s since boot$/\1/p' "$dir/console.log" 2>/dev/null | sed -n 1p || true)
	# TestVerifierBudget's figure: how close this kernel's verifier is to refusing the program.
	insns=$(sed -n 's/.*verifier: ntf_egress processed \([0-9]*\) insns.*/\1/p' "$res/bpf.log" 2>/dev/null | sed -n 1p || true)
	details+="- $release: ${times:-no times}${booted:+; the job started ${booted} s after boot}${insns:+; the verifier processed ${insns} instructions of ntf_egress (limit 1000000)}"$'\n'
done
{
	echo
	echo "Counts are tests and subtests (\`--- PASS\` lines of \`go test -v\`) of"
	echo "\`$(echo $packages | sed 's/\([a-z]*\)/.\/\1/g')\` as selected by .ci/kernels/tests.conf; CI=true, so a"
	echo "privileged test that cannot run fails. Where a kernel has no tcx, the tcx"
	echo "subtests assert that tcx is refused there and that auto mode enforces"
	echo "through clsact. (subset): an emulated foreign-architecture guest ran the"
	echo "CI subset of tests.conf (NTF_KERNELS_FULL=1, \`make kernels-full\`: all)."
	echo
	printf '%s' "$details"
	if [[ -n $why ]]; then
		echo
		echo "What the failing tests said (the first 40 lines of each package):"
		echo
		echo '```'
		printf '%s' "$why"
		echo '```'
	fi
} >>"$summary"

echo
cat "$summary"
exit $fail
