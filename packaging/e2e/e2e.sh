#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end test of the net-tc-filter Debian package on a real systemd:
# the administrator's journey (SPEC §7) replayed in a throwaway bookworm
# container booted with systemd-nspawn.
#
#   packaging/e2e/e2e.sh OLD.deb NEW.deb
#
# OLD is installed first, NEW (a newer version) is the upgrade. Run as root.
# Environment:
#   NTF_E2E_CACHE   where the bookworm rootfs tarball is cached
#                   (default /var/cache/net-tc-filter-e2e)
#   NTF_E2E_MIRROR  Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   NTF_E2E_LOG_DIR if set, the container's journal and console are saved there
#   NTF_E2E_README  the README whose administrator quick start is replayed
#                   (default: the repository's README.md)
#
# Every packet of the test stays inside the container's private network
# namespace (systemd-nspawn --private-network): the host's interfaces are
# never touched. The container, its tmpfs and its cgroups are removed on exit.
set -Eeuo pipefail
# With pipefail, a reader that stops early (grep -q, head) fails the whole
# pipeline when the writer is still writing: it dies of SIGPIPE, and the
# slower the machine, the likelier. Pipelines here read to the end instead
# (grep ... >/dev/null, sed -n 1p).
exec </dev/null

prog=${0##*/}
die_usage() { echo "$prog: $*" >&2; echo "usage: $prog OLD.deb NEW.deb" >&2; exit 2; }
[ $# -eq 2 ] || die_usage "two packages expected"
[ "$(id -u)" = 0 ] || die_usage "must run as root"
DEB1=$(realpath -e -- "$1") || die_usage "no such file: $1"
DEB2=$(realpath -e -- "$2") || die_usage "no such file: $2"
for d in "$DEB1" "$DEB2"; do
  [ "$(dpkg-deb -f "$d" Package)" = net-tc-filter ] || die_usage "$d is not a net-tc-filter package"
done
V1=$(dpkg-deb -f "$DEB1" Version)
V2=$(dpkg-deb -f "$DEB2" Version)
dpkg --compare-versions "$V2" gt "$V1" || die_usage "NEW ($V2) must be newer than OLD ($V1)"

SUITE=bookworm
# Everything the package and the test need, baked into the cached rootfs so
# that `apt install ./x.deb` works offline. Changing this list (or the recipe
# below: bump ROOTFS_RECIPE) changes the cache key.
PACKAGES=(systemd systemd-sysv dbus libpam-systemd iproute2 procps util-linux python3-minimal)
ROOTFS_RECIPE=1
CACHE=${NTF_E2E_CACHE:-/var/cache/net-tc-filter-e2e}
MIRROR=${NTF_E2E_MIRROR:-http://deb.debian.org/debian}
ROOTFS_KEY=$(printf '%s\n' "$SUITE" minbase "$ROOTFS_RECIPE" "${PACKAGES[@]}" | sha256sum | cut -c1-16)
ROOTFS_TAR=$CACHE/rootfs-$SUITE-$ROOTFS_KEY.tar.zst

MACHINE=ntf-e2e-$$
CPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The test topology (inside the container).
DST=192.0.2.7 DPORT=80
DROPIN=/etc/net-tc-filter/conf.d/50-e2e.yml
BROKEN=/etc/net-tc-filter/conf.d/60-broken.yml
BUS=(org.nettcfilter1 /org/nettcfilter1 org.nettcfilter1.Manager)
MSGID=3f3fbd7373b641db84b2703fd2958c15

# The README's administrator quick start, replayed as written so that it
# cannot rot: its drop-in (the ```yaml block between the quickstart-dropin
# markers), the file it is saved as, its explain line and its undo line. Its
# address (the metadata service's) becomes $DST, the test's server.
README=${NTF_E2E_README:-$(dirname -- "${BASH_SOURCE[0]}")/../../README.md}
README=$(realpath -e -- "$README") || die_usage "no README.md at $README (NTF_E2E_README)"
QS_ADDR=169.254.169.254
QS_YAML=$(awk '/^<!-- quickstart-dropin/ { m = 1; next } /^<!-- \/quickstart-dropin -->/ { m = 0 }
               m && /^```/ { f = !f; next } m && f' "$README")
QS_PATH=$(sed -n 's|^Save this as `\(/etc/net-tc-filter/conf\.d/[^`]*\.yml\)`.*|\1|p' "$README" | sed -n 1p)
QS_EXPLAIN=$(grep -m 1 '^net-tc-filter explain ' "$README") || true
QS_UNDO=$(grep -m 1 '^rm /etc/net-tc-filter/conf\.d/' "$README" | sed 's/ *#.*//') || true
[ -n "$QS_YAML" ] || die_usage "$README: no \`\`\`yaml block between <!-- quickstart-dropin ... --> and <!-- /quickstart-dropin -->"
grep -qF "$QS_ADDR/32" <<<"$QS_YAML" || die_usage "$README: the quick-start drop-in does not protect $QS_ADDR/32"
[ -n "$QS_PATH" ] || die_usage "$README: no 'Save this as \`/etc/net-tc-filter/conf.d/NAME.yml\`' line"
[[ $QS_EXPLAIN == *"--user www-data --dst $QS_ADDR "* ]] || die_usage "$README: no 'net-tc-filter explain --user www-data --dst $QS_ADDR ...' line"
[ "$QS_UNDO" = "rm $QS_PATH" ] || die_usage "$README: the undo line is '$QS_UNDO', not 'rm $QS_PATH'"
QS_YAML=${QS_YAML//"$QS_ADDR"/$DST}
QS_EXPLAIN=${QS_EXPLAIN//"$QS_ADDR"/$DST}

WORK= ROOT= NSPAWN_PID= LEADER= BUILD_TMP= CGROUPS=() BG_PIDS=()

# ---------------------------------------------------------------- output
STEP= STEP_T0= T_START=${EPOCHREALTIME/./} TIMES=()
usec() { echo "${EPOCHREALTIME/./}"; }
fmt_usec() { printf '%d.%01d' $(($1 / 1000000)) $(($1 % 1000000 / 100000)); }
step_end() {
  [ -n "$STEP" ] || return 0
  local d=$(( $(usec) - STEP_T0 ))
  echo "   ($(fmt_usec "$d") s)"
  TIMES+=("$(printf '%7ss  %s' "$(fmt_usec "$d")" "$STEP")")
  STEP=
}
step() { step_end; STEP=$1; STEP_T0=$(usec); echo; echo "== $STEP"; }
ok() { echo "   ok: $*"; }
info() { echo "   $*"; }
indent() { sed -u 's/^/   | /'; }
fail() { echo >&2; echo "FAIL [${STEP:-setup}]: $*" >&2; exit 1; }
on_err() {
  [ "$BASHPID" = "$$" ] || return 0
  echo >&2; echo "FAIL [${STEP:-setup}]: command failed (exit $1) at line $2: $3" >&2
}
trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR

# ---------------------------------------------------------------- container helpers
# ns CMD...: run directly in the container's namespaces (not as a unit).
ns() { nsenter -t "$LEADER" -a /usr/bin/env -i PATH="$CPATH" "$@"; }
# inside CMD...: run as root in a transient unit of the container's systemd
# (its environment, its cgroup); stdin/stdout/stderr and the exit status pass through.
# systemd expands $VAR and ${VAR} in a unit's command line: "$$" passes a "$".
inside() { ns systemd-run --quiet --wait --pipe --collect -- "${@//\$/\$\$}"; }
# as_user USER CMD...: the same as an unprivileged user.
as_user() { local u=$1; shift; ns systemd-run --quiet --wait --pipe --collect -p User="$u" -- "${@//\$/\$\$}"; }
# put PATH: write stdin to PATH inside, mode 0644, owned by root.
put() { inside /usr/bin/install -m 0644 -o root -g root /dev/stdin "$1"; }
# probe USER: a TCP connect to $DST:$DPORT as USER; prints "pass" (connected),
# "reject" (failed with "No route to host": the filter answered the denied SYN
# with ICMP administratively prohibited, SPEC §1 rule 4), "drop" (timed out
# after 2 s: a SYN dropped silently, deny: drop) or "error N: MESSAGE".
probe() {
  local rc=0 err
  err=$(as_user "$1" /usr/bin/timeout 2 /bin/bash -c "exec 3<>/dev/tcp/$DST/$DPORT" 2>&1 >/dev/null) || rc=$?
  case $rc in
  0) echo pass ;;
  124) echo drop ;;
  *) case $err in *"No route to host"*) echo reject ;; *) echo "error $rc: $err" ;; esac ;;
  esac
}
expect_probe() { # USER pass|drop WHY
  local r; r=$(probe "$1")
  [ "$r" = "$2" ] || fail "$1 -> $DST:$DPORT: expected $2, got $r ($3)"
  case $2 in pass) ok "$1 connects to $DST:$DPORT ($3)" ;; reject) ok "$1 is denied and told: No route to host ($3)" ;; esac
}
expect_pass() { expect_probe "$1" pass "$2"; }
expect_reject() { expect_probe "$1" reject "$2"; }
svc() { inside systemctl show -p "$1" --value net-tc-filter.service; }
prop() { inside busctl get-property "${BUS[@]}" "$1"; }
# wait_for SECONDS DESCRIPTION CMD...: poll CMD until it succeeds.
wait_for() {
  local t=$1 what=$2; shift 2
  local end=$(( $(usec) + t * 1000000 ))
  until "$@"; do
    [ "$(usec)" -lt "$end" ] || fail "timed out after ${t}s waiting for: $what"
    sleep 0.2
  done
}
expect_active() {
  local s; s=$(inside systemctl is-active net-tc-filter.service) || true
  [ "$s" = active ] || fail "net-tc-filter.service is '$s', not active$(echo; inside systemctl status --no-pager -n 30 net-tc-filter.service 2>&1 | indent)"
}

# ---------------------------------------------------------------- teardown
umount_under() { # unmount everything below $1, deepest first
  local m
  awk -v p="$1/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}
teardown() {
  local pid i c
  for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
    kill -TERM "$NSPAWN_PID" 2>/dev/null || true   # nspawn powers the container off
    for i in $(seq 150); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$NSPAWN_PID" 2>/dev/null; then
      echo "   container did not power off in 15 s: killing it" >&2
      [ -n "$LEADER" ] && kill -KILL "$LEADER" 2>/dev/null || true
      kill -KILL "$NSPAWN_PID" 2>/dev/null || true
    fi
  fi
  [ -n "$NSPAWN_PID" ] && { wait "$NSPAWN_PID" 2>/dev/null || true; }
  if [ -n "$ROOT" ]; then
    umount_under "$ROOT"
    if mountpoint -q "$ROOT"; then umount "$ROOT" 2>/dev/null || umount -l "$ROOT"; fi
  fi
  [ -n "$WORK" ] && ! mountpoint -q "$ROOT" && rm -rf --one-file-system "$WORK"
  for c in "${CGROUPS[@]}"; do
    for i in $(seq 50); do
      [ -d "$c" ] || break
      find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || sleep 0.1
    done
    [ -d "$c" ] && echo "   could not remove cgroup $c" >&2
  done
  rmdir "/run/systemd/nspawn/propagate/$MACHINE" 2>/dev/null || true
  if [ -n "$BUILD_TMP" ]; then umount_under "$BUILD_TMP"; rm -rf --one-file-system "$BUILD_TMP"; fi
}
on_exit() {
  local rc=$?
  set +eE; trap - ERR
  step_end
  if [ -n "$LEADER" ] && [ -e "/proc/$LEADER" ]; then
    if [ "$rc" != 0 ]; then
      echo; echo "== diagnostics (container journal, last 60 lines of net-tc-filter)"
      ns systemctl status --no-pager -n 0 net-tc-filter.service 2>&1 | indent
      ns journalctl --no-pager -n 60 -u net-tc-filter.service 2>&1 | indent
      ns systemctl --failed --no-pager 2>&1 | indent
    fi
    if [ -n "${NTF_E2E_LOG_DIR:-}" ]; then
      mkdir -p "$NTF_E2E_LOG_DIR"
      ns journalctl --no-pager -o short-precise > "$NTF_E2E_LOG_DIR/journal.txt" 2>&1
    fi
  fi
  [ -n "${NTF_E2E_LOG_DIR:-}" ] && [ -f "$WORK/console.log" ] && cp "$WORK/console.log" "$NTF_E2E_LOG_DIR/"
  echo; echo "== teardown"
  teardown
  echo; echo "== timings"
  printf '   %s\n' "${TIMES[@]}"
  echo "   total $(fmt_usec $(( $(usec) - T_START ))) s"
  if [ "$rc" = 0 ]; then echo "PASS: $prog $V1 -> $V2"; else echo "FAILED: $prog (exit $rc)" >&2; fi
  exit "$rc"
}
trap on_exit EXIT
trap 'echo >&2; echo "FAIL [${STEP:-setup}]: interrupted" >&2; exit 130' INT
trap 'echo >&2; echo "FAIL [${STEP:-setup}]: terminated" >&2; exit 143' TERM

# ---------------------------------------------------------------- 1. rootfs
step "rootfs: bookworm minbase + ${PACKAGES[*]}"
for t in systemd-nspawn nsenter zstd tar flock; do
  command -v "$t" >/dev/null || fail "$t is missing on the host (apt-get install systemd-container zstd util-linux)"
done
mkdir -p "$CACHE"
exec {LOCK}>"$CACHE/.lock"
flock "$LOCK"
if [ -s "$ROOTFS_TAR" ]; then
  info "cached: $ROOTFS_TAR"
else
  command -v debootstrap >/dev/null || fail "debootstrap is missing on the host (apt-get install debootstrap)"
  info "building $ROOTFS_TAR (debootstrap from $MIRROR)"
  BUILD_TMP=$(mktemp -d "$CACHE/build.XXXXXX")
  inc=$(IFS=,; echo "${PACKAGES[*]}")
  debootstrap --variant=minbase --include="$inc" "$SUITE" "$BUILD_TMP/root" "$MIRROR" \
    >"$BUILD_TMP/debootstrap.log" 2>&1 || { tail -n 30 "$BUILD_TMP/debootstrap.log" | indent; fail "debootstrap failed"; }
  rm -f "$BUILD_TMP"/root/var/cache/apt/archives/*.deb
  tar -C "$BUILD_TMP/root" --numeric-owner --xattrs --acls -cf - . | zstd -q -T0 -o "$BUILD_TMP/rootfs.tar.zst"
  mv "$BUILD_TMP/rootfs.tar.zst" "$ROOTFS_TAR"
  rm -rf --one-file-system "$BUILD_TMP"; BUILD_TMP=
  # Tarballs of other package lists are stale now.
  find "$CACHE" -maxdepth 1 -name "rootfs-$SUITE-*.tar.zst" ! -path "$ROOTFS_TAR" -delete
fi
flock -u "$LOCK"
info "$(du -h "$ROOTFS_TAR" | cut -f1) $ROOTFS_TAR"

# ---------------------------------------------------------------- 2. boot
# boot: systemd-nspawn boots $ROOT in the background; returns once the
# container's systemd is up (LEADER) and the system has finished starting.
boot() {
  local c end state
  # A container's systemd leaves its cgroups behind when it reboots.
  for c in "${CGROUPS[@]}"; do find "$c" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true; done
  (
    for c in "${CGROUPS[@]}"; do echo "$BASHPID" > "$c/cgroup.procs"; done
    # Its own session: a ^C meant for this script reaches nspawn only through teardown.
    # nspawn's own seccomp filter refuses bpf(2) and perf_event_open(2) with EPERM
    # ("bpffs is not namespaced"); a real host has no such filter: allow them.
    exec setsid systemd-nspawn --quiet -D "$ROOT" -M "$MACHINE" -b --register=no --keep-unit \
      --console=pipe --capability=all --private-network --system-call-filter='bpf perf_event_open'
  ) >>"$WORK/console.log" 2>&1 &
  NSPAWN_PID=$!
  end=$(( $(usec) + 30000000 ))
  while :; do
    kill -0 "$NSPAWN_PID" 2>/dev/null || { tail -n 20 "$WORK/console.log" | indent; fail "systemd-nspawn exited"; }
    LEADER=$(ps -o pid= --ppid "$NSPAWN_PID" | sed -n '1{s/ //g;p}') || true
    if [ -n "$LEADER" ] && [ "$(cat "/proc/$LEADER/comm" 2>/dev/null)" = systemd ] &&
       [ -S "/proc/$LEADER/root/run/systemd/private" ]; then break; fi
    LEADER=
    [ "$(usec)" -lt "$end" ] || fail "the container's systemd did not come up in 30 s"
    sleep 0.05
  done
  info "container leader pid $LEADER"
  state=$(ns timeout 60 systemctl is-system-running --wait) || true
  case $state in
    running) ok "system is $state" ;;
    degraded) ok "system is $state"; ns systemctl --failed --no-pager | indent ;;
    *) fail "system is '$state' after boot" ;;
  esac
  ns mountpoint -q /sys/fs/bpf || fail "no bpffs on /sys/fs/bpf after boot$(echo; ns journalctl -b -u e2e-bpffs --no-pager | indent)"
  [ "$(ns ip -o link show | wc -l)" = 1 ] || fail "the container does not have a private network (more than lo)"
  ok "private network: only lo; a fresh bpffs on /sys/fs/bpf"
}

step "boot: unpack into a tmpfs, systemd-nspawn -b --private-network ($MACHINE)"
WORK=$(mktemp -d /tmp/ntf-e2e.XXXXXX)
ROOT=$WORK/root
mkdir "$ROOT"
mount -t tmpfs -o size=1536m,mode=0755 ntf-e2e "$ROOT"
zstd -dc "$ROOTFS_TAR" | tar -C "$ROOT" --numeric-owner --xattrs --acls -xf -
echo "$MACHINE" > "$ROOT/etc/hostname"
install -d -m 0755 "$ROOT/srv/e2e"
install -m 0644 "$DEB1" "$DEB2" "$ROOT/srv/e2e/"
# /sys/fs/bpf is missing under --private-network, where a host's systemd
# would have mounted bpffs early at boot: a fresh bpffs of the container's
# own at every boot, before net-tc-filter starts (as on a host, nothing
# pinned survives a reboot).
cat >"$ROOT/etc/systemd/system/e2e-bpffs.service" <<'EOF'
[Unit]
Description=bpffs on /sys/fs/bpf (e2e: nspawn --private-network has none)
DefaultDependencies=no
Before=sysinit.target net-tc-filter.service
ConditionPathIsMountPoint=!/sys/fs/bpf

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'mount -o remount,rw /sys && mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf && mount -o remount,ro /sys'

[Install]
WantedBy=sysinit.target
EOF
mkdir -p "$ROOT/etc/systemd/system/sysinit.target.wants"
ln -s ../e2e-bpffs.service "$ROOT/etc/systemd/system/sysinit.target.wants/e2e-bpffs.service"
# A cgroup of its own (the host has no systemd to make one): two runs never collide.
if [ -d /sys/fs/cgroup/systemd ] || [ -d /sys/fs/cgroup/unified ]; then
  for h in systemd unified; do [ -d "/sys/fs/cgroup/$h" ] && CGROUPS+=("/sys/fs/cgroup/$h/$MACHINE"); done
else
  CGROUPS=("/sys/fs/cgroup/$MACHINE")
fi
mkdir "${CGROUPS[@]}"
boot

# ---------------------------------------------------------------- 3a. install
step "a. apt install ./${DEB1##*/}"
inside /bin/sh -c "cd /srv/e2e && DEBIAN_FRONTEND=noninteractive apt install -y ./${DEB1##*/}" 2>&1 | indent
[ "$(inside dpkg-query -W -f '${Status} ${Version}' net-tc-filter)" = "install ok installed $V1" ] ||
  fail "dpkg does not list net-tc-filter $V1 as installed"
ok "dpkg: net-tc-filter $V1 installed"
expect_active; ok "net-tc-filter.service is active"
[ "$(inside systemctl is-enabled net-tc-filter.service)" = enabled ] || fail "net-tc-filter.service is not enabled"
ok "net-tc-filter.service is enabled"
status=$(inside systemctl status --no-pager -n 0 net-tc-filter.service) || fail "systemctl status failed"
echo "$status" | indent
grep -q '^ *Status: "enforcing' <<<"$status" || fail "systemctl status shows no Status: line starting with \"enforcing\""
ok "systemctl status shows the STATUS= line"

# ---------------------------------------------------------------- 3b. topology
step "b. topology (eth1 <-> netns srv with a TCP server on $DST:$DPORT) and users"
# topology USER: eth1, the netns srv behind it and the server (gone at a
# reboot); returns once the server answers USER.
topology() {
inside /bin/bash -s <<EOF 2>&1 | indent
set -euxo pipefail
ip netns add srv
ip link add eth1 address 02:00:00:00:e2:01 type veth peer name veth-srv address 02:00:00:00:e2:02 netns srv
ip addr add 198.18.0.1/30 dev eth1
ip link set eth1 up
ip -n srv link set lo up
ip -n srv addr add 198.18.0.2/30 dev veth-srv
ip -n srv addr add $DST/32 dev lo
ip -n srv link set veth-srv up
ip route add $DST/32 via 198.18.0.2 dev eth1
ip neigh replace 198.18.0.2 lladdr 02:00:00:00:e2:02 dev eth1 nud permanent
ip -n srv neigh replace 198.18.0.1 lladdr 02:00:00:00:e2:01 dev veth-srv nud permanent
EOF
inside systemd-run --quiet --unit=e2e-server -p NetworkNamespacePath=/run/netns/srv \
  /usr/bin/python3 -c "
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('$DST', $DPORT))
s.listen(512)
while True:
    c, _ = s.accept()
    c.close()
"
inside ip route get "$DST" | grep ' dev eth1 ' >/dev/null || fail "$DST is not routed through eth1"
ok "$DST is routed through eth1"
wait_for 10 "the server to answer $1" server_up "$1"
}
server_up() { [ "$(probe "$1")" = pass ]; }
topology root
inside useradd -M -s /bin/bash agent
inside useradd -M -s /bin/bash bob
info "agent uid $(inside id -u agent), bob uid $(inside id -u bob)"
expect_pass agent "nothing protected yet"
expect_pass bob "nothing protected yet"

