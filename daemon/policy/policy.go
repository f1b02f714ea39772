// SPDX-License-Identifier: Apache-2.0

// Package policy turns a configuration into the neutral, resolved policy the
// kernel enforces, and holds the reference Decide() that the kernel program
// is tested against. It knows nothing of maps or programs: package bpf
// encodes a Policy into its own layout.
package policy

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"iter"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// Owner is who sent a packet: a socket's uid and the cgroup it was created
// in, or no socket at all.
type Owner struct {
	UID     uint32
	Unowned bool // forwarded or kernel-made without a socket; UID is meaningless
	// Cgroup is the socket's cgroup v2 path below the cgroup2 mount
	// ("/system.slice/foo.service"); "": not known, which no cgroup
	// principal matches.
	Cgroup string
}

func (o Owner) String() string {
	if o.Unowned {
		return "unowned"
	}
	switch {
	case o.Cgroup != "" && o.UID == config.UnknownUID:
		return "cgroup " + o.Cgroup // its uid not asked about: one no allow list names
	case o.Cgroup != "":
		return fmt.Sprintf("uid:%d in cgroup %s", o.UID, o.Cgroup)
	}
	return fmt.Sprintf("uid:%d", o.UID)
}

// Principals is a resolved allow list.
//
// A large set holds one per endpoint, so it is 40 bytes: the cgroup
// paths, which most allow lists do not name, are behind a pointer.
type Principals struct {
	UIDs []uint32 // sorted, unique
	// cgroups (Cgroups) is nil when the list names no cgroup.
	cgroups  *[]string
	Everyone bool // "*": every socket owner
	Unowned  bool // packets without a socket
}

// Cgroups are the cgroup v2 paths (cgroup: as written, unit: as resolved)
// whose sockets, and those of every cgroup below, may pass: clean,
// absolute, sorted, unique.
func (p Principals) Cgroups() []string {
	if p.cgroups == nil {
		return nil
	}
	return *p.cgroups
}

// setCgroups sets the cgroup paths, sorting them and leaving out repeats.
func (p *Principals) setCgroups(paths []string) {
	if len(paths) == 0 {
		p.cgroups = nil
		return
	}
	slices.Sort(paths)
	paths = slices.Clip(slices.Compact(paths))
	p.cgroups = &paths
}

// Allows reports whether the owner may pass.
func (p Principals) Allows(o Owner) bool {
	if o.Unowned {
		return p.Unowned
	}
	if p.Everyone {
		return true
	}
	if _, found := slices.BinarySearch(p.UIDs, o.UID); found {
		return true
	}
	return slices.ContainsFunc(p.Cgroups(), func(c string) bool { return CgroupUnder(o.Cgroup, c) })
}

// CgroupUnder reports whether cgroup path x is dir or below it. An unknown
// cgroup ("") is below nothing.
func CgroupUnder(x, dir string) bool {
	switch {
	case x == "":
		return false
	case dir == "/":
		return true
	}
	return x == dir || strings.HasPrefix(x, dir) && x[len(dir)] == '/'
}

func (p Principals) union(q Principals) Principals {
	uids := slices.Concat(p.UIDs, q.UIDs)
	slices.Sort(uids)
	u := Principals{
		Everyone: p.Everyone || q.Everyone,
		Unowned:  p.Unowned || q.Unowned,
		UIDs:     slices.Compact(uids),
	}
	u.setCgroups(slices.Concat(p.Cgroups(), q.Cgroups()))
	return u
}

func (p Principals) String() string {
	var parts []string
	if p.Everyone {
		parts = append(parts, "*")
	}
	if p.Unowned {
		parts = append(parts, "unowned")
	}
	for _, u := range p.UIDs {
		parts = append(parts, fmt.Sprintf("uid:%d", u))
	}
	for _, c := range p.Cgroups() {
		parts = append(parts, "cgroup:"+c)
	}
	if len(parts) == 0 {
		return "nobody"
	}
	return strings.Join(parts, " ")
}

