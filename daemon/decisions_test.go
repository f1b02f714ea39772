// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"net/netip"
	"testing"

	"github.com/nettcfilter/net-tc-filter/bpf"
)

// The journal's MESSAGE is all that journalctl shows by default, so it
// names the sender's unit whenever the decision log knows it.
func TestDecisionMessage(t *testing.T) {
	src, dst := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("169.254.169.254")
	tcp := bpf.KernelDecision{Src: src, Dst: dst, Sport: 51234, Dport: 80, Proto: 6, UID: 33}
	allowedV6 := bpf.KernelDecision{Allowed: true, Src: netip.MustParseAddr("fd00::5"), Dst: netip.MustParseAddr("fd00::1"), Proto: 58, UID: 0}
	audited := tcp
	audited.Audit = true
	unowned := bpf.KernelDecision{Unowned: true, Src: src, Dst: dst, Sport: 68, Dport: 67, Proto: 17}
	for _, tc := range []struct {
		name string
		d    LoggedDecision
		want string
	}{
		{"user and unit", LoggedDecision{KernelDecision: tcp, User: "www-data", Unit: "webapp.service", Iface: "eth0", Endpoints: []string{"imdsv2"}},
			"denied egress uid=33(www-data) unit=webapp.service 10.0.0.5:51234 -> 169.254.169.254:80/tcp on eth0 (endpoint imdsv2)"},
		{"unit, no user name", LoggedDecision{KernelDecision: tcp, Unit: "session-4.scope", Iface: "eth0"},
			"denied egress uid=33 unit=session-4.scope 10.0.0.5:51234 -> 169.254.169.254:80/tcp on eth0 (default)"},
		{"unit unknown", LoggedDecision{KernelDecision: tcp, User: "www-data", Iface: "eth0", Endpoints: []string{"a", "b"}},
			"denied egress uid=33(www-data) 10.0.0.5:51234 -> 169.254.169.254:80/tcp on eth0 (endpoint a, b)"},
		{"allowed, no ports", LoggedDecision{KernelDecision: allowedV6, User: "root", Unit: "chronyd.service", Iface: "ens5"},
			"allowed egress uid=0(root) unit=chronyd.service fd00::5 -> fd00::1/icmpv6 on ens5 (default)"},
		{"unowned", LoggedDecision{KernelDecision: unowned, Iface: "eth0"},
			"denied egress unowned 10.0.0.5:68 -> 169.254.169.254:67/udp on eth0 (default)"},
		{"audited by an endpoint", LoggedDecision{KernelDecision: audited, User: "www-data", Iface: "eth0", Endpoints: []string{"imds-rollout"}},
			"audit: would deny egress uid=33(www-data) 10.0.0.5:51234 -> 169.254.169.254:80/tcp on eth0 (endpoint imds-rollout, mode: audit, passed)"},
		{"audited by the default", LoggedDecision{KernelDecision: audited, Iface: "eth0"},
			"audit: would deny egress uid=33 10.0.0.5:51234 -> 169.254.169.254:80/tcp on eth0 (default, mode: audit, passed)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.d.Message(); got != tc.want {
				t.Errorf("Message() = %q\n            want %q", got, tc.want)
			}
		})
	}
}
