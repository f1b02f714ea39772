// SPDX-License-Identifier: Apache-2.0

package config

import "testing"

// endpointWith is a valid endpoint "a" at line 2 whose keys are replaced by
// the given lines (lines 3 onward), each indented under the name.
func endpointWith(body ...string) string {
	out := "endpoints:\n  - a:\n"
	for _, l := range body {
		out += "      " + l + "\n"
	}
	return out
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []want
	}{{
		name:    "unknown top-level key",
		content: lines("endpoint:", "  - a: {}"),
		want:    []want{{m(1), `unknown key "endpoint"; known: endpoints, interfaces, log, on_stop, metrics`}},
	}, {
		name:    "unknown endpoint key",
		content: endpointWith("iface: eth0", "range: 10.0.0.0/8", "allow: []", "alow: [x]"),
		want:    []want{{m(6), `unknown key "alow" in endpoint "a"; known: iface, range, allow, proto, ports, mode, deny`}},
	}, {
		name:    "missing allow",
		content: endpointWith("iface: eth0", "range: 10.0.0.0/8"),
		want:    []want{{m(2), `endpoint "a": missing allow; write allow: [] to deny everyone`}},
	}, {
		name:    "null allow",
		content: endpointWith("iface: eth0", "range: 10.0.0.0/8", "allow:"),
		want:    []want{{m(5), `endpoint "a": allow is empty; write allow: [] to deny everyone`}},
	}, {
		name:    "missing iface and range",
		content: endpointWith("allow: []"),
		want: []want{
			{m(2), `endpoint "a": missing iface`},
			{m(2), `endpoint "a": missing range`},
		},
	}, {
		name:    "empty iface and range",
		content: endpointWith("iface: []", "range: []", "allow: []"),
		want: []want{
			{m(3), `endpoint "a": iface is empty; name at least one interface name or glob`},
			{m(4), `endpoint "a": range is empty; name at least one address or CIDR prefix`},
		},
	}, {
		name: "duplicate endpoint in one file",
		content: lines(
			"endpoints:",
			"  - a: {iface: eth0, range: 10.0.0.0/8, allow: []}",
			"  - b: {iface: eth0, range: 10.1.0.0/16, allow: []}",
			"  - a: {iface: eth1, range: 10.2.0.0/16, allow: []}"),
		want: []want{{m(4), `duplicate endpoint "a" (first at line 2)`}},
	}, {
		name: "bad endpoint names",
		content: lines(
			"endpoints:",
			`  - "my ep": {iface: eth0, range: 10.0.0.0/8, allow: []}`,
			`  - "": {iface: eth0, range: 10.1.0.0/16, allow: []}`,
			`  - "bell\a": {iface: eth0, range: 10.2.0.0/16, allow: []}`),
		want: []want{
			{m(2), `endpoint name "my ep" contains whitespace`},
			{m(3), `endpoint name is empty`},
			{m(4), `endpoint name "bell\a" contains unprintable characters`},
		},
	}, {
		name:    "settings not indented under the name",
		content: lines("endpoints:", "  - imdsv2:", "    iface: eth0", "    range: 10.0.0.0/8", "    allow: []"),
		want:    []want{{m(2), `endpoints item has several keys (imdsv2, iface, range, allow); iface, range and allow must be indented under the endpoint name`}},
	}, {
		name:    "two names in one item",
		content: lines("endpoints:", "  - a: {iface: eth0, range: 10.0.0.0/8, allow: []}", "    b: {iface: eth0, range: 10.1.0.0/8, allow: []}"),
		want:    []want{{m(2), `endpoints item has several names (a, b)`}},
	}, {
		name:    "item is not a mapping",
		content: lines("endpoints:", "  - imdsv2", "  - []"),
		want: []want{
			{m(2), `each endpoints item must be a single-key mapping "name: {iface, range, allow}", not the string "imdsv2"`},
			{m(3), `each endpoints item must be a single-key mapping`},
		},
	}, {
		name:    "endpoint without settings",
		content: lines("endpoints:", "  - imdsv2:"),
		want:    []want{{m(2), `endpoint "imdsv2" has no settings`}},
	}, {
		name:    "endpoint settings not a mapping",
		content: lines("endpoints:", "  - imdsv2: [eth0]"),
		want:    []want{{m(2), `endpoint "imdsv2" must be a mapping of iface, range and allow, not a list`}},
	}, {
		name:    "endpoints not a list",
		content: lines("endpoints:", "  imdsv2: {iface: eth0, range: 10.0.0.0/8, allow: []}"),
		want:    []want{{m(2), `endpoints must be a list of "- name: {iface, range, allow}" items, not a mapping`}},
	}, {
		name: "ranges",
		content: endpointWith(
			"iface: eth0",             // 3
			"allow: []",               // 4
			"range:",                  // 5
			"  - 10.0.0.1/8",          // 6
			"  - fe80::1%eth0",        // 7
			"  - not-an-ip",           // 8
			"  - 10.0.0.0/33",         // 9
			"  - 192.0.2.1",           // 10
			"  - ::ffff:192.0.2.1",    // 11
			"  - 7",                   // 12
			"  - ::ffff:10.0.0.1/104", // 13
			"  - fe80::/10",           // 14
			"  - FE80::/10",           // 15
		),
		want: []want{
			{m(6), `endpoint "a": range 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?`},
			{m(7), `endpoint "a": range "fe80::1%eth0" has a zone (%eth0); zones are not allowed`},
			{m(8), `endpoint "a": range "not-an-ip" is not an IP address or CIDR prefix`},
			{m(9), `endpoint "a": range "10.0.0.0/33" is not a valid CIDR prefix`},
			{m(11), `endpoint "a": duplicate range ::ffff:192.0.2.1 (same as 192.0.2.1 at line 10)`},
			{m(12), `endpoint "a": range entry must be a string, not the number 7; quote it`},
			{m(13), `range ::ffff:10.0.0.1/104 has host bits set; did you mean ::ffff:10.0.0.0/104?`},
			{m(15), `duplicate range FE80::/10 (same as fe80::/10 at line 14)`},
		},
	}, {
		name: "ifaces",
		content: endpointWith(
			"range: 10.0.0.0/8",    // 3
			"allow: []",            // 4
			"iface:",               // 5
			"  - eth0",             // 6
			"  - eth0",             // 7
			"  - abcdefghijklmnop", // 8
			"  - a/b",              // 9
			`  - "a:b"`,            // 10
			`  - ".."`,             // 11
			`  - "eth["`,           // 12
			`  - "veth*"`,          // 13
			"  - eth0.100",         // 14
			"  - abcdefghijklmno",  // 15
			`  - "wg *"`,           // 16
			`  - ""`,               // 17
			"  - 0",                // 18
		),
		want: []want{
			{m(7), `endpoint "a": duplicate iface "eth0" (first at line 6)`},
			{m(8), `interface name "abcdefghijklmnop" is 16 bytes long; Linux allows at most 15`},
			{m(9), `interface name "a/b" contains '/', ':' or whitespace`},
			{m(10), `interface name "a:b" contains '/', ':' or whitespace`},
			{m(11), `interface name ".." is not allowed by Linux`},
			{m(12), `interface glob "eth[" is malformed: syntax error in pattern`},
			{m(16), `interface glob "wg *" contains '/' or whitespace`},
			{m(17), `interface name is empty`},
			{m(18), `endpoint "a": iface entry must be a string, not the number 0; quote it`},
		},
	}, {
		name: "principals",
		content: endpointWith(
			"iface: eth0",         // 3
			"range: 10.0.0.0/8",   // 4
			"allow:",              // 5
			"  - 1005",            // 6
			"  - uid:4294967295",  // 7
			"  - uid:4294967294",  // 8
			"  - uid:abc",         // 9
			`  - "group:"`,        // 10
			"  - gid:5",           // 11
			`  - "1005"`,          // 12
			`  - "al ice"`,        // 13
			"  - true",            // 14
			"  - uid:5",           // 15
			"  - uid:05",          // 16
			`  - "*"`,             // 17
			`  - '*'`,             // 18
			`  - "uid:"`,          // 19
			"  - {alice: 1}",      // 20
			"  - uid:99999999999", // 21
		),
		want: []want{
			{m(6), `endpoint "a": allow entry 1005 is a number; write uid:1005 for a uid`},
			{m(7), `endpoint "a": uid:4294967295 is out of range; uids are 0..4294967293 (4294967294 is reserved, 4294967295 means "no uid")`},
			{m(8), `endpoint "a": uid 4294967294 is reserved: net-tc-filter uses it for an owner it could not read`},
			{m(9), `endpoint "a": uid:abc is not a uid`},
			{m(10), `endpoint "a": empty group name`},
			{m(11), `endpoint "a": allow entry "gid:5" has an unknown form; use a user name, uid:N, group:NAME, unit:NAME, cgroup:PATH, "*" or unowned`},
			{m(12), `endpoint "a": allow entry "1005" is all digits; write uid:1005 for a uid`},
			{m(13), `endpoint "a": user name "al ice" contains whitespace`},
			{m(14), `endpoint "a": allow entry must be a string, not the boolean true; quote it`},
			{m(16), `endpoint "a": duplicate allow entry "uid:05" (same as "uid:5" at line 15)`},
			{m(18), `endpoint "a": duplicate allow entry "*" (same as "*" at line 17)`},
			{m(19), `endpoint "a": uid: is not a uid`},
			{m(20), `endpoint "a": allow entry must be a string, not a mapping`},
			{m(21), `endpoint "a": uid:99999999999 is out of range`},
		},
	}, {
		name: "interfaces",
		content: lines(
			"interfaces:",              // 1
			"  eth0: {default: allw}",  // 2
			"  eth1: {defualt: allow}", // 3
			`  "a/b": {default: deny}`, // 4
			"  eth2: deny",             // 5
			"  eth3:",                  // 6
			`  "eth[": {}`,             // 7
			"  eth4: {default: Deny}",  // 8
		),
		want: []want{
			{m(2), `interface "eth0": default must be one of allow, deny, not the string "allw"`},
			{m(3), `unknown key "defualt" in interface "eth1"; known: default, mode, deny`},
			{m(4), `interfaces: interface name "a/b" contains '/', ':' or whitespace`},
			{m(5), `interface "eth2" must be a mapping like {default: deny}, not the string "deny"`},
			{m(7), `interfaces: interface glob "eth[" is malformed`},
			{m(8), `interface "eth4": default must be one of allow, deny, not the string "Deny"`},
		},
	}, {
		name: "deny modes",
		content: lines(
			"interfaces:",             // 1
			"  eth0: {deny: dorp}",    // 2
			"  eth1: {deny: Drop}",    // 3
			"  eth2: {deny: [drop]}",  // 4
			"endpoints:",              // 5
			"  - a:",                  // 6
			"      iface: eth0",       // 7
			"      range: 10.0.0.0/8", // 8
			"      allow: []",         // 9
			"      deny: silent",      // 10
		),
		want: []want{
			{m(2), `interface "eth0": deny must be one of reject, drop, not the string "dorp"`},
			{m(3), `interface "eth1": deny must be one of reject, drop, not the string "Drop"`},
			{m(4), `interface "eth2": deny must be one of reject, drop, not a list`},
			{m(10), `endpoint "a": deny must be one of reject, drop, not the string "silent"`},
		},
	}, {
		name:    "interfaces not a mapping",
		content: lines("interfaces: [eth0]"),
		want:    []want{{m(1), `interfaces must be a mapping of interface name or glob to {default: allow|deny}, not a list`}},
	}, {
		name: "log and on_stop",
		content: lines(
			"log:",              // 1
			"  level: verbose",  // 2
			"  decisions: some", // 3
			"  rate: 0",         // 4
			"  colour: red",     // 5
			"on_stop: remove",   // 6
		),
		want: []want{
			{m(2), `log.level must be one of debug, info, warn, error, not the string "verbose"`},
			{m(3), `log.decisions must be one of none, denied, all, not the string "some"`},
			{m(4), `log.rate must be between 1 and 2147483647, not 0`},
			{m(5), `unknown key "colour" in log; known: level, decisions, rate`},
			{m(6), `on_stop must be one of detach, keep, not the string "remove"`},
		},
	}, {
		name:    "log.rate as a string",
		content: lines("log:", `  rate: "50"`),
		want:    []want{{m(2), `log.rate must be an integer >= 1, not the string "50"`}},
	}, {
		name:    "log.rate as a fraction",
		content: lines("log: {rate: 1.5}"),
		want:    []want{{m(1), `log.rate must be an integer >= 1, not the number 1.5`}},
	}, {
		name:    "log.rate too large",
		content: lines("log: {rate: 18446744073709551615}"),
		want:    []want{{m(1), `log.rate must be between 1 and 2147483647, not 18446744073709551615`}},
	}, {
		name:    "log not a mapping",
		content: lines("on_stop: keep", "log: info"),
		want:    []want{{m(2), `log must be a mapping of level, decisions, rate, not the string "info"`}},
	}, {
		name:    "null scalar",
		content: lines("on_stop:"),
		want:    []want{{m(1), `on_stop must be one of detach, keep, not empty`}},
	}, {
		name:    "YAML syntax error",
		content: lines("log:", "  level: info", "  rate 5", "  decisions: all"),
		want:    []want{{m(3), `YAML syntax: could not find expected ':'`}},
	}, {
		name:    "unquoted IPv6 range in a flow list",
		content: endpointWith("iface: eth0", "allow: []", "range: [::1/128]"),
		// The YAML library names the line before the culprit here.
		want: []want{{m(4), `YAML syntax: did not find expected node content (at or just after this line; a value starting with ':' inside [...], like an IPv6 range ::1/128, must be quoted: "::1/128")`}},
	}, {
		name:    "duplicate YAML keys",
		content: lines("on_stop: keep", "log: {}", "on_stop: detach", "log: {}"),
		want: []want{
			{m(3), `YAML: mapping key "on_stop" already defined at line 1`},
			{m(4), `YAML: mapping key "log" already defined at line 2`},
		},
	}, {
		name:    "second document",
		content: lines("on_stop: keep", "log: {rate: 0}", "---", "on_stop: never"),
		want: []want{
			{m(2), `log.rate must be between 1 and`},
			{m(3), `a second YAML document starts here`},
		},
	}, {
		name: "mode",
		content: lines(
			"endpoints:", // 1
			"  - a: {iface: eth0, range: 10.0.0.0/8, allow: [], mode: audti}",  // 2
			"  - b: {iface: eth0, range: 10.1.0.0/16, allow: [], mode: Audit}", // 3
			"  - c: {iface: eth0, range: 10.2.0.0/16, allow: [], mode: true}",  // 4
			"  - d: {iface: eth0, range: 10.3.0.0/16, allow: [], mode: audit}", // 5
			"interfaces:", // 6
			"  eth0: {default: deny, mode: enforcing}", // 7
			"  eth1: {default: deny, mode: audit}",     // 8
		),
		want: []want{
			{m(2), `endpoint "a": mode must be one of enforce, audit, not the string "audti"`},
			{m(3), `endpoint "b": mode must be one of enforce, audit, not the string "Audit"`},
			{m(4), `endpoint "c": mode must be one of enforce, audit, not`},
			{m(7), `interface "eth0": mode must be one of enforce, audit, not the string "enforcing"`},
		},
	}, {
		name:    "top level is a list",
		content: lines("- imdsv2: {}"),
		want:    []want{{m(1), `the top level must be a mapping of settings (endpoints, interfaces, log, on_stop, metrics), not a list`}},
	}, {
		name:    "top level is a scalar",
		content: lines("# comment", "hello"),
		want:    []want{{m(2), `the top level must be a mapping of settings (endpoints, interfaces, log, on_stop, metrics), not the value "hello"`}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSet(t, map[string]string{mainName: tt.content})
			cfg, err := loadSet(t, dir)
			checkErrors(t, dir, cfg, err, tt.want)
		})
	}
}

// TestDropInErrorsNameTheDropIn checks positions in a file other than the
// main one, including a YAML error's.
func TestDropInErrorsNameTheDropIn(t *testing.T) {
	dir := writeSet(t, map[string]string{
		mainName:         seed,
		"conf.d/a.yml":   lines("# a", "endpoints:", "  - x: {iface: eth0, range: 10.0.0.0/8, alow: []}"),
		"conf.d/b.yml":   lines("log:", "\tlevel: info"),
		"conf.d/c.yml":   lines("interfaces: {eth0: {default: allow}}"),
		"conf.d/d-x.yml": lines("interfaces:", "  - eth0"),
	})
	cfg, err := loadSet(t, dir)
	checkErrors(t, dir, cfg, err, []want{
		{"conf.d/a.yml:3", `unknown key "alow" in endpoint "x"`},
		{"conf.d/a.yml:3", `endpoint "x": missing allow`},
		{"conf.d/b.yml:2", `YAML syntax: found character that cannot start any token`},
		{"conf.d/d-x.yml:2", `interfaces must be a mapping`},
	})
}