# ---------------------------------------------------------------- 3b2. the README's quick start
step "b2. the README's quick start: $QS_PATH ($QS_ADDR as $DST), verify, undo"
printf '%s\n' "$QS_YAML" | indent
www_uid=$(inside id -u www-data) || fail "no www-data user in the container"
printf '%s\n' "$QS_YAML" | put "$QS_PATH"
www_rejected() {
  local r; r=$(probe www-data)
  case $r in reject) return 0 ;; pass) return 1 ;; *) fail "www-data's probe: $r (want a connect that fails at once with No route to host)" ;; esac
}
t0=$(usec)
wait_for 30 "www-data's connection to be refused after the quick-start drop-in" www_rejected
ok "www-data (uid $www_uid) is denied $(fmt_usec $(( $(usec) - t0 ))) s after the file was written"
# The README's promise: a denied curl fails at once, it does not hang. The
# container has no curl: a non-blocking connect as curl makes it, timed
# inside. (bash's /dev/tcp above connects blocking: ~1 s, the SYN's first
# retransmission; see the README's Denied packets.)
out=$(as_user www-data /usr/bin/python3 -c "
import errno, select, socket, time
s = socket.socket(); s.setblocking(False)
t = time.monotonic(); e = s.connect_ex(('$DST', $DPORT))
if e == errno.EINPROGRESS:
    select.select([], [s], [], 5)
    e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
print(errno.errorcode.get(e, e), int((time.monotonic() - t) * 1e6))
") || fail "www-data's non-blocking connect: $out"
read -r ename us <<<"$out"
[ "$ename" = EHOSTUNREACH ] || fail "www-data's non-blocking connect to $DST:$DPORT: $out, want EHOSTUNREACH (an answer, not a timeout)"
ok "www-data's non-blocking connect (as curl's) fails with EHOSTUNREACH after $us µs"
expect_reject agent "not root"
expect_pass root "the drop-in's allow: [root]"
# The interfaces: line keeps every other destination reachable: without it
# eth1 would be default-deny and this SYN dropped too. 198.18.0.2 has no
# listener, so reaching it is a refused connection (bash exits 1), at once.
rc=0; as_user www-data /usr/bin/timeout 2 /bin/bash -c "exec 3<>/dev/tcp/198.18.0.2/$DPORT" 2>/dev/null || rc=$?
[ "$rc" = 1 ] || fail "www-data -> 198.18.0.2:$DPORT (not protected): exit $rc, want 1 (refused: it got there); 124 means dropped: is eth1 default-deny?"
ok "www-data reaches 198.18.0.2 (refused by the server's host, not dropped): eth1 stays default allow"
w=$(prop Warnings)
[ "$w" = 'as 0' ] || fail "the quick start leaves warnings (a lock-down?): $w"
ok "no warnings (D-Bus Warnings: $w)"
rc=0; out=$(inside /bin/sh -c "$QS_EXPLAIN" 2>&1) || rc=$?
[ "$rc" = 3 ] || fail "$QS_EXPLAIN: exit $rc, want 3 (denied): $out"
ok "$QS_EXPLAIN: exit 3: $(head -n 1 <<<"$out")"
rc=0; out=$(inside /bin/sh -c "${QS_EXPLAIN/--user www-data/--user root}" 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "explain --user root: exit $rc, want 0 (allowed): $out"
ok "the same for --user root: exit 0: $(head -n 1 <<<"$out")"
qs_logged() {
  inside journalctl -u net-tc-filter NTF_ACTION=deny -o json --no-pager |
    grep -E '"NTF_USER" *: *"www-data"' | grep -E "\"NTF_DST\" *: *\"$DST\"" >/dev/null
}
wait_for 10 "journalctl -u net-tc-filter NTF_ACTION=deny to list www-data -> $DST" qs_logged
ok "journalctl -u net-tc-filter NTF_ACTION=deny: $(inside journalctl -u net-tc-filter NTF_ACTION=deny -o cat --no-pager | grep -F www-data | tail -n 1)"
inside /bin/sh -c "$QS_UNDO"
t0=$(usec)
wait_for 30 "www-data's connection to pass after '$QS_UNDO'" server_up www-data
ok "$QS_UNDO: www-data connects again $(fmt_usec $(( $(usec) - t0 ))) s later, no command needed"

# ---------------------------------------------------------------- 3c. drop-in, live without a command
step "c. drop $DROPIN: live without any command (file watch)"
gen0=$(prop Generation)
# The journey's drop-in: steps that change it put it back as it was.
put_e2e_dropin() {
	put "$DROPIN" <<EOF
# e2e: only agent may reach $DST on eth1; everything else on eth1 passes.
endpoints:
  - e2e:
      iface: [eth1]
      range: [$DST/32]
      allow: [agent]
interfaces:
  eth1: {default: allow}
EOF
}
put_e2e_dropin
t0=$(usec)
bob_rejected() {
  local r; r=$(probe bob)
  case $r in reject) return 0 ;; pass) return 1 ;; *) fail "bob's probe: $r" ;; esac
}
wait_for 30 "bob's connection to be refused after the drop-in" bob_rejected
ok "bob is denied $(fmt_usec $(( $(usec) - t0 ))) s after the file was written"
expect_pass agent "allowed by the drop-in"
info "generation: $gen0 -> $(prop Generation); status: $(svc StatusText)"

