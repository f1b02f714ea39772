package bpf

import (
	"fmt"
	"net/netip"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// Iface is a network interface as the encoder and the attacher need it.
type Iface struct {
	Name  string
	Index int
	L3    bool // no link-layer header (wireguard, tun, ipip...)
}

// LogMode says which decisions the kernel reports as events.
type LogMode uint8

const (
	LogNone   = LogMode(filterNtfLogNTF_LOG_NONE)
	LogDenied = LogMode(filterNtfLogNTF_LOG_DENIED)
	LogAll    = LogMode(filterNtfLogNTF_LOG_ALL)
)

// ParseLogMode maps the `log.decisions` setting.
func ParseLogMode(s string) (LogMode, error) {
	switch s {
	case "none":
		return LogNone, nil
	case "denied":
		return LogDenied, nil
	case "all":
		return LogAll, nil
	}
	return 0, fmt.Errorf("unknown decision log mode %q", s)
}

// Rule is what a range entry stands for, so that events can name it.
type Rule struct {
	Iface     string // one interface that uses the table (for messages)
	Range     netip.Prefix
	Endpoints []string
}

type rangeEntry struct {
	key   filterNtfRangeKey
	value filterNtfRange
}

// Contents is a whole policy in the kernel's layout: one slot's worth.
type Contents struct {
	Generation uint32
	Ifaces     map[uint32]filterNtfIface
	Ranges     []rangeEntry
	Owners     []filterNtfOwnerKey
	Rules      []Rule // Rules[i] is rule id i+1
}

// encode lays out a policy for the given interfaces. Interfaces that the
// policy does not filter are left out. Interfaces with equal tables share
// one table in the kernel, and equal allow lists share one owner set.
// Interfaces and endpoints count their packets at the indexes counters gives
// them.
func encode(p *policy.Policy, ifaces []Iface, gen uint32, log LogMode, counters *counterNames) *Contents {
	c := &Contents{Generation: gen, Ifaces: map[uint32]filterNtfIface{}}
	tables := map[string]uint32{}
	sets := map[string]uint32{}
	for _, ifc := range ifaces {
		t, ok := p.Table(ifc.Name)
		if !ok {
			continue
		}
		id, seen := tables[t.Key()]
		if !seen {
			id = uint32(len(tables))
			tables[t.Key()] = id
			c.addTable(id, ifc.Name, t, sets, counters)
		}
		v := filterNtfIface{Table: id, Generation: gen, L2Len: 14, Log: uint8(log), Counter: counters.iface(ifc.Name)}
		if ifc.L3 {
			v.L2Len = 0
		}
		if t.Default == config.Allow {
			v.DefaultAllow = 1
		}
		c.Ifaces[uint32(ifc.Index)] = v
	}
	return c
}

func (c *Contents) addTable(id uint32, iface string, t policy.Table, sets map[string]uint32, counters *counterNames) {
	for _, e := range t.Entries {
		c.Rules = append(c.Rules, Rule{Iface: iface, Range: e.Prefix, Endpoints: e.Endpoints})
		v := filterNtfRange{Rule: uint32(len(c.Rules)), Counter: counters.endpoints(e.Endpoints)}
		if e.Principals.Everyone {
			v.Flags |= uint32(filterNtfRangeFlagsNTF_RANGE_EVERYONE)
		}
		if e.Principals.Unowned {
			v.Flags |= uint32(filterNtfRangeFlagsNTF_RANGE_UNOWNED)
		}
		if len(e.Principals.UIDs) > 0 {
			set, ok := sets[e.Principals.Key()]
			if !ok {
				set = uint32(len(sets)) + 1
				sets[e.Principals.Key()] = set
				for _, uid := range e.Principals.UIDs {
					c.Owners = append(c.Owners, filterNtfOwnerKey{Set: set, Uid: uid})
				}
			}
			v.Owners = set
		}
		c.Ranges = append(c.Ranges, rangeEntry{key: rangeKey(id, e.Prefix), value: v})
	}
}

// rangeKey places a prefix in its table: IPv4 in table*2, IPv6 in table*2+1,
// behind the 32 bits of the table id that every lookup matches fully.
func rangeKey(table uint32, p netip.Prefix) filterNtfRangeKey {
	k := filterNtfRangeKey{Prefixlen: 32 + uint32(p.Bits()), Table: table * 2}
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		copy(k.Addr[:], b[:])
	} else {
		k.Table++
		k.Addr = a.As16()
	}
	return k
}