// Equal reports whether two allow lists are the same.
func (p Principals) Equal(q Principals) bool {
	return p.Everyone == q.Everyone && p.Unowned == q.Unowned && slices.Equal(p.UIDs, q.UIDs) &&
		slices.Equal(p.Cgroups(), q.Cgroups())
}

// Endpoint is a configured endpoint with its principals resolved.
type Endpoint struct {
	// Endpoint is the endpoint as configured: its name, interfaces,
	// ranges, narrowing, mode, deny and allow list as written. It is
	// shared with the configuration it was compiled from, and with that
	// configuration's parse cache (config.Cache), and never modified: a
	// large set holds each endpoint once, not once per layer.
	*config.Endpoint
	// Principals is the allow list resolved; never nil once compiled.
	// Shared, never modified: a compilation that follows another keeps
	// the one before's for an endpoint whose allow list names no one a
	// resolver answers for (CompileAfter), so that a reload of one
	// drop-in allocates principals for that drop-in only.
	Principals *Principals
}

// AllowList is the allow list as written, for explanations. It is made
// on each call rather than kept: at 100 000 endpoints a kept copy would
// be 4 MB that only explanations read.
func (e Endpoint) AllowList() []string {
	if len(e.Allow) == 0 {
		return nil
	}
	out := make([]string, len(e.Allow))
	for i, pr := range e.Allow {
		out[i] = pr.Text
	}
	return out
}

// Action is what a filtered interface does with a destination outside
// every range: an interface's `default:` as compiled, where unset is Deny.
// The zero value denies, so that a setting never filled in fails closed.
type Action uint8

const (
	Deny Action = iota
	Allow
)

// String is the spelling of the configuration: "allow" or "deny".
func (a Action) String() string {
	if a == Allow {
		return "allow"
	}
	return "deny"
}

// IfaceSetting is one `interfaces:` key.
type IfaceSetting struct {
	Pattern string
	Default Action
	// Audit is `mode: audit`: a packet the deny default would drop
	// passes as audit (rule 5). Meaningless with an allow default.
	Audit bool
	// Drop: `deny: drop`, denied packets are dropped without an answer
	// where no winning endpoint says otherwise, and always for the
	// interface default (SPEC §1 rules 4, 5).
	Drop bool
}

// Policy is a compiled configuration set.
type Policy struct {
	Endpoints  []Endpoint
	Interfaces []IfaceSetting // sorted by pattern
	Warnings   []string
	// Unresolved are the user and group names that matched no one when
	// the policy was resolved, in the order of the endpoints.
	Unresolved []Unresolved
	// Units are the units that allow lists name, with the cgroup path
	// each was resolved to, sorted by name; a unit that did not resolve
	// is in Unresolved instead.
	Units []Unit
	// patterns are the interface names and globs the endpoints name,
	// each once, sorted: found once at compile time, where every
	// question about an interface (is it filtered, which table) would
	// otherwise walk all of a large set's endpoints again.
	patterns []string
}

// Equal reports whether two policies are the same, warnings included.
// Which names did not resolve, and why, is left out: a name that is
// missing matches no one just as a name NSS could not look up does, and
// the kernel has nothing new to learn when one turns into the other.
// It is what reflect.DeepEqual would say, in a fraction of its time on
// large policies.
func (p *Policy) Equal(q *Policy) bool {
	if p == nil || q == nil {
		return p == q
	}
	return slices.EqualFunc(p.Endpoints, q.Endpoints, Endpoint.equal) &&
		slices.Equal(p.Interfaces, q.Interfaces) &&
		slices.Equal(p.Warnings, q.Warnings)
}