# ---------------------------------------------------------------- 3d. reload, broken drop-ins
step "d. systemctl reload; a broken drop-in is refused and the policy stays; an unknown user matches no one"
inside systemctl reload net-tc-filter || fail "systemctl reload net-tc-filter failed with a valid configuration"
ok "systemctl reload net-tc-filter succeeded"
expect_active
broken_case() { # description; the drop-in on stdin
  local what=$1 out cur
  cur=$(inside journalctl -q -n 1 --show-cursor -o cat | sed -n 's/^-- cursor: //p')
  put "$BROKEN"
  if out=$(inside systemctl reload net-tc-filter 2>&1); then
    fail "systemctl reload succeeded with $what in $BROKEN"
  fi
  ok "systemctl reload fails with $what"
  echo "$out" | indent
  expect_active; ok "service still active"
  local st; st=$(svc StatusText)
  info "status: $st"
  grep -q 'reload failed' <<<"$st" || fail "STATUS= does not say the last reload failed: $st"
  ok "STATUS= says the last reload failed"
  inside journalctl --no-pager -o cat -u net-tc-filter --after-cursor="$cur" | grep -F "${BROKEN##*/}" | sort -u | indent || true
  expect_reject bob "old policy kept"
  expect_pass agent "old policy kept"
}
broken_case "a YAML syntax error" <<'EOF'
endpoints:
  - broken: {iface: [eth1], range: [198.51.100.1/32
EOF
# A name NSS cannot resolve is no reason to stop filtering (SPEC §1 "Failing
# closed"): the set goes live with that name matching no one, degraded.
put "$BROKEN" <<'EOF'
endpoints:
  - broken:
      iface: [eth1]
      range: [198.51.100.1/32]
      allow: [no-such-user-e2e]
EOF
inside systemctl reload net-tc-filter || fail "systemctl reload failed with an unknown user in $BROKEN"
st=$(svc StatusText)
info "status: $st"
grep -q 'no-such-user-e2e' <<<"$st" || fail "STATUS= does not name the user that does not resolve: $st"
[ "$(prop State)" = 's "degraded"' ] || fail "State is $(prop State) with an unknown user, expected degraded"
ok "systemctl reload applies a set with an unknown user: State degraded, STATUS= names it"
inside rm -f "$BROKEN"
inside systemctl reload net-tc-filter || fail "systemctl reload failed after the broken drop-in was removed"
st=$(svc StatusText)
case $st in enforcing*failed*|*no-such-user-e2e*) fail "STATUS= still reports a problem: $st" ;; enforcing*) ;; *) fail "STATUS= is not enforcing: $st" ;; esac
ok "broken drop-in removed: reload succeeds, status: $st"

