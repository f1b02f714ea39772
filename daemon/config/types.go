// SPDX-License-Identifier: Apache-2.0

// Package config reads the net-tc-filter configuration set: the main file and
// its conf.d drop-ins, merged with the rules of the product contract. It checks
// syntax and safety (file ownership and modes) and reports every problem at
// once as "file:line: message". It does not consult NSS: user and group names
// are resolved by the policy compiler, which reports unknown names through the
// same Error type, positioned by the endpoint's file and Principal.Line.
package config

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Pos is where something was written.
type Pos struct {
	File string
	Line int // 0 when the parser does not know it
}

func (p Pos) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return p.File
}

// Action is what happens to a packet.
type Action string

const (
	Allow Action = "allow"
	Deny  Action = "deny"
)

// The values of `mode:` on an endpoint or an interface.
const (
	ModeEnforce = "enforce"
	ModeAudit   = "audit"
)

// DenyMode is what happens to a denied packet of a local socket (SPEC §1
// rule 4): answered at once with ICMP "administratively prohibited", or
// dropped silently. Unset leaves it to the interface, then to the default,
// reject. A byte, not its word: every endpoint holds one.
type DenyMode uint8

const (
	DenyUnset DenyMode = iota
	DenyReject
	DenyDrop
)

// String is the mode as `deny:` spells it; "" when unset.
func (d DenyMode) String() string {
	switch d {
	case DenyReject:
		return "reject"
	case DenyDrop:
		return "drop"
	}
	return ""
}

// parseDeny reads a `deny:` that p.enum checked against denyModes.
func parseDeny(s string) DenyMode {
	if s == DenyDrop.String() {
		return DenyDrop
	}
	return DenyReject
}

// OnStop says whether a clean stop removes the filter.
type OnStop string

const (
	OnStopDetach OnStop = "detach"
	OnStopKeep   OnStop = "keep"
)

// PrincipalKind tells the forms a principal can be written in.
type PrincipalKind uint8

const (
	PrincipalUser     PrincipalKind = iota // "alice": resolved through NSS
	PrincipalUID                           // "uid:1005"
	PrincipalGroup                         // "group:imds-readers": all members
	PrincipalEveryone                      // "*": every socket owner, never unowned
	PrincipalUnowned                       // "unowned": packets without a socket
	PrincipalUnit                          // "unit:x.service": the unit's cgroup and below
	PrincipalCgroup                        // "cgroup:/a/b": that cgroup v2 directory and below
)

// Principal is one entry of an endpoint's allow list, as written.
//
// A large set holds one Principal per allow-list entry, so it is 32 bytes:
// its name is a part of its text (Name), and its position a line of the
// file its endpoint is in (Endpoint.Site).
type Principal struct {
	Kind PrincipalKind
	UID  uint32 // PrincipalUID
	Line int32  // in the endpoint's file
	Text string // exactly as written, for messages
}

// Name is the user or group name (PrincipalUser, PrincipalGroup), the unit
// name (PrincipalUnit) or the clean absolute cgroup path below the cgroup2
// mount (PrincipalCgroup): the text after the kind's prefix, which a user
// name does not have and cannot contain (parsePrincipal).
func (p Principal) Name() string {
	switch p.Kind {
	case PrincipalUser:
		return p.Text
	case PrincipalGroup, PrincipalUnit, PrincipalCgroup:
		_, name, _ := strings.Cut(p.Text, ":")
		return name
	}
	return ""
}

// Pos is where the principal is written, in the file of its endpoint ep.
func (p Principal) Pos(ep *Endpoint) Pos { return Pos{File: ep.Pos().File, Line: int(p.Line)} }

// Endpoint is one named entry of `endpoints:`.
//
// A large set holds one Endpoint per range or so, in its file's array of
// them, so what every endpoint of a file shares is kept once (Site): 88
// bytes an endpoint rather than 128.
type Endpoint struct {
	Name   string
	Ranges []netip.Prefix // masked; IPv4-mapped IPv6 prefixes are stored as IPv4
	Allow  []Principal
	// Narrow is what proto and ports narrow the endpoint to; nil when
	// it has neither, as most endpoints do: a pointer rather than two
	// slices saves a large set 40 bytes an endpoint.
	Narrow *Narrowing
	// Site is the endpoint's file and interfaces, shared with the
	// endpoints next to it in the file that name the same interfaces
	// (a run of them; an endpoint between with other interfaces ends it).
	Site *Site
	Line int32 // of the endpoint's name in Site.File
	// Audit is `mode: audit`: a packet this endpoint alone would drop
	// passes and is logged as audit (SPEC §1 rule 4).
	Audit bool
	// Deny is the endpoint's `deny:`; DenyUnset when it says nothing.
	Deny DenyMode
}