// equal leaves out where the endpoint is written: moving it in its file
// changes nothing the kernel or an explanation knows.
func (e Endpoint) equal(f Endpoint) bool {
	if e.Principals != f.Principals && !e.Principals.Equal(*f.Principals) {
		return false
	}
	if e.Endpoint == f.Endpoint {
		return true
	}
	return e.Name == f.Name && slices.Equal(e.Ifaces(), f.Ifaces()) && slices.Equal(e.Ranges, f.Ranges) &&
		slices.EqualFunc(e.Allow, f.Allow, func(a, b config.Principal) bool { return a.Text == b.Text }) &&
		slices.Equal(e.Protos(), f.Protos()) && (e.Protos() == nil) == (f.Protos() == nil) &&
		slices.Equal(e.Ports(), f.Ports()) && (e.Ports() == nil) == (f.Ports() == nil) && e.Audit == f.Audit &&
		e.Deny == f.Deny
}

// Narrowed reports whether the endpoint narrows protocols or ports: then
// it applies to some packets to its ranges and not to others.
func (e Endpoint) Narrowed() bool { return e.Protos() != nil || e.Ports() != nil }

// Narrowing spells the endpoint's proto and ports as `check` prints them
// ("tcp/80,8000-8100"); "" when it narrows neither.
func (e Endpoint) Narrowing() string { return config.FormatNarrowing(e.Protos(), e.Ports()) }

// Packet is what the decision rule reads of a packet besides its owner and
// interface.
type Packet struct {
	Dst netip.Addr
	// Proto is the transport protocol, after IPv6 extension headers; 0:
	// not known (no endpoint narrowed by proto or ports applies).
	Proto uint8
	// Port is the destination port; 0: the packet has none (ICMP, other
	// protocols, a non-first fragment).
	Port uint16
	// Fragment: a non-first fragment, which carries no port and so
	// matches every ports list of its protocol (SPEC §1 rule 2).
	Fragment bool
}

// String spells the packet's transport as the decision log does:
// "tcp/80", "udp fragment", "icmp", "" when unknown.
func (k Packet) String() string {
	switch {
	case k.Proto == 0 && k.Port == 0 && !k.Fragment:
		return ""
	case k.Fragment:
		return config.ProtoName(k.Proto) + " fragment"
	case k.Port != 0:
		return fmt.Sprintf("%s/%d", config.ProtoName(k.Proto), k.Port)
	}
	return config.ProtoName(k.Proto)
}

// applies is SPEC §1 rule 2 for an endpoint that applies to the interface:
// the packet's protocol is in its proto list and its destination port in
// its ports list, where it narrows them. A packet without a port matches
// no ports list; a non-first fragment matches every ports list of its
// protocol.
func (e Endpoint) applies(k Packet) bool {
	if e.Protos() != nil && !slices.Contains(e.Protos(), k.Proto) {
		return false
	}
	if e.Ports() == nil {
		return true
	}
	if !config.HasPorts(k.Proto) {
		return false // ICMP and other portless protocols, or none known
	}
	if k.Fragment {
		return true
	}
	return k.Port != 0 && slices.ContainsFunc(e.Ports(), func(r config.PortRange) bool { return r.Lo <= k.Port && k.Port <= r.Hi })
}

// rank orders the endpoints of one prefix by rule 3's tie-break: those
// that narrow ports, then those that narrow proto, then the rest.
func (e Endpoint) rank() int {
	r := 0
	if e.Ports() != nil {
		r += 2
	}
	if e.Protos() != nil {
		r++
	}
	return r
}