# ---------------------------------------------------------------- 3e. D-Bus as an unprivileged user
step "e. D-Bus as an unprivileged user (bob)"
out=$(as_user bob busctl call "${BUS[@]}" Status) || fail "busctl call ... Status failed as bob"
[[ $out == "a{sv} "* ]] || fail "Status returned: $out"
ok "Status: ${out:0:200}..."
state_running() {
  out=$(as_user bob busctl get-property "${BUS[@]}" State) || fail "busctl get-property ... State failed as bob"
  case $out in
    's "running"') ;;
    's "starting"'|'s "reloading"') return 1 ;;   # a file-watch reload may still settle
    *) fail "State is $out, expected s \"running\"" ;;
  esac
}
wait_for 10 'State = "running"' state_running
ok "State: $out"
g1=$(prop Generation)
if out=$(as_user bob busctl call "${BUS[@]}" Reload 2>&1); then fail "bob may call Reload: $out"; fi
ok "Reload refused for bob: $out"
[ "$(prop Generation)" = "$g1" ] || fail "Generation changed after bob's refused Reload"
ok "Generation unchanged ($g1)"
as_user bob net-tc-filter status 2>&1 | indent || fail "net-tc-filter status failed as bob"
ok "net-tc-filter status works as bob"
# explain's exit status tells allowed (0) from denied (3), live via Check.
for who in agent:0 bob:3; do
  rc=0; out=$(as_user bob net-tc-filter explain --user "${who%:*}" --dst "$DST" 2>&1) || rc=$?
  [ "$rc" = "${who#*:}" ] || fail "explain --user ${who%:*} --dst $DST: exit $rc, want ${who#*:}: $out"
  ok "explain --user ${who%:*}: exit $rc: $(head -n 1 <<<"$out")"
