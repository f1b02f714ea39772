// SPDX-License-Identifier: Apache-2.0

package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// fileSettings is what one file says. Scalars are pointers because a file
// that does not mention one must not override an earlier file's value.
type fileSettings struct {
	endpoints  []Endpoint
	interfaces map[string]Interface
	level      *string
	decisions  *string
	rate       *int
	onStop     *OnStop
	listen     *string
}

// The key and value sets are functions so that no package state can be
// changed by a caller.
func topKeys() []string     { return []string{"endpoints", "interfaces", "log", "on_stop", "metrics"} }
func metricsKeys() []string { return []string{"listen"} }
func endpointKeys() []string {
	return []string{"iface", "range", "allow", "proto", "ports", "mode", "deny"}
}
func interfaceKeys() []string { return []string{"default", "mode", "deny"} }
func modes() []string         { return []string{ModeEnforce, ModeAudit} }
func logKeys() []string       { return []string{"level", "decisions", "rate"} }
func logLevels() []string     { return []string{"debug", "info", "warn", "error"} }
func logDecisions() []string  { return []string{"none", "denied", "all"} }
func onStops() []string       { return []string{string(OnStopDetach), string(OnStopKeep)} }
func actions() []string       { return []string{string(Allow), string(Deny)} }
func denyModes() []string     { return []string{DenyReject.String(), DenyDrop.String()} }

func (p *fileParser) unknown(f field, where string, known []string) {
	p.at(f.line, "unknown key %q%s; known: %s", f.key, where, strings.Join(known, ", "))
}

