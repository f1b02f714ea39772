// SPDX-License-Identifier: Apache-2.0

package config

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fastAccepted are files that must take the fast path: how configurations
// are written (the seed, the shipped files, the generated sets of make
// bench), and the corners of the subset that it reads itself.
var fastAccepted = []string{
	seed,
	benchShaped(3),
	"interfaces:\n  veth0: {default: allow}\nlog:\n  decisions: denied\n  rate: 50\n",
	"log:\n  level: info\n  decisions: denied\n  rate: 50\non_stop: detach\n",
	"endpoints:\n- a:\n    iface: eth0\n    range: 10.0.0.0/8\n    allow: [alice, \"uid:0\", 'group:adm']\n- b: {iface: [eth1], range: [\"fd00::/8\", 10.1.0.0/16], allow: []}\n",
	"# head\n\nendpoints:   # trailing\n  - a:\n      iface:\n        - eth0   # why\n        - \"veth*\"\n      range:\n      - 10.0.0.0/8\n      allow: [x] # c\n      proto: [tcp, 17]\n      ports: [80, \"8000-8100\", 1024-2048]\n",
	"interfaces:\n  \"*\": {default: deny, mode: audit, deny: drop}\n  'eth0': {default: allow}\nmetrics: {listen: \"[::1]:9963\"}\n",
	"log: {rate: 0}\n", // refused by the walk, at the same line
	"log:\n  rate: 12:30\n  level: yes\n  decisions: True\n", // strings and a boolean, each refused
	"endpoints:\n  - a: {iface: [], range: [1.2.3, a], allow: [y, n, \"~x\"]}\n  - b:\n      range: a#b\n",
	"endpoints:\n  - a: [1, 2]\n  - b: {}\n  - c: x\n  - [a]\n  - - nested\n",
	"on_stop: keep\nendpoints: []\nx: {b: 1, a: 2}\n",
	"k: a, b\nl: a:b\nm: 'a #b'\nn: \"\"\n",
}

// fastDeclined are files the fast path must leave to yaml.v3: what it
// does not read, or what YAML reads otherwise than it looks.
var fastDeclined = []string{
	"",
	"# only a comment\n",
	"- a list\n",
	"x\n",
	"a: &x 1\nb: *x\n",
	"a: !!str 1\n",
	"a:\n  <<: {b: 1}\n",
	"a: \"esc\\n\"\n",
	"a: 'it''s'\n",
	"a:\n",
	"a:\nb: 1\n",
	"a: 1\n---\nb: 2\n",
	"---\na: 1\n",
	"%YAML 1.2\n---\na: 1\n",
	"a: 1\na: 2\n",
	"a: {b: 1, b: 2}\n",
	"a: [1,\n  2]\n",
	"a: b\n  c\n",
	"a:\n  - b\n    c\n",
	"a: |\n  x\n",
	"a: >\n  x\n",
	"a:\tb\n",
	"a: b\r\n",
	"\ufeffa: b\n",
	"a: 0x10\n",
	"a: 010\n",
	"a: 1_000\n",
	"a: 1.5\n",
	"a: 1e3\n",
	"a: .inf\n",
	"a: -1\n",
	"a: +1\n",
	"a: 2001-12-14\n",
	"a: 99999999999999999999\n",
	"a: ~\n",
	"1: a\n",
	"true: a\n",
	"null: a\n",
	"a: [::1/128]\n",
	"a: [b: c]\n",
	"a: [b, ]\n",
	"a: [b,, c]\n",
	"a: b: c\n",
	"a: [b] c\n",
	"a: é\n",
	"a:\n   b: 1\n  c: 2\n",
	"a:\n  b: 1\n   c: 2\n",
	"-\n  a: 1\n",
	"? a\n: b\n",
	"a: [b?c]\n",
	strings.Repeat("k", 1001) + ": v\n",
	"a: {" + strings.Repeat("k", 1001) + ": v}\n", // the same in a flow
}

// benchShaped is a drop-in in the shape make bench generates.
func benchShaped(n int) string {
	var s strings.Builder
	s.WriteString("endpoints:\n")
	for i := range n {
		fmt.Fprintf(&s, "  - r%d:\n      iface: [veth0]\n      range: [10.%d.%d.%d/30]\n      allow: [\"uid:%d\"]\n", i, i>>16&0xff, i>>8&0xff, i&0xff, 300000+i)
	}
	return s.String()
}