done

# ---------------------------------------------------------------- 3f. journal
step "f. a denied connection in journalctl -u net-tc-filter NTF_ACTION=deny"
cursor=$(inside journalctl -q -n 1 --show-cursor -o cat | sed -n 's/^-- cursor: //p')
[ -n "$cursor" ] || fail "no journal cursor"
expect_reject bob "for the journal"
bob_uid=$(inside id -u bob)
find_entry() {
  entry=$(inside journalctl -u net-tc-filter NTF_ACTION=deny -o json --no-pager --after-cursor="$cursor" |
          grep -E '"NTF_USER" *: *"bob"' | grep -E "\"NTF_DST\" *: *\"$DST\"" | sed -n 1p) || true
  [ -n "$entry" ]
}
wait_for 10 "a deny entry for bob -> $DST in the journal" find_entry
field() { # KEY: the string value of KEY in $entry, or "<absent>"
  if [[ $entry =~ \"$1\"\ *:\ *\"([^\"]*)\" ]]; then printf '%s' "${BASH_REMATCH[1]}"
  elif [[ $entry =~ \"$1\"\ *: ]]; then printf '<not a string>'
  else printf '<absent>'; fi
}
for k in MESSAGE MESSAGE_ID PRIORITY SYSLOG_IDENTIFIER NTF_ACTION NTF_UID NTF_USER NTF_UNIT NTF_IFACE NTF_SRC \
         NTF_DST NTF_PROTO NTF_SPORT NTF_DPORT NTF_ENDPOINT NTF_RANGE NTF_COUNT; do
  v=$(field "$k"); printf '   %-18s %s\n' "$k" "$v"
  [ "$v" != '<absent>' ] || fail "the deny entry has no $k field: $entry"
done
want() { [ "$(field "$1")" = "$2" ] || fail "$1 is '$(field "$1")', expected '$2'"; }
want NTF_ACTION deny; want NTF_USER bob; want NTF_UID "$bob_uid"; want NTF_DST "$DST"; want NTF_DPORT "$DPORT"
want NTF_IFACE eth1; want NTF_SRC 198.18.0.1; want NTF_ENDPOINT e2e; want NTF_RANGE "$DST/32"
want MESSAGE_ID "$MSGID"; want SYSLOG_IDENTIFIER net-tc-filter; want PRIORITY 4
[[ $(field NTF_COUNT) =~ ^[1-9][0-9]*$ ]] || fail "NTF_COUNT is not a positive number"
ok "every SPEC §4 field is present with the expected values"

# ---------------------------------------------------------------- 3f1. audit mode, a staged candidate
step "f1. mode: audit in journalctl NTF_ACTION=audit; a staged candidate in NTF_STAGED_ACTION=deny"
AUDIT_MSGID=dbb8e410b2b34860a05ce3b0a0df4558
cursor=$(inside journalctl -q -n 1 --show-cursor -o cat | sed -n 's/^-- cursor: //p')
put "$DROPIN" <<EOF
# e2e: agent may reach $DST on eth1; the rest is audited, not dropped.
endpoints:
  - e2e:
      iface: [eth1]
      range: [$DST/32]
      allow: [agent]
      mode: audit
interfaces:
  eth1: {default: allow}
EOF
inside systemctl reload net-tc-filter || fail "systemctl reload failed with mode: audit"
wait_for 30 "bob's connection to pass with mode: audit" server_up bob
ok "bob connects: mode: audit logs what it would drop, drops nothing"
find_audit() {
  entry=$(inside journalctl -u net-tc-filter NTF_ACTION=audit -o json --no-pager --after-cursor="$cursor" |
          grep -E '"NTF_USER" *: *"bob"' | grep -E "\"NTF_DST\" *: *\"$DST\"" | sed -n 1p) || true
  [ -n "$entry" ]
}
wait_for 10 "an audit entry for bob -> $DST in journalctl -u net-tc-filter NTF_ACTION=audit" find_audit
want NTF_ACTION audit; want MESSAGE_ID "$AUDIT_MSGID"; want PRIORITY 5; want NTF_ENDPOINT e2e
ok "journalctl -u net-tc-filter NTF_ACTION=audit: $(field MESSAGE)"
expect_pass agent "allowed, not audited"
if inside journalctl -u net-tc-filter NTF_ACTION=audit -o json --no-pager --after-cursor="$cursor" | grep -E '"NTF_USER" *: *"agent"' >/dev/null; then
  fail "agent's allowed connection was logged as audit"
fi
ok "no audit entry for agent"
# The counters' properties follow at most once a second.
audited_counts() { audited=$(prop Audited); [[ $audited =~ ^t\ [1-9] ]]; }
wait_for 5 "D-Bus Audited to count bob's audited connection" audited_counts
ok "D-Bus Audited: $audited"
# Enforce again: the rest of the journey expects bob dropped.
put_e2e_dropin
inside systemctl reload net-tc-filter || fail "systemctl reload failed"
expect_reject bob "mode: audit removed"

# A candidate that takes agent's access away, staged beside the live set.
inside /usr/bin/install -d -m 0755 -o root -g root /root/candidate
put /root/candidate/net-tc-filter.yml <<EOF
endpoints:
  - e2e-next:
      iface: [eth1]
      range: [$DST/32]
      allow: []
interfaces:
  eth1: {default: allow}
EOF
cursor=$(inside journalctl -q -n 1 --show-cursor -o cat | sed -n 's/^-- cursor: //p')
out=$(inside net-tc-filter stage --config /root/candidate/net-tc-filter.yml --for 10m 2>&1) || fail "net-tc-filter stage failed: $out"
ok "$(head -n 1 <<<"$out")"
expect_pass agent "the live policy still decides"
expect_reject bob "the live policy still decides"
find_staged() {
  entry=$(inside journalctl -u net-tc-filter NTF_STAGED_ACTION=deny -o json --no-pager --after-cursor="$cursor" |
          grep -E '"NTF_USER" *: *"agent"' | sed -n 1p) || true
  [ -n "$entry" ]
}
wait_for 10 "agent's newly denied connection in journalctl -u net-tc-filter NTF_STAGED_ACTION=deny" find_staged
want NTF_ACTION allow; want NTF_STAGED_ACTION deny; want NTF_STAGED_ENDPOINT e2e-next
ok "journalctl -u net-tc-filter NTF_STAGED_ACTION=deny: $(field MESSAGE)"
out=$(inside net-tc-filter staged) || fail "net-tc-filter staged failed: $out"
echo "$out" | indent
grep -q '^newly denied: [1-9]' <<<"$out" || fail "staged does not count agent's newly denied packets"
grep -q 'uid=[0-9]*(agent) .*-> endpoint e2e-next' <<<"$out" || fail "staged does not name agent and e2e-next"
ok "net-tc-filter staged: agent's connections newly denied by e2e-next"
if out=$(as_user bob net-tc-filter unstage 2>&1); then fail "bob may unstage: $out"; fi
ok "unstage refused for bob"
inside net-tc-filter unstage | indent || fail "net-tc-filter unstage failed"
rc=0; inside net-tc-filter staged >/dev/null || rc=$?
[ "$rc" = 3 ] || fail "staged after unstage exits $rc, want 3"
ok "unstaged: staged exits 3"

# ---------------------------------------------------------------- 3f2. metrics
step "f2. Prometheus metrics: net-tc-filter-metrics.socket (not enabled by the package)"
# scrape USER: GET /metrics on 127.0.0.1:9963 over bash's /dev/tcp.
scrape() {
  as_user "$1" /usr/bin/timeout 10 /bin/bash -c 'exec 3<>/dev/tcp/127.0.0.1/9963 && printf "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3 && cat <&3'
}
nothing_on_9963() { ! as_user bob /usr/bin/timeout 2 /bin/bash -c 'exec 3<>/dev/tcp/127.0.0.1/9963' 2>/dev/null; }
s=$(inside systemctl is-enabled net-tc-filter-metrics.socket) || true
[ "$s" = disabled ] || fail "net-tc-filter-metrics.socket is '$s' after install, expected disabled"
ok "the package did not enable net-tc-filter-metrics.socket"
nothing_on_9963 || fail "something listens on 127.0.0.1:9963 without the socket enabled"
ok "nothing listens on 127.0.0.1:9963"
inside systemctl enable net-tc-filter-metrics.socket 2>&1 | indent
# systemd refuses to start a socket while its service runs.
if inside systemctl start net-tc-filter-metrics.socket 2>/dev/null; then fail "systemd started the socket under a running service"; fi
inside systemctl stop net-tc-filter.service
# A real stop with the default on_stop: detach, inside the hardened unit
# (the pin directory is its one writable mount and cannot itself go).
r=$(svc Result); [ "$r" = success ] || fail "systemctl stop: Result=$r (journal: $(inside journalctl -u net-tc-filter -n 5 --no-pager))"
pins=$(inside find /sys/fs/bpf/net-tc-filter -mindepth 1 2>/dev/null) && [ -n "$pins" ] && fail "pins left after a stop with on_stop: detach: $pins"
expect_pass bob "after systemctl stop (on_stop: detach)"
ok "systemctl stop: Result=success, the filter detached"
# Stopped and detached: status says not running (3), explain that nothing
# is filtered rather than a verdict from files nobody enforces.
rc=0; out=$(inside net-tc-filter status 2>&1) || rc=$?
[ "$rc" = 3 ] || fail "status after systemctl stop: exit $rc, want 3: $out"
out=$(inside net-tc-filter explain --user bob --dst "$DST" 2>&1) || fail "explain after systemctl stop failed: $out"
grep -q '^no daemon running: nothing is filtered' <<<"$out" || fail "explain after systemctl stop: $out"
ok "after stop: status exits 3, explain: $(head -n 1 <<<"$out")"
inside systemctl start net-tc-filter-metrics.socket net-tc-filter.service
expect_active; ok "enabled the socket; stop, then start socket and service (hardened unit unchanged)"
metrics_ok() {
  m=$(scrape bob) || return 1
  grep -q '^net_tc_filter_state{state="running"} 1$' <<<"$m"
}
wait_for 10 "net_tc_filter_state running from the socket, as bob" metrics_ok
# Counts start with the daemon: a denied connection after the start.
expect_reject bob "for the metrics"
m=$(scrape bob) || fail "scrape as bob failed"
grep -E '^HTTP/1.. 200' <<<"$m" >/dev/null || fail "no 200 OK: $(head -n 1 <<<"$m")"
for re in '^net_tc_filter_interface_info\{.*interface="eth1".*\} 1$' '^net_tc_filter_ranges\{family="ipv4"\} [1-9]' \
          '^net_tc_filter_packets_total\{action="deny",interface="eth1"\} [1-9]' \
          '^net_tc_filter_endpoint_packets_total\{action="deny",endpoint="[^"]+"\} [1-9]' \
          '^net_tc_filter_build_info\{version=' '^process_open_fds '; do
  grep -Eq "$re" <<<"$m" || fail "the scrape lacks $re:$(echo; grep '^net_tc' <<<"$m" | indent)"
done
grep -E '^net_tc_filter_(interface_info|ranges|packets_total|endpoint_packets_total|generation|state\{state="running"|reloads_total)' <<<"$m" | indent
ok "metrics served on the socket systemd passed (accept() works under the unit's hardening)"

# ---------------------------------------------------------------- 3f3. units
step "f3. unit: principals: two services of agent, only one allowed, restarted 20 times; a scope; a slice"
# Each service's first and only act is a connect that gives up at 0.9 s,
# before the SYN's first retransmission (1 s): it passes only if its very
# first packet, sent by a process of a cgroup systemd just made, does.
unit_probe="/usr/bin/timeout 0.9 /bin/bash -c 'exec 3<>/dev/tcp/$DST/$DPORT'"
for u in e2e-agent e2e-other; do
  put "/etc/systemd/system/$u.service" <<EOF
[Unit]
StartLimitIntervalSec=0
[Service]
Type=oneshot
User=agent
ExecStart=$unit_probe
EOF
done
inside systemctl daemon-reload
saved_dropin=$(inside cat "$DROPIN")
put "$DROPIN" <<EOF
# e2e: only the unit e2e-agent.service may reach $DST on eth1, whatever its user.
endpoints:
  - e2e:
      iface: [eth1]
      range: [$DST/32]
      allow: [unit:e2e-agent.service]
interfaces:
  eth1: {default: allow}
EOF
other_dropped() { ! inside systemctl start e2e-other.service 2>/dev/null; }
wait_for 30 "e2e-other.service (user agent) to be dropped" other_dropped
ok "e2e-other.service, run by agent, is dropped: agent's uid alone no longer passes"
expect_reject agent "a transient unit of agent is not e2e-agent.service"
restarts=20 failed=0
for i in $(seq "$restarts"); do
  inside systemctl restart e2e-agent.service 2>/dev/null || failed=$((failed + 1))
done
[ "$failed" = 0 ] || fail "$failed of $restarts restarts of e2e-agent.service had their first SYN dropped (journal: $(inside journalctl -u net-tc-filter NTF_ACTION=deny -o cat --no-pager | tail -n 3))"
ok "systemctl restart e2e-agent.service $restarts times: every run's first SYN passed (a new cgroup each time)"
other_logged() {
  inside journalctl -u net-tc-filter NTF_ACTION=deny NTF_UNIT=e2e-other.service -o cat --no-pager | grep . >/dev/null
}
wait_for 10 "a deny entry with NTF_UNIT=e2e-other.service" other_logged
ok "journal: $(inside journalctl -u net-tc-filter NTF_ACTION=deny NTF_UNIT=e2e-other.service -o cat --no-pager | tail -n 1)"
rc=0; ns systemd-run --quiet --scope --uid=agent -- /bin/sh -c "$unit_probe" 2>/dev/null || rc=$?
[ "$rc" = 124 ] || fail "a systemd-run --scope of agent: exit $rc, want 124 (dropped)"
ok "a systemd-run --scope of agent is dropped"
out=$(inside net-tc-filter status) || fail "status failed: $out"
grep -q 'e2e-agent.service (/system.slice/e2e-agent.service' <<<"$out" || fail "status does not list the unit: $out"
ok "status: $(grep -F e2e-agent.service <<<"$out" | sed 's/^ *//')"
rc=0; out=$(inside net-tc-filter explain --user agent --unit e2e-agent.service --dst "$DST" 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "explain --user agent --unit e2e-agent.service: exit $rc, want 0: $out"
ok "explain --user agent --unit e2e-agent.service: $out"
# A slice: every unit in it, whatever it is called.
put "$DROPIN" <<EOF
endpoints:
  - e2e:
      iface: [eth1]
      range: [$DST/32]
      allow: [unit:e2e.slice]
interfaces:
  eth1: {default: allow}
EOF
in_slice() { inside systemd-run --quiet --wait --collect --slice=e2e -p User=agent -- /bin/sh -c "$unit_probe"; }
wait_for 30 "a unit of e2e.slice to pass" in_slice
other_dropped || fail "e2e-other.service (system.slice) passes with only e2e.slice allowed"
ok "unit:e2e.slice: a transient unit in it passes, e2e-other.service (system.slice) is dropped"
printf '%s\n' "$saved_dropin" | put "$DROPIN"
agent_passes() { [ "$(probe agent)" = pass ]; }
wait_for 30 "agent to pass again under the earlier drop-in" agent_passes
ok "the earlier drop-in is back"

# ---------------------------------------------------------------- 3g. upgrade under load
step "g. upgrade to ${DEB2##*/} while bob and agent probe every 50 ms"
# A connect every 50 ms; each attempt waits 3.5 s at most (the SYN and its
# retransmissions at 1 s and 3 s; a denied one fails at once, answered by
# the filter), so a moment unfiltered would let one through.
PROBE_PY='
import errno, os, select, socket, sys, time
dst, stop = ("'"$DST"'", '"$DPORT"'), "/run/ntf-e2e/stop"
attempts = ok = refused = timedout = 0
pending = {}
print("started", flush=True)
nxt = time.monotonic(); hard_end = nxt + 600
while True:
    now = time.monotonic()
    stopping = os.path.exists(stop) or now > hard_end
    if stopping and not pending:
        break
    if not stopping and now >= nxt:
        s = socket.socket(); s.setblocking(False)
        e = s.connect_ex(dst)
        attempts += 1; nxt = now + 0.05
        if e in (0, errno.EINPROGRESS): pending[s] = now
        else: refused += 1; s.close()
    _, w, _ = select.select([], list(pending), [], 0.01)
    for s in w:
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0: ok += 1
        else: refused += 1
        s.close(); del pending[s]
    for s, t in list(pending.items()):
        if now - t > 3.5:
            timedout += 1; s.close(); del pending[s]
print("attempts=%d ok=%d refused=%d timeout=%d" % (attempts, ok, refused, timedout), flush=True)
'
inside install -d -m 0755 /run/ntf-e2e
pid0=$(svc MainPID)
for u in bob agent; do
  as_user "$u" /usr/bin/python3 -c "$PROBE_PY" >"$WORK/probe-$u.out" 2>&1 &
  BG_PIDS+=($!)
done
probes_started() { grep -q started "$WORK/probe-bob.out" && grep -q started "$WORK/probe-agent.out"; }
wait_for 10 "the probe loops to start" probes_started
sleep 1
t0=$(usec)
inside /bin/sh -c "cd /srv/e2e && DEBIAN_FRONTEND=noninteractive apt install -y ./${DEB2##*/}" 2>&1 | indent
info "apt install took $(fmt_usec $(( $(usec) - t0 ))) s"
sleep 2   # keep probing while the new daemon settles
inside touch /run/ntf-e2e/stop
for pid in "${BG_PIDS[@]}"; do wait "$pid" || fail "a probe loop failed: $(cat "$WORK"/probe-*.out)"; done
BG_PIDS=()
counts() { # USER -> "attempts ok refused timeout"
  sed -n 's/^attempts=\([0-9]*\) ok=\([0-9]*\) refused=\([0-9]*\) timeout=\([0-9]*\)$/\1 \2 \3 \4/p' "$WORK/probe-$1.out"
}
read -r b_att b_ok b_ref b_to <<<"$(counts bob)" || fail "no result from bob's probe loop: $(cat "$WORK/probe-bob.out")"
read -r a_att a_ok a_ref a_to <<<"$(counts agent)" || fail "no result from agent's probe loop: $(cat "$WORK/probe-agent.out")"
info "bob:   $b_att attempts, $b_ok connected, $b_ref refused, $b_to timed out"
info "agent: $a_att attempts, $a_ok connected, $a_ref refused, $a_to timed out"
[ "$b_att" -ge 40 ] && [ "$a_att" -ge 40 ] || fail "the probe loops made too few attempts"
[ "$b_ok" = 0 ] || fail "bob connected $b_ok times during the upgrade: the filter had a gap"
ok "bob: 0 connections during the upgrade"
[ "$a_ok" = "$a_att" ] || fail "agent connected only $a_ok of $a_att times during the upgrade"
ok "agent: every attempt connected"
[ "$(inside dpkg-query -W -f '${Status} ${Version}' net-tc-filter)" = "install ok installed $V2" ] ||
  fail "dpkg does not list net-tc-filter $V2 as installed"
ok "dpkg: net-tc-filter $V2 installed"
expect_active; ok "net-tc-filter.service is active"
pid1=$(svc MainPID)
[ "$pid1" != "$pid0" ] || fail "the daemon was not restarted by the upgrade (MainPID $pid0)"
ok "daemon restarted (MainPID $pid0 -> $pid1)"
ver=$(inside net-tc-filter version)
uv=${V2#*:}; uv=${uv%-*}
[[ $ver == *"$uv"* ]] || fail "net-tc-filter version says '$ver', expected $uv"
ok "net-tc-filter version: $ver"
expect_reject bob "after the upgrade"
expect_pass agent "after the upgrade"
wait_for 10 "metrics from the socket after the upgrade" metrics_ok
ok "metrics served after the upgrade (the socket was handed to the new daemon)"

# ---------------------------------------------------------------- 3h. reboot with broken files
step "h. broken drop-in, real reboot (nothing pinned): the last good set is enforced until the files are fixed"
LG=/var/lib/net-tc-filter
[ "$(inside stat -c '%a %U' "$LG")" = "700 root" ] || fail "$LG is not root's with mode 0700: $(inside stat -c '%a %U' "$LG")"
saved=$LG/last-good/config/conf.d/${DROPIN##*/}
inside cmp "$saved" "$DROPIN" || fail "the last good set does not hold $DROPIN as it went live"
ok "$LG (root's, 0700) holds the live set: $(inside readlink "$LG/last-good")"
good=$(inside cat "$DROPIN")
state_is() { local s; s=$(prop State 2>/dev/null) || return 1; [ "$s" = "s \"$1\"" ]; }
put "$DROPIN" <<EOF
endpoints:
  - e2e: {iface: [eth1], range: [$DST/32
EOF
wait_for 10 'State = "degraded" after the drop-in was broken' state_is degraded
printf '%s\n' "$good" | inside cmp -s "$saved" /dev/stdin || fail "the broken drop-in replaced the last good set"
ok "the watcher's reload failed; the last good set is unchanged"
info "generation before the reboot: $(prop Generation)"
t0=$(usec)
ns systemctl reboot
for i in $(seq 300); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$NSPAWN_PID" 2>/dev/null && fail "the container did not reboot in 30 s"
rc=0; wait "$NSPAWN_PID" || rc=$?
NSPAWN_PID= LEADER=
ok "systemctl reboot: systemd-nspawn exited ($rc) after $(fmt_usec $(( $(usec) - t0 ))) s; booting the same root again"
boot
expect_active; ok "net-tc-filter.service is active after the reboot"
wait_for 15 'State = "degraded" after the reboot' state_is degraded
g=$(prop Generation)
[ "${g#* }" = 1 ] || fail "Generation is $g after the reboot, not 1: something was pinned and adopted"
ok "State degraded, Generation 1 (started afresh: nothing was pinned)"
status=$(inside systemctl status --no-pager -n 0 net-tc-filter.service) || true
echo "$status" | indent
for want in 'the configuration files are invalid' "${DROPIN##*/}:" 'enforcing the last good set of'; do
  grep -q "^ *Status: .*$want" <<<"$status" || fail "systemctl status shows no Status: with '$want'"
done
ok "systemctl status says why: the files are invalid and the last good set is enforced"
inside journalctl -b -u net-tc-filter --no-pager -o cat | grep -F 'enforcing the last good set' | indent ||
  fail "the journal does not say that the last good set is enforced"
topology agent
wait_for 10 "bob's connection to be refused by the last good set" bob_rejected
ok "bob is denied (last good set, on eth1 created after the start)"
expect_pass agent "last good set"
t0=$(usec)
printf '%s\n' "$good" | put "$DROPIN"
wait_for 10 'State = "running" after the drop-in was fixed' state_is running
st=$(svc StatusText)
case $st in *failed*|*invalid*|*"last good"*) fail "STATUS= still reports the broken files: $st" ;; esac
ok "fixed without a command: running $(fmt_usec $(( $(usec) - t0 ))) s after the write; status: $st"

# ---------------------------------------------------------------- 3i. remove, purge
step "i. apt remove net-tc-filter, then apt purge"
inside /usr/bin/env DEBIAN_FRONTEND=noninteractive apt remove -y net-tc-filter 2>&1 | indent
s=$(inside systemctl is-active net-tc-filter.service) && fail "net-tc-filter.service is still active after apt remove"
ok "net-tc-filter.service is $s"
s=$(inside systemctl is-active net-tc-filter-metrics.socket) && fail "net-tc-filter-metrics.socket is still active after apt remove"
nothing_on_9963 || fail "something still listens on 127.0.0.1:9963 after apt remove"
ok "net-tc-filter-metrics.socket is $s; nothing listens on 127.0.0.1:9963"
ls=$(svc LoadState)
case $ls in not-found|masked) ok "unit LoadState=$ls" ;; *) fail "unit LoadState=$ls after apt remove" ;; esac
inside test ! -e /sys/fs/bpf/net-tc-filter || fail "/sys/fs/bpf/net-tc-filter is still there after apt remove"
ok "/sys/fs/bpf/net-tc-filter is gone"
inside test ! -e /usr/bin/net-tc-filter || fail "/usr/bin/net-tc-filter is still there"
expect_pass bob "nothing filters after apt remove"
inside test -f /etc/net-tc-filter/net-tc-filter.yml || fail "/etc/net-tc-filter/net-tc-filter.yml was removed by apt remove"
inside test -f "$DROPIN" || fail "$DROPIN was removed by apt remove"
ok "/etc/net-tc-filter is kept (config and drop-in)"
inside test -L /var/lib/net-tc-filter/last-good || fail "/var/lib/net-tc-filter/last-good was removed by apt remove"
ok "/var/lib/net-tc-filter is kept (the last good set)"
[ "$(inside dpkg-query -W -f '${Status}' net-tc-filter)" = "deinstall ok config-files" ] ||
  fail "dpkg status after remove: $(inside dpkg-query -W -f '${Status}' net-tc-filter)"
ok "dpkg: config-files"
inside /usr/bin/env DEBIAN_FRONTEND=noninteractive apt purge -y net-tc-filter 2>&1 | indent
inside test ! -e /etc/net-tc-filter || fail "/etc/net-tc-filter is still there after apt purge"
ok "/etc/net-tc-filter is gone"
inside test ! -e /var/lib/net-tc-filter || fail "/var/lib/net-tc-filter is still there after apt purge"
ok "/var/lib/net-tc-filter is gone"
left=$(inside find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled \
  /var/lib/systemd/deb-systemd-helper-masked -name 'net-tc-filter*' 2>/dev/null || true)
[ -z "$left" ] || fail "systemd state left after purge: $left"
ok "no enable/mask state left in /etc/systemd/system"
if inside dpkg-query -W -f '${Status}' net-tc-filter >/dev/null 2>&1; then
  st=$(inside dpkg-query -W -f '${Status}' net-tc-filter)
  [ "$st" = "unknown ok not-installed" ] || fail "dpkg status after purge: $st"
fi
ok "dpkg: not installed"
step_end
