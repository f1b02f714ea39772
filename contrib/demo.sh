#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make demo: the daemon in a throwaway network namespace pair, showing an
# allowed and a denied user reaching a "metadata service" address. Only the
# namespaces created here carry traffic; everything is removed at the end.
set -euo pipefail
BIN=$(realpath "${1:-./net-tc-filter}")
id=$$
C=ntfdemo-c-$id S=ntfdemo-s-$id
DIR=$(mktemp -d /tmp/ntfdemo.XXXXXX)
PIN=/sys/fs/bpf/ntfdemo-$id
cleanup() {
  [ -n "${DPID:-}" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
  [ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null || true
  ip netns del "$C" 2>/dev/null || true
  ip netns del "$S" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

ip netns add "$C"; ip netns add "$S"
ip -n "$C" link add eth0 address 02:00:00:00:00:01 type veth peer name eth0 netns "$S" address 02:00:00:00:00:02
ip -n "$C" addr add 198.18.0.1/30 dev eth0; ip -n "$S" addr add 198.18.0.2/30 dev eth0
ip -n "$C" link set eth0 up; ip -n "$S" link set eth0 up; ip -n "$S" link set lo up
ip -n "$S" addr add 169.254.169.254/32 dev lo
ip -n "$C" route add 169.254.169.254/32 via 198.18.0.2
ip -n "$C" neigh replace 198.18.0.2 lladdr 02:00:00:00:00:02 dev eth0 nud permanent
ip -n "$S" neigh replace 198.18.0.1 lladdr 02:00:00:00:00:01 dev eth0 nud permanent

# A tiny "metadata service": answers each TCP connection on port 80.
nsenter --net=/run/netns/"$S" -- python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("169.254.169.254", 80)); s.listen()
while True:
    c, _ = s.accept(); c.sendall(b"instance credentials\n"); c.close()' &
SPID=$!

fetch() { # uid; what the connection said goes to $DIR/fetch.err
  nsenter --net=/run/netns/"$C" --setuid "$1" --setgid "$1" -- \
    timeout 2 bash -c 'exec 3<>/dev/tcp/169.254.169.254/80 && head -1 <&3' 2>"$DIR/fetch.err"
}
# Nothing is filtered yet: wait until the service answers at all.
for _ in $(seq 50); do fetch 0 >/dev/null && break; sleep 0.1; done

chmod 755 "$DIR"; mkdir -m 755 "$DIR/conf.d"
cat > "$DIR/net-tc-filter.yml" <<YML
# Only uid 1000 (the "agent") may reach the metadata service on eth0;
# everything else on eth0 is allowed.
interfaces:
  eth0: {default: allow}
log:
  decisions: all
endpoints:
  - imds:
      iface: [eth0]
      range: [169.254.169.254/32]
      allow: ["uid:1000"]
YML
echo "== net-tc-filter check"
"$BIN" check --config "$DIR/net-tc-filter.yml"
echo "== net-tc-filter run (in the demo namespace)"
nsenter --net=/run/netns/"$C" -- "$BIN" run --config "$DIR/net-tc-filter.yml" --pin-dir "$PIN" --state-dir "$DIR/state" 2>"$DIR/daemon.log" &
DPID=$!
for _ in $(seq 100); do grep -q 'msg="started:' "$DIR/daemon.log" 2>/dev/null && break; sleep 0.1; done
grep 'msg="started:' "$DIR/daemon.log"
ok=0
echo "== uid 1000 (allowed) connects to 169.254.169.254:80"
if out=$(fetch 1000); then echo "   got: $out"; else echo "   FAILED: uid 1000 was blocked"; ok=1; fi
echo "== uid 1001 (not allowed) connects to 169.254.169.254:80"
if out=$(fetch 1001); then echo "   FAILED: uid 1001 got through: $out"; ok=1; else
  # A denied local sender is told at once (ICMP administratively
  # prohibited): connect fails with "No route to host".
  why=$(sed -n 's/.*connect: //p' "$DIR/fetch.err" | sed -n 1p)
  echo "   blocked (${why:-connection timed out})"
fi
sleep 0.3
echo "== decision log"
# sed reads to the end: a reader that stops early (head) could kill grep
# with SIGPIPE, which pipefail turns into the demo's failure.
grep -E "allowed egress|denied egress" "$DIR/daemon.log" | sed -n '1,6s/^/   /p'
kill -INT "$DPID"; wait "$DPID" || true; DPID=
if [ -e "$PIN" ]; then echo "pins left behind at $PIN"; ok=1; else echo "== stopped: filter detached, pins removed"; fi
exit $ok
