// SPDX-License-Identifier: Apache-2.0

package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// fileParser decodes one file and collects its problems.
type fileParser struct {
	file string
	errs Errors
	// lastSite is the last endpoint's file and interface list, which the
	// next one shares when it lists the same: a file of many endpoints
	// mostly names one interface list, and the parse cache keeps every
	// endpoint.
	lastSite *Site
}

func (p *fileParser) at(line int, format string, args ...any) {
	p.errs = append(p.errs, Error{Pos: Pos{File: p.file, Line: line}, Msg: fmt.Sprintf(format, args...)})
}

func (p *fileParser) pos(line int) Pos { return Pos{File: p.file, Line: line} }

// parseFile turns one file's bytes into its settings. A file in the plain
// subset of YAML that configurations are written in is read by the fast
// path (fastParser.parse); any other is parsed once, into a yaml.v3 node
// tree, the values are decoded from that tree (yaml.v3's own rules for
// tags, merges and aliases, as yaml.Unmarshal would apply them) and the
// tree gives every problem its line. Both give the walk the same values
// and lines.
//
// Each file is a document of its own, merged with the others by SPEC's
// rules (merge in load.go), so no generic configuration layer sits between
// the tree and those rules. fast is the fast path's parser, which a loader
// reuses for all of its files; nil: a new one.
func parseFile(file string, data []byte, fast *fastParser) (fileSettings, Errors) {
	p := &fileParser{file: file}
	// The YAML library names no line for bytes it cannot read.
	if line, msg, ok := checkText(data); !ok {
		p.at(line, "%s", msg)
		return fileSettings{}, p.errs
	}
	if fast == nil {
		fast = new(fastParser)
	}
	root, ok := fast.parse(data)
	if !ok {
		root, ok = p.decode(data)
	}
	if !ok {
		return fileSettings{}, p.errs
	}
	return p.top(root), p.errs
}

// decode parses data with yaml.v3: the top-level mapping's values, with
// the node tree for their lines. ok is false for a file with no settings
// (problems, if any, are reported).
func (p *fileParser) decode(data []byte) (val, bool) {
	doc, root, ok := p.tree(data)
	if !ok || root == nil {
		return val{}, false
	}
	var m map[string]any
	if err := doc.Decode(&m); err != nil {
		p.yamlError(err, data, root)
		return val{}, false
	}
	return newVal(m, root, 1), true
}

// tree parses data into a node tree and returns its document node and its
// top-level mapping; the mapping is nil for a file with nothing in it
// (empty, comments only, or a bare null).
func (p *fileParser) tree(data []byte) (doc, root *yamlv3.Node, ok bool) {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	doc = new(yamlv3.Node)
	if err := dec.Decode(doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, true
		}
		p.yamlError(err, data, nil)
		return nil, nil, false
	}
	// A second document is reported, but the first is still checked.
	p.singleDocument(dec, data)
	root = resolve(doc)
	switch {
	case root == nil || root.ShortTag() == "!!null":
		return nil, nil, true
	case root.Kind != yamlv3.MappingNode:
		p.at(root.Line, "the top level must be a mapping of settings (%s), not %s", strings.Join(topKeys(), ", "), nodeKind(root))
		return nil, nil, false
	}
	return doc, root, true
}

// singleDocument refuses a second "---" document: the YAML library would
// silently drop it, and with it whatever it denies.
func (p *fileParser) singleDocument(dec *yamlv3.Decoder, data []byte) {
	var next yamlv3.Node
	err := dec.Decode(&next)
	switch {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.yamlError(err, data, nil)
	default:
		p.at(next.Line, "a second YAML document starts here; a configuration file holds one document")
	}
}

// yamlError turns the YAML library's messages ("yaml: line N: ...") into
// positioned Errors, one per problem it found. root is the file's node
// tree where it could be parsed, to find the line of a problem the
// library names none for.
func (p *fileParser) yamlError(err error, data []byte, root *yamlv3.Node) {
	var te *yamlv3.TypeError
	if errors.As(err, &te) {
		for _, m := range te.Errors {
			line, msg := splitYAMLLine(m)
			if line == 0 {
				line = lineOf(msg, data, root)
			}
			p.at(line, "YAML: %s", msg)
		}
		return
	}
	line, msg := splitYAMLLine(strings.TrimPrefix(err.Error(), "yaml: "))
	if line == 0 {
		line = lineOf(msg, data, root)
	}
	p.at(line, "YAML syntax: %s%s", msg, syntaxHint(msg))
}

// syntaxHint explains the one YAML trap this format sets: IPv6 ranges such
// as ::1/128 start with ':', which YAML does not accept unquoted inside
// [...]. The library then also names a line at or just before the culprit.
func syntaxHint(msg string) string {
	if msg != "did not find expected node content" {
		return ""
	}
	return ` (at or just after this line; a value starting with ':' inside [...], like an IPv6 range ::1/128, must be quoted: "::1/128")`
}