func TestFastYAMLAccepts(t *testing.T) {
	files := append([]string{}, fastAccepted...)
	shipped, err := filepath.Glob("../../conf/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	examples, _ := filepath.Glob("../../conf/examples/*.yml")
	for _, name := range append(shipped, examples...) {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, string(data))
	}
	if len(files) < len(fastAccepted)+4 {
		t.Fatalf("found %d shipped files", len(files)-len(fastAccepted))
	}
	for _, data := range files {
		if _, ok := new(fastParser).parse([]byte(data)); !ok {
			t.Errorf("fast path declined:\n%s", data)
			continue
		}
		sameAsYAML(t, []byte(data))
	}
}

func TestFastYAMLDeclines(t *testing.T) {
	for _, data := range fastDeclined {
		if _, ok := new(fastParser).parse([]byte(data)); ok {
			t.Errorf("fast path read %q", data)
		}
	}
}

// TestFastYAMLReuse: a parser reused for the next file leaves what the
// last one parsed to as it was; nothing of the settings lives in the
// memory the parser reuses.
func TestFastYAMLReuse(t *testing.T) {
	var fp fastParser
	a := []byte(benchShaped(2000) + "interfaces:\n  eth0: {default: allow}\n")
	b := []byte(strings.ReplaceAll(strings.ReplaceAll(benchShaped(2500), "veth0", "wg1"), "uid:", "uid:9"))
	gotA, errsA := parseFile("a.yml", a, &fp)
	gotB, errsB := parseFile("b.yml", b, &fp)
	wantA, wantErrsA := parseFile("a.yml", a, nil)
	wantB, wantErrsB := parseFile("b.yml", b, nil)
	if len(wantA.endpoints) != 2000 || len(wantB.endpoints) != 2500 {
		t.Fatalf("parsed %d and %d endpoints", len(wantA.endpoints), len(wantB.endpoints))
	}
	if !reflect.DeepEqual(gotA, wantA) || !reflect.DeepEqual(errsA, wantErrsA) {
		t.Error("the first file's settings changed when the parser read the second")
	}
	if !reflect.DeepEqual(gotB, wantB) || !reflect.DeepEqual(errsB, wantErrsB) {
		t.Error("the second file's settings differ from a fresh parser's")
	}
}

// TestFastYAMLGenerated writes random documents in the subset's shapes
// and around them — block and flow collections nested at random, compact
// and indented lists, comments, and scalars picked from what YAML reads in
// surprising ways (dates, floats, other bases, booleans, nulls, colons,
// hashes, quotes) — and holds the fast path to yaml.v3 on each it reads.
// Byte-mutating fuzzing rarely builds a valid nested document; this does,
// and it must take the fast path often enough to mean something.
func TestFastYAMLGenerated(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 2))
	scalars := []string{
		"a", "eth0", "veth*", "10.0.0.0/8", "10.0.0.1", "1.2.3", "fd00::1/128", "fd00:ec2::254",
		"uid:0", "unit:a.service", "group:adm", "0", "7", "80", "007", "0x1F", "0o17", "0b101",
		"1_000", "1.5", "1.", "1e3", "-1", "+1", ".5", ".inf", "-.inf", ".nan", "2001-12-14",
		"2001-12-14 21:59:43", "1024-2048", "8000-8080-1", "12:30", "true", "True", "TRUE",
		"false", "yes", "no", "on", "off", "y", "n", "~", "null", "Null", "NULL", "a#b", "a #b",
		"a:b", "a: b", "a:", "::1", "<<", "&x", "*x", "!x", "|", ">", "%x", "@x", "`x`",
		"? a", "- a", "-a", "[a]", "{a}", "a,b", "a]", "\"q\"", "'q'", "\"q #c\"", "'a''b'",
		"\"a\\nb\"", "\"\"", "''", "x y", "x  y", "déjà", "a\tb",
	}
	keys := []string{"endpoints", "iface", "range", "allow", "proto", "ports", "mode", "deny",
		"interfaces", "default", "log", "rate", "level", "decisions", "on_stop", "metrics", "listen",
		"a", "b", "r1", "\"q\"", "'s'", "1", "true", "null", "a b", "a:b", "x-y"}
	pick := func(l []string) string { return l[r.IntN(len(l))] }
	var flow func(depth int) string
	flow = func(depth int) string {
		n := r.IntN(4)
		parts := make([]string, n)
		mapping := r.IntN(2) == 0
		for i := range parts {
			v := pick(scalars)
			if depth < 2 && r.IntN(4) == 0 {
				v = flow(depth + 1)
			}
			if mapping {
				v = pick(keys) + ": " + v
			}
			parts[i] = v
		}
		sep := pick([]string{", ", ",", " , "})
		if mapping {
			return "{" + strings.Join(parts, sep) + "}"
		}
		return "[" + strings.Join(parts, sep) + "]"
	}
	comment := func() string {
		if r.IntN(5) == 0 {
			return pick([]string{" # c", "  #c", " #", "#c"})
		}
		return ""
	}
	var block func(b *strings.Builder, indent, depth int, seq bool)
	value := func(b *strings.Builder, indent, depth int) {
		switch k := r.IntN(6); {
		case k < 3 || depth > 3:
			b.WriteString(" " + pick(scalars) + comment() + "\n")
			if r.IntN(10) == 0 {
				// A line more indented than the key: a multi-line
				// scalar, or an error, to yaml.v3.
				b.WriteString(strings.Repeat(" ", indent+1+r.IntN(3)) + pick(scalars) + "\n")
			}
		case k == 3:
			b.WriteString(" " + flow(0) + comment() + "\n")
		default:
			b.WriteString(comment() + "\n")
			step := 1 + r.IntN(4)
			if k == 5 && r.IntN(2) == 0 {
				step = 0 // a list at its key's indent
			}
			block(b, indent+step, depth+1, k == 5)
		}
	}
	block = func(b *strings.Builder, indent, depth int, seq bool) {
		pad := strings.Repeat(" ", indent)
		for range 1 + r.IntN(3) {
			if r.IntN(8) == 0 {
				b.WriteString(pick([]string{"\n", pad + "# note\n", "# é\n"}))
			}
			if !seq {
				b.WriteString(pad + pick(keys) + ":")
				value(b, indent, depth)
				continue
			}
			b.WriteString(pad + "-")
			switch k := r.IntN(4); {
			case k == 0 && depth < 4:
				// "- key: value": a mapping whose keys line up after "- ".
				b.WriteString(" " + pick(keys) + ":")
				value(b, indent+2, depth)
				if r.IntN(2) == 0 {
					b.WriteString(pad + "  " + pick(keys) + ":")
					value(b, indent+2, depth)
				}
			case k == 1:
				b.WriteString(" " + flow(0) + comment() + "\n")
			default:
				b.WriteString(" " + pick(scalars) + comment() + "\n")
			}
		}
	}
	const docs = 20000
	read := 0
	for range docs {
		var b strings.Builder
		block(&b, 0, 0, false)
		data := []byte(b.String())
		if _, _, ok := checkText(data); !ok {
			continue
		}
		if _, ok := new(fastParser).parse(data); ok {
			read++
			sameAsYAML(t, data)
			if t.Failed() {
				return
			}
		}
	}
	// Most scalars above send a document to yaml.v3; a fifth or so of
	// the documents must still be read by the fast path.
	if read < docs/10 {
		t.Errorf("the fast path read %d of %d documents", read, docs)
	}
	t.Logf("the fast path read %d of %d documents", read, docs)
}

// FuzzFastYAML holds the fast path to yaml.v3: whatever it reads, it reads
// as yaml.v3 does, value for value and line for line, and the settings and
// problems of the file are the same whichever parser ran.
func FuzzFastYAML(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s.main))
		f.Add([]byte(s.dropIn))
	}
	for _, s := range append(fastAccepted, fastDeclined...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, _, ok := checkText(data); !ok {
			return
		}
		if _, ok := new(fastParser).parse(data); ok {
			sameAsYAML(t, data)
		}
	})
}

// sameAsYAML checks that the fast path reads data as yaml.v3 does.
func sameAsYAML(t *testing.T, data []byte) {
	t.Helper()
	fast, _ := new(fastParser).parse(data)
	p := &fileParser{file: "f.yml"}
	slow, ok := p.decode(data)
	if !ok {
		t.Errorf("yaml.v3 finds no settings in what the fast path read: %v\n%s", p.errs, data)
		return
	}
	if got, want := canonical(fast), canonical(slow); !reflect.DeepEqual(got, want) {
		t.Errorf("fast path read\n%#v\nyaml.v3 read\n%#v\nfrom\n%s", got, want, data)
		return
	}
	gotS, gotErrs := parseFile("f.yml", data, nil)
	wantS, wantErrs := p.top(slow), p.errs
	if !reflect.DeepEqual(gotS, wantS) || !reflect.DeepEqual(gotErrs, wantErrs) {
		t.Errorf("settings differ: fast %+v %v, yaml.v3 %+v %v\n%s", gotS, gotErrs, wantS, wantErrs, data)
	}
}

// canonical is what the walk can see of a value: its line, a scalar's Go
// value and type, a list's items, a mapping's fields in fields() order.
type canonVal struct {
	Line   int
	V      any
	Items  []canonVal
	Fields []canonField
}

type canonField struct {
	Key  string
	Line int
	Val  canonVal
}

func canonical(v val) canonVal {
	c := canonVal{Line: v.line}
	switch {
	case v.isMap():
		c.Fields = []canonField{}
		for _, f := range v.fields() {
			c.Fields = append(c.Fields, canonField{f.key, f.line, canonical(f.val)})
		}
	case v.isList():
		c.Items = []canonVal{}
		for _, it := range v.items() {
			c.Items = append(c.Items, canonical(it))
		}
	default:
		c.V = v.v
	}
	c.V = fmt.Sprintf("%T %#v", c.V, c.V)
	return c
}
