#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Tests the Ansible role: ansible-playbook --syntax-check, ansible-lint
# (production profile), and a real run of the role's template with its
# validate= helper against a private copy of a configuration set: a good
# drop-in is installed and the whole set passes `net-tc-filter check`; a
# bad one is refused with every error, and the installed file is left
# byte for byte as it was. Installs ansible and ansible-lint with apt when
# missing. Needs root (the configuration must be root-owned).
# NTF_TEST_BINARY: a built net-tc-filter to use instead of building one.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$here"

if ! command -v ansible-playbook >/dev/null || ! command -v ansible-lint >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ansible ansible-lint
fi
export ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_INVENTORY_UNPARSED_WARNING=False ANSIBLE_NOCOLOR=1

ansible-playbook --syntax-check -i inventory.example.yml site.yml
ansible-lint --nocolor

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
chmod 0755 "$T"
bin=${NTF_TEST_BINARY:-}
if [ -z "$bin" ]; then
	(cd "$root" && go build -o "$T/net-tc-filter" ./cmd/net-tc-filter)
	bin=$T/net-tc-filter
fi
export NET_TC_FILTER="$bin"
helper=$here/roles/net_tc_filter/files/net-tc-filter-validate-dropin

# The "live" set: the package's main file and someone else's drop-in.
etc=$T/etc
mkdir -m 0755 "$etc" "$etc/conf.d"
install -m 0644 "$root/conf/net-tc-filter.yml" "$etc/net-tc-filter.yml"
install -m 0644 test/live-dropin.yml "$etc/conf.d/10-other.yml"
dest=$etc/conf.d/50-ansible.yml

# The role's own template task, as an ad-hoc run with the role's
# defaults and a vars file; validate= as in tasks/main.yml.
render() {
	ansible localhost -i localhost, -c local -m ansible.builtin.template \
		-e @roles/net_tc_filter/defaults/main.yml -e "@$1" \
		-a "src=roles/net_tc_filter/templates/50-ansible.yml.j2 dest=$dest owner=root group=root mode=0644 validate='$helper --config $etc/net-tc-filter.yml 50-ansible.yml %s'"
}
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== the role's defaults render a valid drop-in that protects nothing"
render roles/net_tc_filter/defaults/main.yml >"$T/out" 2>&1 || { cat "$T/out"; fail "defaults refused"; }

echo "== a good drop-in is installed, and the whole set is valid"
render test/good.yml >"$T/out" 2>&1 || { cat "$T/out"; fail "good drop-in refused"; }
[ "$(stat -c '%U:%G %a' "$dest")" = "root:root 644" ] || fail "drop-in is $(stat -c '%U:%G %a' "$dest")"
"$bin" check --config "$etc/net-tc-filter.yml" >"$T/check" 2>&1 || { cat "$T/check"; fail "installed set invalid"; }
grep -q '169.254.169.254/32' "$T/check" || fail "the role's endpoint is not in the policy"
grep -q '10.255.0.0/16' "$T/check" || fail "the other drop-in is not in the policy"
cp -p "$dest" "$T/before"

echo "== a bad drop-in is refused with every error, the installed one untouched"
if render test/bad.yml >"$T/out" 2>&1; then
	cat "$T/out"
	fail "bad drop-in accepted"
fi
grep -q 'no-such-user-ntf' "$T/out" || { cat "$T/out"; fail "unknown user not reported"; }
grep -q '169.254.169.300' "$T/out" || { cat "$T/out"; fail "bad range not reported"; }
grep -q '50-ansible.yml (candidate)' "$T/out" || { cat "$T/out"; fail "errors do not name the candidate"; }
cmp "$dest" "$T/before" || fail "the installed drop-in changed"

echo "== the helper judges the candidate with the live set, whatever the candidate's own mode"
install -m 0600 test/good.yml "$T/cand.yml" # not a drop-in: YAML of the role's vars
if "$helper" --config "$etc/net-tc-filter.yml" 50-ansible.yml "$T/cand.yml" >"$T/out" 2>&1; then
	fail "role variables accepted as a drop-in"
fi
grep -q 'unknown key "net_tc_filter_endpoints"' "$T/out" || { cat "$T/out"; fail "wrong error"; }
install -m 0600 "$dest" "$T/cand.yml"
"$helper" --config "$etc/net-tc-filter.yml" 50-ansible.yml "$T/cand.yml" >"$T/out" 2>&1 || { cat "$T/out"; fail "0600 candidate refused"; }
grep -q '10.255.0.0/16' "$T/out" || fail "the live drop-in was not part of the check"
chmod 0666 "$etc/conf.d/10-other.yml"
if "$helper" --config "$etc/net-tc-filter.yml" 50-ansible.yml "$T/cand.yml" >"$T/out" 2>&1; then
	fail "a live drop-in writable by others passed"
fi
grep -q "$etc/conf.d/10-other.yml: refusing" "$T/out" || { cat "$T/out"; fail "unsafe live drop-in not named"; }

echo "ansible: all passed"