// MatchIface reports whether an interface name or glob matches an interface.
// Globs never match lo: filtering loopback must be asked for by name.
func MatchIface(pattern, name string) bool {
	if pattern == name {
		return true
	}
	if name == "lo" {
		return false
	}
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

func isGlob(pattern string) bool { return strings.ContainsAny(pattern, `*?[\`) }

// setting returns the `interfaces:` key that governs an interface: the exact
// name wins, then the longest glob (ties: the lexically first).
func (p *Policy) setting(name string) (IfaceSetting, bool) {
	var best IfaceSetting
	found := false
	for _, s := range p.Interfaces {
		if !MatchIface(s.Pattern, name) {
			continue
		}
		if !isGlob(s.Pattern) {
			return s, true
		}
		if !found || len(s.Pattern) > len(best.Pattern) {
			best, found = s, true
		}
	}
	return best, found
}

// Filtered reports whether the policy puts a filter on an interface.
func (p *Policy) Filtered(name string) bool {
	if _, ok := p.setting(name); ok {
		return true
	}
	// An endpoint applies where one of its patterns matches.
	return slices.ContainsFunc(p.endpointPatterns(), func(pat string) bool { return MatchIface(pat, name) })
}

// Default is the action for destinations outside every range of an interface.
func (p *Policy) Default(name string) Action {
	if s, ok := p.setting(name); ok {
		return s.Default
	}
	return Deny
}

// AuditDefault reports whether an interface's deny default is in audit
// mode: what it would drop passes and is logged as audit (rule 5).
func (p *Policy) AuditDefault(name string) bool {
	s, ok := p.setting(name)
	return ok && s.Default == Deny && s.Audit
}

// DropsSilently reports whether the interface says `deny: drop`: its
// default-denied packets, and those denied by endpoints that do not set
// `deny:`, are dropped without an answer.
func (p *Policy) DropsSilently(name string) bool {
	s, ok := p.setting(name)
	return ok && s.Drop
}

// Silent resolves SPEC §1 rule 4 for a range whose winners merged to d on
// interface name: a denied packet of a local socket is dropped without an
// answer when a winner says drop, or when none sets deny and the interface
// says drop.
func (p *Policy) Silent(name string, d config.DenyMode) bool {
	return silent(d, p.DropsSilently(name))
}

// silent is Silent with the interface's `deny:` already looked up.
func silent(d config.DenyMode, ifaceDrops bool) bool {
	switch d {
	case config.DenyDrop:
		return true
	case config.DenyReject:
		return false
	}
	return ifaceDrops
}

// SilentWinners is Silent for what rule 3 found on interface name.
func (p *Policy) SilentWinners(name string, w Winners) bool { return p.Silent(name, w.Deny) }

// mergeDeny merges the `deny:` of endpoints that win together: one that
// says drop makes the drop silent (SPEC §1 rule 4).
func mergeDeny(a, b config.DenyMode) config.DenyMode {
	switch {
	case a == config.DenyDrop || b == config.DenyDrop:
		return config.DenyDrop
	case a == config.DenyReject || b == config.DenyReject:
		return config.DenyReject
	}
	return config.DenyUnset
}

func (e Endpoint) appliesTo(name string) bool {
	return slices.ContainsFunc(e.Ifaces(), func(pat string) bool { return MatchIface(pat, name) })
}

// Verdict is the verdict on one packet and why.
type Verdict struct {
	// Allowed: the policy allows the packet's owner. A packet that is
	// not allowed is dropped, unless Audit.
	Allowed bool
	// Audit: not allowed, but every winner (rule 4) or the interface's
	// deny default (rule 5) is in audit mode, so the packet passes and
	// is logged as audit. Never set with Allowed.
	Audit     bool
	Filtered  bool         // false: the interface is not filtered at all
	Range     netip.Prefix // the deciding range; invalid when the default decided
	Endpoints []string     // endpoints that name Range
	// Reply: the packet is denied and, sent by a local socket, answered
	// at once with ICMP "administratively prohibited" (SPEC §1 rule 4);
	// false for allowed, unowned and `deny: drop` packets.
	Reply  bool
	Reason string
}

// Decide is DecidePacket for a packet whose transport is not known: only
// endpoints that narrow neither proto nor ports apply to it.
func (p *Policy) Decide(iface string, o Owner, dst netip.Addr) Verdict {
	return p.DecidePacket(iface, o, Packet{Dst: dst})
}

// DecidePacket is the reference decision rule of the product contract
// (SPEC §1 rules 2-5), written for clarity rather than speed: the kernel
// program must agree with it.
func (p *Policy) DecidePacket(iface string, o Owner, k Packet) Verdict {
	if !p.Filtered(iface) {
		return Verdict{Allowed: true, Reason: fmt.Sprintf("interface %s is not filtered", iface)}
	}
	dst := k.Dst.Unmap().WithZone("")
	w := winnersAmong(p.Endpoints, iface, Packet{Dst: dst, Proto: k.Proto, Port: k.Port, Fragment: k.Fragment}, 128)
	best, who, names := w.Prefix, w.Principals, w.Endpoints
	what := dst.String()
	if t := k.String(); t != "" {
		what += " " + t
	}
	if !best.IsValid() {
		def := p.Default(iface)
		d := Verdict{
			Allowed:  def == Allow,
			Audit:    p.AuditDefault(iface),
			Filtered: true,
			Reply:    def != Allow && !p.AuditDefault(iface) && !o.Unowned && !p.DropsSilently(iface),
			Reason:   fmt.Sprintf("no configured range %s %s; default %s on %s", verbFor(k), what, def, iface),
		}
		if d.Audit {
			d.Reason += auditNote
		}
		d.Reason += silently(d, o)
		return d
	}
	d := Verdict{Allowed: who.Allows(o), Filtered: true, Range: best, Endpoints: names}
	d.Audit = !d.Allowed && w.Audit
	d.Reply = !d.Allowed && !d.Audit && !o.Unowned && !p.Silent(iface, w.Deny)
	verb := "is not"
	if d.Allowed {
		verb = "is"
	}
	to := best.String()
	if t := k.String(); t != "" {
		to += " " + t
	}
	d.Reason = fmt.Sprintf("%s %s allowed to %s (endpoint %s; allowed: %s)",
		o, verb, to, strings.Join(names, ", "), who) + silently(d, o)
	if d.Audit {
		d.Reason += auditNote
	}
	return d
}

// auditNote ends the reason of a verdict that audit mode lets pass.
const auditNote = " [mode: audit: passes, logged as audit]"

// silently is what a reason adds when `deny: drop` keeps a denied local
// sender from being told (SPEC §1 rule 4); answering is the default, and
// unowned and audited packets are never answered, so neither says more.
func silently(v Verdict, o Owner) string {
	if v.Allowed || v.Audit || v.Reply || o.Unowned {
		return ""
	}
	return "; dropped silently (deny: drop)"
}

// Winners is what rule 3 finds for a packet: the deciding prefix, the
// merged principals of its winning endpoints and their names (sorted,
// unique). Prefix is invalid when no range applies.
type Winners struct {
	Prefix     netip.Prefix
	Principals Principals
	Endpoints  []string
	// Audit: every winning endpoint is in audit mode; a mix of
	// enforcing and audit winners enforces (rule 4).
	Audit bool
	Deny  config.DenyMode // the winners' `deny:`, merged (mergeDeny)
}

// Equal reports whether two findings decide alike and name the same.
func (w Winners) Equal(v Winners) bool {
	return w.Prefix == v.Prefix && w.Principals.Equal(v.Principals) && slices.Equal(w.Endpoints, v.Endpoints) && w.Audit == v.Audit && w.Deny == v.Deny
}

// winnersAmong applies rules 2 and 3 to the endpoints of iface, among
// their ranges of at most maxBits bits that contain k.Dst (unmapped).
func winnersAmong(endpoints []Endpoint, iface string, k Packet, maxBits int) Winners {
	var w Winners
	bestRank := -1
	for _, e := range endpoints {
		if !e.appliesTo(iface) || !e.applies(k) {
			continue
		}
		for _, r := range e.Ranges {
			if r.Bits() > maxBits || !r.Contains(k.Dst) {
				continue
			}
			switch {
			case !w.Prefix.IsValid() || r.Bits() > w.Prefix.Bits() || (r.Bits() == w.Prefix.Bits() && e.rank() > bestRank):
				w = Winners{Prefix: r, Principals: *e.Principals, Endpoints: []string{e.Name}, Audit: e.Audit, Deny: e.Deny}
				bestRank = e.rank()
			case r.Bits() == w.Prefix.Bits() && e.rank() == bestRank:
				w.Principals = w.Principals.union(*e.Principals)
				w.Endpoints = append(w.Endpoints, e.Name)
				w.Audit = w.Audit && e.Audit
				w.Deny = mergeDeny(w.Deny, e.Deny)
			}
		}
	}
	slices.Sort(w.Endpoints)
	w.Endpoints = slices.Compact(w.Endpoints)
	return w
}

// verbFor keeps the words of a decision without transport as they were:
// a range contains an address, and applies to a packet.
func verbFor(k Packet) string {
	if k.String() == "" {
		return "contains"
	}
	return "applies to"
}

// Entry is one range of an interface's table, merged across endpoints.
type Entry struct {
	Prefix     netip.Prefix
	Endpoints  []string
	Principals Principals
	// Narrowed: an endpoint of Prefix narrows proto or ports, so what
	// decides depends on the packet's transport (Classes says what);
	// Principals then only merge every endpoint's, for counting.
	Narrowed bool
	// Audit: every endpoint of Prefix is in audit mode (rule 4); for a
	// Narrowed entry its classes' Winners say it instead.
	Audit bool
	// Deny is the endpoints' `deny:`, merged; Silent is it resolved
	// with the interface's (Policy.Silent): its denied packets of local
	// sockets are dropped without an answer. Narrowed entries: their
	// classes' Winners say (Policy.SilentWinners).
	Deny   config.DenyMode
	Silent bool
	// Configured is the configured range that Prefix is, when one
	// endpoint alone makes the entry: Endpoints is then a view of its
	// name. Both point into the configuration, which never changes once
	// parsed, for a caller that keeps what an entry stands for (nil when
	// several endpoints make the entry).
	Configured *netip.Prefix
}

// Table is what the kernel needs for one interface: its ranges and default.
type Table struct {
	Default Action
	Entries []Entry // sorted by prefix
}

// TableKey identifies the table of a filtered interface without building
// it: interfaces with the same default and the same endpoints have equal
// tables, so that they can share one in the kernel. An endpoint applies to
// an interface when one of its patterns matches, so interfaces matched by
// the same patterns have the same endpoints.
func (p *Policy) TableKey(iface string) string {
	var matched []string
	for _, pat := range p.endpointPatterns() {
		if MatchIface(pat, iface) {
			matched = append(matched, pat)
		}
	}
	// The default's audit mode is the interface's, not its endpoints':
	// interfaces that differ in it cannot share a table.
	mode := ""
	if p.AuditDefault(iface) {
		mode = " audit"
	}
	return p.Default(iface).String() + mode + "\x00" + strconv.FormatBool(p.DropsSilently(iface)) + "\x00" + strings.Join(matched, "\x00")
}

// endpointPatterns lists the interface names and globs that endpoints
// name, each once, sorted. Large sets name the same few 100 000 times.
func (p *Policy) endpointPatterns() []string {
	if p.patterns != nil {
		return slices.Clone(p.patterns) // the caller's to change
	}
	return patternsOf(p.Endpoints)
}

func patternsOf(endpoints []Endpoint) []string {
	seen := map[string]bool{}
	pats := []string{} // not nil: known to be none
	var last []string
	for _, e := range endpoints {
		// Neighbours mostly name the same interfaces (a drop-in of a
		// thousand endpoints for one interface): comparing with the
		// last list costs less than a map lookup per endpoint.
		if slices.Equal(e.Ifaces(), last) {
			continue
		}
		last = e.Ifaces()
		for _, pat := range e.Ifaces() {
			if !seen[pat] {
				seen[pat] = true
				pats = append(pats, pat)
			}
		}
	}
	slices.Sort(pats)
	return pats
}

// ComparePrefix orders prefixes as tables list them: IPv4 first, then by
// address, then by length.
func ComparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// Table returns the table of a filtered interface.
func (p *Policy) Table(iface string) (Table, bool) {
	if !p.Filtered(iface) {
		return Table{}, false
	}
	return Table{Default: p.Default(iface), Entries: slices.Collect(p.Entries(iface))}, true
}

// Entries yields the entries of an interface's table in order, without
// making the table: the encoder lays them out as they come, and a large
// table is megabytes that a reload would allocate only to drop.
func (p *Policy) Entries(iface string) iter.Seq[Entry] {
	entries, _ := p.BoundedEntries(iface)
	return entries
}

// BoundedEntries is Entries, and the number of (endpoint, range) pairs they
// are made of: no fewer than the entries, and as many where no two
// endpoints name the same range. The encoder sizes its arrays by it once,
// rather than growing them step by step through a million entries.
func (p *Policy) BoundedEntries(iface string) (iter.Seq[Entry], int) {
	// Every (range, endpoint) pair, sorted by prefix: endpoints naming the
	// same prefix end up side by side and merge. IPv4 and IPv6 apart,
	// IPv4 first, the sort keys made of integers: comparing netip values
	// is several times slower, and a key of 16 bytes rather than 32 is
	// 16 MB less of fresh memory at a million IPv4 ranges.
	n4, n6 := 0, 0
	for _, e := range p.Endpoints {
		if e.appliesTo(iface) {
			for _, r := range e.Ranges {
				if r.Addr().Is4() {
					n4++
				} else {
					n6++
				}
			}
		}
	}
	v4, v6 := make([]pair4, 0, n4), make([]pair6, 0, n6)
	for i, e := range p.Endpoints {
		if !e.appliesTo(iface) {
			continue
		}
		for j, r := range e.Ranges {
			ref := pairRef{endpoint: int32(i), rng: int32(j)}
			if r.Addr().Is4() {
				a := r.Addr().As4()
				v4 = append(v4, pair4{addr: binary.BigEndian.Uint32(a[:]), bits: int32(r.Bits()), pairRef: ref})
			} else {
				a := r.Addr().As16()
				v6 = append(v6, pair6{hi: binary.BigEndian.Uint64(a[:8]), lo: binary.BigEndian.Uint64(a[8:]), bits: int32(r.Bits()), pairRef: ref})
			}
		}
	}
	slices.SortFunc(v4, func(a, b pair4) int {
		return cmp.Or(cmp.Compare(a.addr, b.addr), cmp.Compare(a.bits, b.bits), cmp.Compare(a.endpoint, b.endpoint))
	})
	slices.SortFunc(v6, func(a, b pair6) int {
		return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo), cmp.Compare(a.bits, b.bits), cmp.Compare(a.endpoint, b.endpoint))
	})
	drops := p.DropsSilently(iface) // once, not for each of a million entries
	return func(yield func(Entry) bool) {
		for i := 0; i < len(v4); {
			j := i + 1
			for j < len(v4) && v4[j].addr == v4[i].addr && v4[j].bits == v4[i].bits {
				j++
			}
			if !yield(mergeEntry(p, drops, v4[i:j])) {
				return
			}
			i = j
		}
		for i := 0; i < len(v6); {
			j := i + 1
			for j < len(v6) && v6[j].hi == v6[i].hi && v6[j].lo == v6[i].lo && v6[j].bits == v6[i].bits {
				j++
			}
			if !yield(mergeEntry(p, drops, v6[i:j])) {
				return
			}
			i = j
		}
	}, n4 + n6
}

// pairRef is an (endpoint, range) pair: the indexes of the endpoint in
// the policy and of the range in the endpoint's.
type pairRef struct{ endpoint, rng int32 }

func (r pairRef) ref() pairRef { return r }

// pair4 and pair6 are the sort keys of a pair of an IPv4 or IPv6 range.
type pair4 struct {
	addr uint32
	bits int32
	pairRef
}

type pair6 struct {
	hi, lo uint64
	bits   int32
	pairRef
}

// mergeEntry makes the entry of the pairs of one prefix, on an interface
// whose `deny:` is drop or not.
func mergeEntry[T interface{ ref() pairRef }](p *Policy, ifaceDrops bool, pairs []T) Entry {
	first := pairs[0].ref()
	e := p.Endpoints[first.endpoint]
	// An endpoint's own entry names it with its name as a list of one: a
	// view of the configured endpoint's field, which is never modified
	// and lives as long as the endpoint. A million entries would
	// otherwise each need a list, or all share an array of 16 MB made
	// again on every reload. Its capacity is one: appending copies.
	ent := Entry{Prefix: e.Ranges[first.rng], Endpoints: unsafe.Slice(&e.Name, 1), Principals: *e.Principals, Narrowed: e.Narrowed(), Audit: e.Audit, Deny: e.Deny}
	for _, pr := range pairs[1:] {
		e := p.Endpoints[pr.ref().endpoint]
		ent.Principals = ent.Principals.union(*e.Principals)
		ent.Endpoints = append(ent.Endpoints, e.Name)
		ent.Narrowed = ent.Narrowed || e.Narrowed()
		ent.Audit = ent.Audit && e.Audit
		ent.Deny = mergeDeny(ent.Deny, e.Deny)
	}
	if len(ent.Endpoints) > 1 {
		slices.Sort(ent.Endpoints)
		ent.Endpoints = slices.Compact(ent.Endpoints)
	}
	if len(pairs) == 1 {
		ent.Configured = &e.Ranges[first.rng]
	}
	ent.Silent = silent(ent.Deny, ifaceDrops)
	return ent
}

// RangeCount is the number of distinct (endpoint, range) pairs.
func (p *Policy) RangeCount() int {
	n := 0
	for _, e := range p.Endpoints {
		n += len(e.Ranges)
	}
	return n
}

// ParseDestination reads a destination as D-Bus Check and explain take it
// (SPEC §5): an address ("169.254.169.254", "fd00:ec2::254": the transport
// not known), "ADDR:PORT/PROTO" or "[V6]:PORT/PROTO" for a protocol with
// ports, or "ADDR/PROTO" for one without (icmp, icmpv6, a number).
func ParseDestination(s string) (Packet, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return Packet{Dst: a}, nil
	}
	left, protoText, ok := strings.Cut(s, "/")
	if !ok {
		return Packet{}, fmt.Errorf("%q is not an address, ADDR:PORT/PROTO or [IPv6]:PORT/PROTO", s)
	}
	proto, err := config.ParseProto(protoText)
	if err != nil {
		return Packet{}, err
	}
	if a, err := netip.ParseAddr(left); err == nil {
		if config.HasPorts(proto) {
			return Packet{}, fmt.Errorf("%q: %s needs a port: write ADDR:PORT/%s ([IPv6]:PORT/%s)", s, protoText, protoText, protoText)
		}
		return Packet{Dst: a, Proto: proto}, nil
	}
	ap, err := netip.ParseAddrPort(left)
	if err != nil {
		return Packet{}, fmt.Errorf("%q is not ADDR:PORT/PROTO or [IPv6]:PORT/PROTO: %v", s, err)
	}
	return PacketTo(ap.Addr(), proto, ap.Port())
}

// PacketTo is a packet to dst of protocol proto and destination port: a
// port (1-65535) for a protocol with ports, none for one without.
func PacketTo(dst netip.Addr, proto uint8, port uint16) (Packet, error) {
	switch {
	case config.HasPorts(proto) && port == 0:
		return Packet{}, fmt.Errorf("%s needs a port from 1 to 65535", config.ProtoName(proto))
	case !config.HasPorts(proto) && port != 0:
		return Packet{}, fmt.Errorf("%s has no ports", config.ProtoName(proto))
	}
	return Packet{Dst: dst, Proto: proto, Port: port}, nil
}

// Destination spells k as ParseDestination reads it.
func (k Packet) Destination() string {
	switch {
	case k.Proto == 0:
		return k.Dst.String()
	case k.Port == 0:
		return k.Dst.String() + "/" + config.ProtoName(k.Proto)
	}
	return netip.AddrPortFrom(k.Dst, k.Port).String() + "/" + config.ProtoName(k.Proto)
}