// Site is where endpoints are: their file, and the interfaces (names or
// globs, as written) they apply to. Shared: never modified.
type Site struct {
	File   string
	Ifaces []string
}

// Ifaces are the interface names or globs the endpoint applies to, as
// written.
func (e *Endpoint) Ifaces() []string {
	if e.Site == nil {
		return nil
	}
	return e.Site.Ifaces
}

// Pos is where the endpoint's name is written.
func (e *Endpoint) Pos() Pos {
	if e.Site == nil {
		return Pos{Line: int(e.Line)}
	}
	return Pos{File: e.Site.File, Line: int(e.Line)}
}

// Narrowing is an endpoint's proto and ports. Protos narrows it to these
// protocols (sorted, unique); nil: every protocol. Ports narrows it to
// these destination ports (sorted, merged); nil: every port. An endpoint
// with Ports applies only to packets of a protocol with ports (SPEC §1
// rule 2).
type Narrowing struct {
	Protos []uint8
	Ports  []PortRange
}

// Protos is the endpoint's Narrowing.Protos (nil without one).
func (e *Endpoint) Protos() []uint8 {
	if e.Narrow == nil {
		return nil
	}
	return e.Narrow.Protos
}

// Ports is the endpoint's Narrowing.Ports (nil without one).
func (e *Endpoint) Ports() []PortRange {
	if e.Narrow == nil {
		return nil
	}
	return e.Narrow.Ports
}

// narrowing is the endpoint's Narrowing, made when it has none.
func (e *Endpoint) narrowing() *Narrowing {
	if e.Narrow == nil {
		e.Narrow = new(Narrowing)
	}
	return e.Narrow
}

// Interface holds the settings of one `interfaces:` key.
type Interface struct {
	Default Action
	// Audit is `mode: audit`: packets the deny default would drop pass
	// and are logged as audit (SPEC §1 rule 5).
	Audit bool
	// Deny is the interface's `deny:`; DenyUnset when it says nothing.
	Deny DenyMode
	Pos  Pos
}

// Log holds the `log:` settings.
type Log struct {
	Level     string // debug|info|warn|error
	Decisions string // none|denied|all
	Rate      int    // decision log lines per second at most
}

// Metrics holds the `metrics:` settings.
type Metrics struct {
	// Listen is the host:port the Prometheus metrics are served on, the
	// host an IP address; "" serves none (systemd may still hand over a
	// socket for them).
	Listen string
}

// Config is the merged configuration set.
type Config struct {
	// Endpoints are in order of first appearance. They point into what
	// the files parsed to, which config.Cache keeps for the next load:
	// an unchanged file's endpoints are the same objects load after load,
	// and a set of 1 000 000 is not copied on every reload. Never modify
	// one.
	Endpoints  []*Endpoint
	Interfaces map[string]Interface // key: interface name or glob
	Log        Log
	OnStop     OnStop
	Metrics    Metrics
	Files      []string // every file read, in the order read
	// Sums[i] is the SHA-256 of Files[i] as it was read and parsed: what
	// went live is that version, whatever the file holds by the time a
	// copy of it is kept (the last good set).
	Sums [][sha256.Size]byte
	// Warnings are full sentences, each naming a file, about what was
	// not read although it may have been meant to be: every conf.d entry
	// that is not a *.yml drop-in (x.yaml, x.yml.dpkg-dist, editor
	// backups, directories, a named pipe called x.yml), except kubelet's
	// own ..data-style entries where conf.d has kubelet's ..data symlink. Sorted by path. They do not make the set
	// invalid; with an invalid set, LoadPartial's Config still has them.
	Warnings []string
}

// Error is one problem, positioned where the parser knows it.
type Error struct {
	Pos Pos
	Msg string
}

func (e Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Errors is every problem of a configuration set. It is an error itself.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Sort orders problems by file order of appearance, then line.
func (es Errors) Sort(fileOrder []string) {
	rank := make(map[string]int, len(fileOrder))
	for i, f := range fileOrder {
		rank[f] = i
	}
	sort.SliceStable(es, func(i, j int) bool {
		ri, iok := rank[es[i].Pos.File]
		rj, jok := rank[es[j].Pos.File]
		if iok != jok {
			return iok
		}
		if ri != rj {
			return ri < rj
		}
		if es[i].Pos.File != es[j].Pos.File {
			return es[i].Pos.File < es[j].Pos.File
		}
		return es[i].Pos.Line < es[j].Pos.Line
	})
}

// Defaults used where the configuration set is silent.
const (
	DefaultLogLevel     = "info"
	DefaultLogDecisions = "denied"
	DefaultLogRate      = 50
	DefaultOnStop       = OnStopDetach
)
