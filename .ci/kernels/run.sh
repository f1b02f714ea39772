#!/usr/bin/env bash
# The kernel matrix: the privileged test suite (netns traffic as real uids in
# both attach modes, the differential test, the service through the real
# daemon) on the kernels our users run, and on the host's.
#
#   run.sh [TARGET...]      TARGET: host, bookworm, trixie (default: all three)
#
# host runs the suite natively. bookworm and trixie boot that suite's stock
# linux-image-cloud-amd64 (Debian 12: 6.1, Debian 13: 6.12) under
# qemu-system-x86_64 with a minbase root filesystem of the same suite
# (rootfs.sh, cached), no network (-nic none), the test binaries on a second
# disk, and read the results back from it with debugfs. The guest needs no Go
# toolchain: the tests are built here with `go test -c`.
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
#   NTF_KERNELS_TIMEOUT  seconds a target may take before it counts as failed (2700)
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
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(host bookworm trixie)

die() { echo "kernels: $*" >&2; exit 2; }
[[ $(id -u) == 0 ]] || die "needs root (bpffs, network namespaces, debootstrap)"
for t in "${targets[@]}"; do
	case $t in host | bookworm | trixie) ;; *) die "unknown target $t (host, bookworm, trixie)" ;; esac
done
for tool in go qemu-system-x86_64 debootstrap mkfs.ext4 debugfs timeout; do
	command -v "$tool" >/dev/null || die "$tool is missing (make kernels installs it)"
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

# One matrix at a time: runs share the cached guests and the output.
mkdir -p "$cache" "$out"
exec 9>"$cache/.lock"
flock -n 9 || { echo "kernels: waiting for another run to finish"; flock 9; }

bin=$out/bin
rm -rf "$bin"
mkdir -p "$bin"

# The binaries: the daemon the service tests run ($NTF_TEST_BINARY) and one
# test binary per package of tests.conf, without -race (too slow emulated).
echo "kernels: building the daemon and the test binaries"
. "$here/tests.conf"
(
	cd "$src"
	CGO_ENABLED=1 go build -trimpath -o "$bin/net-tc-filter" ./cmd/net-tc-filter
	for pkg in $packages; do
		go test -c -trimpath -o "$bin/$pkg.test" "./$pkg"
	done
)
cp "$here/tests.conf" "$bin/"
for pkg in $packages; do mkdir -p "$bin/tree/$pkg"; done
for f in $files; do
	mkdir -p "$bin/tree/$(dirname "$f")"
	cp "$src/$f" "$bin/tree/$f"
done
chmod -R a+rX "$bin"

# One target: its results in $out/TARGET/results, console or output in
# $out/TARGET/console.log, wall time in $out/TARGET/wall.
run_host() {
	local dir=$out/host
	rm -rf "$dir"
	mkdir -p "$dir"
	echo "kernels: host $(uname -r): running the suite natively"
	local start=$SECONDS
	timeout -k 30 "$limit" "$here/job.sh" "$bin" "$dir/results" 2>&1 | tee "$dir/console.log" | sed -u 's/^/[host] /' || true
	echo $((SECONDS - start)) >"$dir/wall"
	uname -r >"$dir/release"
	echo "the host's" >"$dir/package"
	return 0
}

run_guest() {
	local suite=$1 dir=$out/$1 img=$cache/$1
	rm -rf "$dir"
	mkdir -p "$dir/job/results"
	if [[ ${NTF_KERNELS_REFRESH:-} == 1 ]] ||
		[[ -f $img/rootfs.img && -n $(find "$img/rootfs.img" -mtime +"$max_age" 2>/dev/null) ]]; then
		rm -f "$img/stamp"
	fi
	if ! "$here/rootfs.sh" "$suite" "$img"; then
		echo "the guest could not be built (rootfs.sh $suite)" >"$dir/error"
		return 0
	fi

	cp -a "$bin" "$dir/job/bin"
	install -m 0755 "$here/guest-init.sh" "$dir/job/init.sh"
	install -m 0755 "$here/job.sh" "$dir/job/job.sh"
	local size=$(($(du -sm "$dir/job" | cut -f1) + 256))
	mkfs.ext4 -q -F -L ntf-job -d "$dir/job" "$dir/job.img" "${size}M" >/dev/null
	rm -rf "$dir/job"

	echo "kernels: $suite $(cat "$img/kernel.txt"): booting under qemu ($accel, $smp CPUs, $mem)"
	local start=$SECONDS
	# The root image stays clean (snapshot=on); the job disk is written.
	timeout -k 10 "$limit" qemu-system-x86_64 "${qemu_accel[@]}" -smp "$smp" -m "$mem" \
		-display none -monitor none -serial stdio -no-reboot -nic none \
		-kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
		-append "root=/dev/vda rw console=ttyS0 panic=-1 init=/sbin/ntf-init quiet loglevel=4" \
		-drive "file=$img/rootfs.img,if=virtio,format=raw,snapshot=on" \
		-drive "file=$dir/job.img,if=virtio,format=raw" </dev/null 2>&1 |
		sed -u 's/\r//g; s/\x1b\[[0-9;?]*[a-zA-Z]//g' | tee "$dir/console.log" | sed -u "s/^/[$suite] /" || true
	echo $((SECONDS - start)) >"$dir/wall"
	debugfs -R "rdump /results $dir" "$dir/job.img" >/dev/null 2>&1 || true
	sed 's/ (.*//' "$img/kernel.txt" >"$dir/package"
	sed 's/.*(\(.*\))$/\1/' "$img/kernel.txt" >"$dir/release"
	rm -f "$dir/job.img"
	return 0
}

for t in "${targets[@]}"; do
	if [[ $t == host ]]; then run_host; else run_guest "$t"; fi
done

# The summary: one row per kernel, from each target's results.
summary=$out/results.md
fail=0
{
	echo "# Kernel matrix"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$src" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)'), guests under qemu ($accel, $smp CPUs, $mem)."
	echo
	echo "| kernel | package | attach mode (auto) | tests passed | result | wall time |"
	echo "|---|---|---|---|---|---|"
} >"$summary"
details=""
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
		fi
	done
	[[ $result == pass ]] || fail=1
	echo "| $release | $package | $modes | $passed/$total | $result | $((wall / 60))m$(printf %02d $((wall % 60)))s |" >>"$summary"
	[[ -z $notes ]] || details+="- $release:$notes"$'\n'
	times=$(awk '{printf "%s%s %ds", sep, $1, $2; sep=", "}' "$res/times.txt" 2>/dev/null || true)
	booted=$(sed -n 's/.* \([0-9.]*\) s since boot$/\1/p' "$dir/console.log" 2>/dev/null | head -n1)
	details+="- $release: ${times:-no times}${booted:+; the job started ${booted} s after boot}"$'\n'
done
{
	echo
	echo "Counts are tests and subtests (\`--- PASS\` lines of \`go test -v\`) of"
	echo "\`$(echo $packages | sed 's/\([a-z]*\)/.\/\1/g')\` as selected by .ci/kernels/tests.conf; CI=true, so a"
	echo "privileged test that cannot run fails. Where a kernel has no tcx, the tcx"
	echo "subtests assert that tcx is refused there and that auto mode enforces"
	echo "through clsact."
	echo
	printf '%s' "$details"
} >>"$summary"

echo
cat "$summary"
exit $fail