func (p *fileParser) top(root val) fileSettings {
	var s fileSettings
	for _, f := range root.fields() {
		switch f.key {
		case "endpoints":
			s.endpoints = p.endpoints(f.val)
		case "interfaces":
			s.interfaces = p.interfaces(f.val)
		case "log":
			p.log(f.val, &s)
		case "on_stop":
			if v, ok := p.enum(f.val, "on_stop", onStops()); ok {
				s.onStop = ptr(OnStop(v))
			}
		case "metrics":
			p.metrics(f.val, &s)
		default:
			p.unknown(f, "", topKeys())
		}
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// enum reads a string that must be one of allowed. Values are matched
// exactly: "Deny" is refused rather than guessed.
func (p *fileParser) enum(v val, what string, allowed []string) (string, bool) {
	s, ok := v.v.(string)
	if !ok || !slices.Contains(allowed, s) {
		p.at(v.line, "%s must be one of %s, not %s", what, strings.Join(allowed, ", "), describe(v.v))
		return "", false
	}
	return s, true
}

func (p *fileParser) log(v val, s *fileSettings) {
	if v.v == nil {
		return
	}
	if !v.isMap() {
		p.at(v.line, "log must be a mapping of %s, not %s", strings.Join(logKeys(), ", "), describe(v.v))
		return
	}
	for _, f := range v.fields() {
		switch f.key {
		case "level":
			if x, ok := p.enum(f.val, "log.level", logLevels()); ok {
				s.level = &x
			}
		case "decisions":
			if x, ok := p.enum(f.val, "log.decisions", logDecisions()); ok {
				s.decisions = &x
			}
		case "rate":
			if x, ok := p.rate(f.val); ok {
				s.rate = &x
			}
		default:
			p.unknown(f, " in log", logKeys())
		}
	}
}

func (p *fileParser) metrics(v val, s *fileSettings) {
	if v.v == nil {
		return
	}
	if !v.isMap() {
		p.at(v.line, "metrics must be a mapping like {listen: \"127.0.0.1:9963\"}, not %s", describe(v.v))
		return
	}
	for _, f := range v.fields() {
		if f.key != "listen" {
			p.unknown(f, " in metrics", metricsKeys())
			continue
		}
		x, ok := f.val.v.(string)
		if !ok {
			p.at(f.val.line, "metrics.listen must be a string like \"127.0.0.1:9963\", not %s", describe(f.val.v))
			continue
		}
		if err := checkListen(x); err != nil {
			p.at(f.val.line, "%v", err)
			continue
		}
		s.listen = &x
	}
}

// rate accepts only a YAML integer: "50" (a string) or 50.5 would each be a
// guess at what was meant.
func (p *fileParser) rate(v val) (int, bool) {
	var n int64
	switch x := v.v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		n = -1 // above int64: out of range either way
	default:
		p.at(v.line, "log.rate must be an integer >= 1, not %s", describe(v.v))
		return 0, false
	}
	if n < 1 || n > int64(maxRate) {
		p.at(v.line, "log.rate must be between 1 and %d, not %v", maxRate, v.v)
		return 0, false
	}
	return int(n), true
}

// maxRate bounds log.rate to what fits a 32-bit counter, far above anything
// journald would keep up with anyway.
const maxRate = 1<<31 - 1

func (p *fileParser) interfaces(v val) map[string]Interface {
	out := make(map[string]Interface)
	if v.v == nil {
		return out
	}
	if !v.isMap() {
		p.at(v.line, "interfaces must be a mapping of interface name or glob to {default: allow|deny}, not %s", describe(v.v))
		return out
	}
	for _, f := range v.fields() {
		if err := checkIface(f.key); err != nil {
			p.at(f.line, "interfaces: %v", err)
		}
		out[f.key] = p.iface(f)
	}
	return out
}

// iface reads one interfaces: entry. Without a default the interface is
// still filtered, with the contract's default action, deny.
func (p *fileParser) iface(f field) Interface {
	it := Interface{Default: Deny, Pos: p.pos(f.line)}
	if f.val.v == nil {
		return it
	}
	if !f.val.isMap() {
		p.at(f.val.line, "interface %q must be a mapping like {default: deny}, not %s", f.key, describe(f.val.v))
		return it
	}
	for _, g := range f.val.fields() {
		switch g.key {
		case "default":
			if a, ok := p.enum(g.val, fmt.Sprintf("interface %q: default", f.key), actions()); ok {
				it.Default = Action(a)
			}
		case "mode":
			if m, ok := p.enum(g.val, fmt.Sprintf("interface %q: mode", f.key), modes()); ok {
				it.Audit = m == ModeAudit
			}
		case "deny":
			if d, ok := p.enum(g.val, fmt.Sprintf("interface %q: deny", f.key), denyModes()); ok {
				it.Deny = parseDeny(d)
			}
		default:
			p.unknown(g, fmt.Sprintf(" in interface %q", f.key), interfaceKeys())
		}
	}
	return it
}

func (p *fileParser) endpoints(v val) []Endpoint {
	if v.v == nil {
		return nil
	}
	if !v.isList() {
		p.at(v.line, `endpoints must be a list of "- name: {iface, range, allow}" items, not %s`, describe(v.v))
		return nil
	}
	// Sized once: the parse cache keeps this slice for as long as the file
	// is unchanged, and append's spare capacity would stay with it (a
	// fifth of the cache at 100 000 endpoints).
	items := v.items()
	out := make([]Endpoint, 0, len(items))
	first := make(map[string]int, len(items))
	for _, item := range items {
		ep, ok := p.endpoint(item)
		if !ok {
			continue
		}
		if line, dup := first[ep.Name]; dup {
			p.at(int(ep.Line), "duplicate endpoint %q (first at line %d); only a later file may replace an endpoint", ep.Name, line)
			continue
		}
		first[ep.Name] = int(ep.Line)
		out = append(out, ep)
	}
	return out
}

// endpoint reads one "- name: {iface, range, allow}" item. It returns
// ok=false only when the item has no usable name; other problems are
// reported and the endpoint still returned, so that duplicates are caught.
func (p *fileParser) endpoint(item val) (Endpoint, bool) {
	fields := item.fields()
	if !item.isMap() || len(fields) == 0 {
		p.at(item.line, `each endpoints item must be a single-key mapping "name: {iface, range, allow}", not %s`, describe(item.v))
		return Endpoint{}, false
	}
	if len(fields) > 1 {
		p.severalNames(item, fields)
		return Endpoint{}, false
	}
	name := fields[0]
	if err := checkEndpointName(name.key); err != nil {
		p.at(name.line, "%v", err)
	}
	ep := Endpoint{Name: name.key, Line: int32(name.line)}
	ep.Site = p.site(p.endpointBody(&ep, name.val))
	return ep, true
}

func (p *fileParser) severalNames(item val, fields []field) {
	keys := make([]string, len(fields))
	settings := false
	for i, f := range fields {
		keys[i] = f.key
		settings = settings || slices.Contains(endpointKeys(), f.key)
	}
	if settings {
		p.at(item.line, "endpoints item has several keys (%s); iface, range and allow must be indented under the endpoint name", strings.Join(keys, ", "))
		return
	}
	p.at(item.line, `endpoints item has several names (%s); write one "- name:" item per endpoint`, strings.Join(keys, ", "))
}

// endpointBody reads the settings of ep, and returns its interfaces.
func (p *fileParser) endpointBody(ep *Endpoint, body val) (ifaces []string) {
	if body.v == nil {
		p.at(int(ep.Line), "endpoint %q has no settings; it needs iface, range and allow, indented under its name", ep.Name)
		return nil
	}
	if !body.isMap() {
		p.at(body.line, "endpoint %q must be a mapping of iface, range and allow, not %s", ep.Name, describe(body.v))
		return nil
	}
	seen := make(map[string]bool)
	portsLine := 0
	for _, f := range body.fields() {
		seen[f.key] = true
		switch f.key {
		case "iface":
			ifaces = p.ifaces(ep.Name, f.val)
		case "range":
			ep.Ranges = p.ranges(ep.Name, f.val)
		case "allow":
			ep.Allow = p.allow(ep.Name, f.val)
		case "proto":
			if protos := p.protos(ep.Name, f.val); protos != nil {
				ep.narrowing().Protos = protos
			}
		case "ports":
			if ports := p.ports(ep.Name, f.val); ports != nil {
				ep.narrowing().Ports = ports
			}
			portsLine = f.line
		case "mode":
			if m, ok := p.enum(f.val, fmt.Sprintf("endpoint %q: mode", ep.Name), modes()); ok {
				ep.Audit = m == ModeAudit
			}
		case "deny":
			if d, ok := p.enum(f.val, fmt.Sprintf("endpoint %q: deny", ep.Name), denyModes()); ok {
				ep.Deny = parseDeny(d)
			}
		default:
			p.unknown(f, fmt.Sprintf(" in endpoint %q", ep.Name), endpointKeys())
		}
	}
	p.missing(ep, seen)
	p.narrowing(ep, portsLine)
	return ifaces
}

func (p *fileParser) missing(ep *Endpoint, seen map[string]bool) {
	if !seen["iface"] {
		p.at(int(ep.Line), "endpoint %q: missing iface (the interfaces, names or globs, it applies to)", ep.Name)
	}
	if !seen["range"] {
		p.at(int(ep.Line), "endpoint %q: missing range (the addresses or CIDR prefixes it guards)", ep.Name)
	}
	if !seen["allow"] {
		p.at(int(ep.Line), "endpoint %q: missing allow; write allow: [] to deny everyone", ep.Name)
	}
}

// str reads an element of endpoint ep's key list that must be a string.
// Numbers and booleans are refused rather than converted: YAML would have
// changed what was typed. The message is only formatted for a refusal: a
// large drop-in has 100 000 elements that are fine.
func (p *fileParser) str(v val, ep, key string) (string, bool) {
	s, ok := v.v.(string)
	if !ok {
		p.at(v.line, "endpoint %q: %s entry must be a string, not %s; quote it", ep, key, describe(v.v))
	}
	return s, ok
}

// nonEmpty checks a required list that must name at least one thing.
func (p *fileParser) nonEmpty(ep, key string, v val, what string) bool {
	if v.empty() {
		p.at(v.line, "endpoint %q: %s is empty; name at least one %s", ep, key, what)
		return false
	}
	return true
}

func (p *fileParser) ifaces(ep string, v val) []string {
	if !p.nonEmpty(ep, "iface", v, "interface name or glob") {
		return nil
	}
	var out []string
	first := make(map[string]int)
	for _, it := range v.list() {
		s, ok := p.str(it, ep, "iface")
		if !ok {
			continue
		}
		if err := checkIface(s); err != nil {
			p.at(it.line, "endpoint %q: %v", ep, err)
			continue
		}
		if line, dup := first[s]; dup {
			p.at(it.line, "endpoint %q: duplicate iface %q (first at line %d)", ep, s, line)
			continue
		}
		first[s] = it.line
		out = append(out, s)
	}
	return slices.Clip(out) // shared: an append must copy
}

// site is the Site of the file's next endpoint, which applies to ifaces:
// the last one's when it names the same.
func (p *fileParser) site(ifaces []string) *Site {
	if p.lastSite != nil && slices.Equal(ifaces, p.lastSite.Ifaces) {
		return p.lastSite
	}
	p.lastSite = &Site{File: p.file, Ifaces: ifaces}
	return p.lastSite
}

func (p *fileParser) ranges(ep string, v val) []netip.Prefix {
	if !p.nonEmpty(ep, "range", v, "address or CIDR prefix") {
		return nil
	}
	// Sized up front: one endpoint can hold a generated list of 100 000
	// ranges, and growing the slice and map step by step costs more
	// than the rest of its parse.
	items := v.list()
	out := make([]netip.Prefix, 0, len(items))
	type seen struct {
		text string
		line int
	}
	first := make(map[netip.Prefix]seen, len(items))
	for _, it := range items {
		s, ok := p.str(it, ep, "range")
		if !ok {
			continue
		}
		r, err := parseRange(s)
		if err != nil {
			p.at(it.line, "endpoint %q: %v", ep, err)
			continue
		}
		if f, dup := first[r]; dup {
			p.at(it.line, "endpoint %q: duplicate range %s (same as %s at line %d)", ep, s, f.text, f.line)
			continue
		}
		first[r] = seen{s, it.line}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil // no usable range is no ranges, not an empty list
	}
	return out
}

// allow reads the allow list. A missing or null allow is an error, and
// only an explicit [] means nobody: the difference between "forgot to say"
// and "nobody" is what an access list exists to make clear.
func (p *fileParser) allow(ep string, v val) []Principal {
	if v.v == nil {
		p.at(v.line, "endpoint %q: allow is empty; write allow: [] to deny everyone", ep)
		return nil
	}
	items := v.list()
	out := make([]Principal, 0, len(items))
	type key struct {
		kind PrincipalKind
		name string
		uid  uint32
	}
	first := make(map[key]Principal)
	for _, it := range items {
		pr, ok := p.principal(ep, it)
		if !ok {
			continue
		}
		k := key{pr.Kind, pr.Name(), pr.UID}
		if f, dup := first[k]; dup {
			p.at(it.line, "endpoint %q: duplicate allow entry %q (same as %q at line %d)", ep, pr.Text, f.Text, f.Line)
			continue
		}
		first[k] = pr
		out = append(out, pr)
	}
	return out
}

func (p *fileParser) principal(ep string, v val) (Principal, bool) {
	switch x := v.v.(type) {
	case int, int64, uint64:
		p.at(v.line, "endpoint %q: allow entry %v is a number; write uid:%v for a uid (a bare number could be read as a name or an id)", ep, x, x)
		return Principal{}, false
	}
	s, ok := p.str(v, ep, "allow")
	if !ok {
		return Principal{}, false
	}
	pr, err := parsePrincipal(s)
	if err != nil {
		p.at(v.line, "endpoint %q: %v", ep, err)
		return Principal{}, false
	}
	pr.Line = int32(v.line)
	return pr, true
}