func splitYAMLLine(s string) (int, string) {
	rest, ok := strings.CutPrefix(s, "line ")
	if !ok {
		return 0, s
	}
	num, msg, ok := strings.Cut(rest, ": ")
	n, err := strconv.Atoi(num)
	if !ok || err != nil {
		return 0, s
	}
	return n, msg
}

// val is one value as decoded from the tree, with the node it came from.
// The node only supplies lines: a value whose node cannot be found (keys
// pulled in by a "<<" merge under another spelling, say) is still checked,
// and reported at the nearest enclosing line.
type val struct {
	v    any
	n    *yamlv3.Node // aliases resolved; nil when unknown
	line int
}

// newVal positions v at the line where it is written; for an alias that is
// the line of the "*name", not of the anchor.
func newVal(v any, n *yamlv3.Node, fallback int) val {
	line := fallback
	if n != nil && n.Line > 0 {
		line = n.Line
	}
	return val{v: v, n: resolve(n), line: line}
}

func resolve(n *yamlv3.Node) *yamlv3.Node {
	for n != nil {
		switch {
		case n.Kind == yamlv3.AliasNode:
			n = n.Alias
		case n.Kind == yamlv3.DocumentNode && len(n.Content) > 0:
			n = n.Content[0]
		case n.Kind == yamlv3.DocumentNode:
			return nil
		default:
			return n
		}
	}
	return nil
}

// field is one key of a mapping.
type field struct {
	key  string
	line int // line of the key
	val  val
}

// asMap reports whether v is a mapping. yaml.v3 decodes a mapping whose
// keys are not all strings (1: x, true: y) as map[any]any; its keys are
// compared as they print, so that they are named in messages as written.
func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, x := range m {
			out[fmt.Sprint(k)] = x
		}
		return out, true
	}
	return nil, false
}

// fields lists a mapping's keys in the order they are written (a line's
// by name).
func (v val) fields() []field {
	if fm, ok := v.v.(fastMap); ok {
		return slices.Clip([]field(fm))
	}
	m, _ := asMap(v.v)
	out := make([]field, 0, len(m))
	for k, x := range m {
		kn, vn := findKey(v.n, k)
		kl := v.line
		if kn != nil {
			kl = kn.Line
		}
		out = append(out, field{key: k, line: kl, val: newVal(x, vn, kl)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].line != out[j].line {
			return out[i].line < out[j].line
		}
		return out[i].key < out[j].key
	})
	return out
}

// findKey finds key in a mapping node, looking through "<<" merges the way
// the decoder does: keys written directly win over merged ones.
func findKey(n *yamlv3.Node, key string) (k, v *yamlv3.Node) {
	if n == nil || n.Kind != yamlv3.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if c := n.Content[i]; c.Kind == yamlv3.ScalarNode && c.ShortTag() != "!!merge" && c.Value == key {
			return c, n.Content[i+1]
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].ShortTag() == "!!merge" {
			if k, v := findMerged(n.Content[i+1], key); k != nil {
				return k, v
			}
		}
	}
	return nil, nil
}

func findMerged(n *yamlv3.Node, key string) (k, v *yamlv3.Node) {
	n = resolve(n)
	if n != nil && n.Kind == yamlv3.SequenceNode {
		for _, c := range n.Content {
			if k, v := findKey(resolve(c), key); k != nil {
				return k, v
			}
		}
		return nil, nil
	}
	return findKey(n, key)
}

// items lists a sequence's elements.
func (v val) items() []val {
	if fs, ok := v.v.(fastSeq); ok {
		return slices.Clip([]val(fs))
	}
	s, _ := v.v.([]any)
	out := make([]val, len(s))
	for i, x := range s {
		var n *yamlv3.Node
		if v.n != nil && v.n.Kind == yamlv3.SequenceNode && i < len(v.n.Content) {
			n = v.n.Content[i]
		}
		out[i] = newVal(x, n, v.line)
	}
	return out
}

// list accepts a list or a single scalar standing for a one-element list.
func (v val) list() []val {
	if v.isList() {
		return v.items()
	}
	return []val{v}
}

func (v val) isList() bool {
	switch v.v.(type) {
	case []any, fastSeq:
		return true
	}
	return false
}

func (v val) isMap() bool {
	if _, ok := v.v.(fastMap); ok {
		return true
	}
	_, ok := asMap(v.v)
	return ok
}

// empty reports whether v is nothing or an empty list.
func (v val) empty() bool {
	switch x := v.v.(type) {
	case nil:
		return true
	case []any:
		return len(x) == 0
	case fastSeq:
		return len(x) == 0
	}
	return false
}

// describe names a decoded value's type for messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "empty"
	case string:
		return fmt.Sprintf("the string %q", x)
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case int, int64, uint64, float64:
		return fmt.Sprintf("the number %v", x)
	case []any, fastSeq:
		return "a list"
	case fastMap:
		return "a mapping"
	}
	if _, ok := asMap(v); ok {
		return "a mapping"
	}
	return fmt.Sprintf("%v (%T)", v, v)
}

func nodeKind(n *yamlv3.Node) string {
	switch n.Kind {
	case yamlv3.SequenceNode:
		return "a list"
	case yamlv3.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "something else"
}
