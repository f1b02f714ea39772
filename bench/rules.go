// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// RuleSet is one policy, written the same way for every filter: N
// distinct (uid, range) pairs, each range reachable only by its uid, all
// else allowed. The allowed user owns the last range (the last rule for
// iptables); the other ranges belong to uids nobody uses. AlsoAllow adds a
// second uid to the last range (the reload benchmark's changed policy).
type RuleSet struct {
	N         int
	Allowed   int // uid owning the last range
	AlsoAllow int // a second uid allowed to the last range; 0: none
}

// firstOtherUID is where the uids of the other ranges start.
const firstOtherUID = 300000

// Range is the i-th protected range, a /30 in ProtectedNet.
func Range(i int) netip.Prefix {
	base := ProtectedNet.Addr().As4()
	v := binary.BigEndian.Uint32(base[:]) + uint32(4*i)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.PrefixFrom(netip.AddrFrom4(b), 30)
}

// Target is the address the allowed user sends to: in the last range.
func (rs RuleSet) Target() netip.Addr { return Range(rs.N - 1).Addr().Next() }

func (rs RuleSet) owners(i int) []int {
	if i < rs.N-1 {
		return []int{firstOtherUID + i}
	}
	if rs.AlsoAllow != 0 {
		return []int{rs.Allowed, rs.AlsoAllow}
	}
	return []int{rs.Allowed}
}

// Check that the ranges fit in ProtectedNet.
func (rs RuleSet) validate() error {
	if rs.N < 1 || !ProtectedNet.Contains(Range(rs.N-1).Addr()) {
		return fmt.Errorf("rule set of %d ranges does not fit in %s", rs.N, ProtectedNet)
	}
	return nil
}

// Files is a configuration set: file contents by path relative to the
// main file's directory.
type Files map[string][]byte

// MainFile is the main configuration file's name; drop-ins go to conf.d/.
const MainFile = "net-tc-filter.yml"

// PerDropIn is how many endpoints one drop-in holds: large policies are
// generated, a site or a team per file, so that an edit rewrites one file.
const PerDropIn = 1000

// Ours is the daemon's configuration: one endpoint per range, PerDropIn to
// a drop-in, the settings in the main file. The allowed user's range is
// the last one, so a change of its principals rewrites the last drop-in.
func (rs RuleSet) Ours() Files {
	cfg := Files{MainFile: []byte(fmt.Sprintf("interfaces:\n  %s: {default: allow}\nlog:\n  decisions: denied\n  rate: %d\n", Iface, LogRate))}
	for first := 0; first < rs.N; first += PerDropIn {
		var b strings.Builder
		b.Grow(PerDropIn * 90)
		b.WriteString("endpoints:\n")
		for i := first; i < min(first+PerDropIn, rs.N); i++ {
			fmt.Fprintf(&b, "  - r%d:\n      iface: [%s]\n      range: [%s]\n      allow: [", i, Iface, Range(i))
			for j, u := range rs.owners(i) {
				if j > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "\"uid:%d\"", u)
			}
			b.WriteString("]\n")
		}
		cfg[fmt.Sprintf("conf.d/%06d.yml", first/PerDropIn)] = []byte(b.String())
	}
	return cfg
}

// LogRate is the decision log rate the daemon's configurations set (the
// default, written out so the footprint check knows it).
const LogRate = 50

// HarmlessYAML is a configuration that protects nothing (like the one the
// package installs): the daemon's idle footprint.
func HarmlessYAML() Files {
	return Files{MainFile: []byte("log:\n  level: info\n  decisions: denied\n  rate: 50\non_stop: detach\n")}
}

// IptablesRestore is the same policy for iptables-restore: one rule per
// range in OUTPUT, `-d RANGE -m owner ! --uid-owner UID -j DROP`, the
// allowed user's range last, so its packets walk every rule.
func (rs RuleSet) IptablesRestore() []byte {
	var b strings.Builder
	b.Grow(rs.N * 80)
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for i := range rs.N {
		fmt.Fprintf(&b, "-A OUTPUT -o %s -d %s", Iface, Range(i))
		for _, u := range rs.owners(i) {
			fmt.Fprintf(&b, " -m owner ! --uid-owner %d", u)
		}
		b.WriteString(" -j DROP\n")
	}
	b.WriteString("COMMIT\n")
	return []byte(b.String())
}

// NftTable is the table name the nft variant uses.
const NftTable = "ntfb"

// Nft is the same policy for `nft -f`: a set of protected ranges, a set of
// `meta skuid . ip daddr` pairs (interval), and one rule. The file
// replaces the table in one transaction.
func (rs RuleSet) Nft() []byte {
	var b strings.Builder
	b.Grow(rs.N * 60)
	fmt.Fprintf(&b, "table inet %s {}\ndelete table inet %s\ntable inet %s {\n", NftTable, NftTable, NftTable)
	b.WriteString("  set prot {\n    type ipv4_addr; flags interval\n    elements = {\n")
	for i := range rs.N {
		fmt.Fprintf(&b, "      %s,\n", Range(i))
	}
	b.WriteString("    }\n  }\n  set allow {\n    typeof meta skuid . ip daddr; flags interval\n    elements = {\n")
	for i := range rs.N {
		for _, u := range rs.owners(i) {
			fmt.Fprintf(&b, "      %d . %s,\n", u, Range(i))
		}
	}
	b.WriteString("    }\n  }\n")
	fmt.Fprintf(&b, "  chain out {\n    type filter hook output priority filter; policy accept;\n    oifname %q ip daddr @prot meta skuid . ip daddr != @allow drop\n  }\n}\n", Iface)
	return []byte(b.String())
}
