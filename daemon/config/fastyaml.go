// SPDX-License-Identifier: Apache-2.0

package config

import (
	"slices"
	"strconv"
	"strings"
)

// parse decodes a file written in the plain subset of YAML that
// configurations are written in, straight into the values the walk reads,
// each with its line: block mappings and sequences indented with spaces,
// flow lists and mappings on one line, plain and simply quoted scalars,
// comments. It is parseFile's fast path (issue 19: yaml.v3's node tree and
// the decoding of the values from it were three quarters of a 100 000-range
// start) and never its judge: on anything outside that subset — anchors,
// aliases, tags, merges, escapes, multi-line scalars, empty values, tabs,
// carriage returns, a second document, a duplicate key, a key or scalar
// that YAML could read otherwise — it returns false, and yaml.v3 parses
// the file as before. Where it returns true, its values and lines are the
// ones yaml.v3's would be (FuzzFastYAML holds it to that), so that the
// walk, its checks and its messages never depend on which parser ran.
//
// What it returns lives in the parser's memory, valid until its next
// parse: a loader reads a hundred drop-ins through one parser, so that
// their trees take the memory of one (on a fresh daemon every page of new
// memory is a page fault, and at 100 000 ranges the trees were a third of
// the start's). Nothing the walk makes of a tree refers to it: fileSettings
// holds strings and values, not vals.
func (p *fastParser) parse(data []byte) (val, bool) {
	p.reset()
	if !p.splitLines(data) || len(p.lines) == 0 || p.lines[0].indent != 0 {
		return val{}, false
	}
	root, ok := p.block(0)
	if !ok || p.i != len(p.lines) {
		return val{}, false
	}
	if _, isMap := root.v.(fastMap); !isMap {
		return val{}, false
	}
	return root, true
}

// reset forgets the last file, keeping the memory.
func (p *fastParser) reset() {
	clear(p.lines)
	p.lines, p.i = p.lines[:0], 0
	clear(p.fields)
	clear(p.items)
	p.fields, p.items = p.fields[:0], p.items[:0]
	p.fieldSlab.reset()
	p.itemSlab.reset()
}

// fastMap and fastSeq are a mapping and a list as the fast path decodes them:
// a mapping's fields in the order fields() gives them, a list's items.
type (
	fastMap []field
	fastSeq []val
)

type fastLine struct {
	num    int    // 1-based line number
	indent int    // leading spaces
	text   string // the rest, up to the end of the line, comment included
}

type fastParser struct {
	lines []fastLine // lines with content: no blank or comment-only lines
	i     int        // the next line to read
	// The fields and items of the collections being read, and the slabs
	// that the finished collections' are moved to: a drop-in has a
	// thousand endpoints of four small mappings and lists each, which
	// would otherwise each grow a slice of their own.
	fields    []field
	items     []val
	fieldSlab slab[field]
	itemSlab  slab[val]
	words     map[string]string // see own
}

// keepFields moves the fields pushed since start off the stack.
func (p *fastParser) keepFields(start int) fastMap {
	out := p.fieldSlab.keep(p.fields[start:])
	clear(p.fields[start:])
	p.fields = p.fields[:start]
	return out
}

// keepItems moves the items pushed since start off the stack.
func (p *fastParser) keepItems(start int) fastSeq {
	out := p.itemSlab.keep(p.items[start:])
	clear(p.items[start:])
	p.items = p.items[:start]
	return out
}

// slab hands out slices of chunks that are reused after reset.
type slab[T any] struct {
	chunks [][]T
	cur    int // the chunk being filled
}

const slabChunk = 1024

// keep copies xs into the slab.
func (s *slab[T]) keep(xs []T) []T {
	n := len(xs)
	if n == 0 {
		return []T{}
	}
	for s.cur < len(s.chunks) && cap(s.chunks[s.cur])-len(s.chunks[s.cur]) < n {
		s.cur++
	}
	if s.cur == len(s.chunks) {
		s.chunks = append(s.chunks, make([]T, 0, max(n, slabChunk)))
	}
	c := append(s.chunks[s.cur], xs...)
	s.chunks[s.cur] = c
	return c[len(c)-n : len(c) : len(c)]
}

// reset makes the chunks free again, dropping what they refer to.
func (s *slab[T]) reset() {
	for i, c := range s.chunks {
		clear(c)
		s.chunks[i] = c[:0]
	}
	s.cur = 0
}

// own returns a string of the file that may outlive the parse as one of
// its own: the file's text is one string, which a name kept as a slice of
// it would keep whole (50 bytes a range at 100 000 ranges). The words of
// the format are shared rather than copied.
func (p *fastParser) own(s string) string {
	if p.words == nil {
		p.words = map[string]string{}
		for _, list := range [][]string{topKeys(), endpointKeys(), interfaceKeys(), logKeys(), metricsKeys(),
			actions(), modes(), denyModes(), logLevels(), logDecisions(), onStops()} {
			for _, w := range list {
				p.words[w] = w
			}
		}
	}
	if w, ok := p.words[s]; ok {
		return w
	}
	return strings.Clone(s)
}

func (p *fastParser) ownValue(v any) any {
	if s, ok := v.(string); ok {
		return p.own(s)
	}
	return v
}

// hasField reports whether the mapping read since start has key already.
func (p *fastParser) hasField(start int, key string) bool {
	for _, f := range p.fields[start:] {
		if f.key == key {
			return true
		}
	}
	return false
}

// splitLines records the lines with content. Bytes that yaml.v3 reads in a
// way this parser does not follow send the file to it: a byte order mark,
// tabs, carriage returns, and any byte outside printable ASCII except in a
// comment. A "---" or "..." line (a document marker) or a "%" directive
// does too.
func (p *fastParser) splitLines(b []byte) bool {
	// One string for the file, which the lines are slices of; the keys and
	// scalars that the tree holds are copies (own).
	data := string(b)
	for num := 1; len(data) > 0; num++ {
		line := data
		if end := strings.IndexByte(data, '\n'); end >= 0 {
			line, data = data[:end], data[end+1:]
		} else {
			data = ""
		}
		indent := 0
		for indent < len(line) && line[indent] == ' ' {
			indent++
		}
		text := line[indent:]
		if len(text) == 0 || text[0] == '#' {
			if !asciiComment(text) {
				return false
			}
			continue
		}
		if indent == 0 && (text[0] == '%' || hasMarker(text, "---") || hasMarker(text, "...")) {
			return false
		}
		comment := false
		for j := 0; j < len(text); j++ {
			c := text[j]
			if c == '#' && text[j-1] == ' ' {
				comment = true
			}
			if !comment && (c < 0x20 || c > 0x7e) || c == '\t' || c == '\r' {
				return false
			}
		}
		p.lines = append(p.lines, fastLine{num: num, indent: indent, text: text})
	}
	return true
}

// asciiComment accepts any text in a comment but the bytes that YAML or
// this package's line counting read as something else.
func asciiComment(b string) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '\t' || c == '\r' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

func hasMarker(text, m string) bool {
	return len(text) >= 3 && text[:3] == m && (len(text) == 3 || text[3] == ' ')
}

// block reads the mapping or list whose lines start at indent.
func (p *fastParser) block(indent int) (val, bool) {
	if p.i >= len(p.lines) || p.lines[p.i].indent != indent {
		return val{}, false
	}
	if isEntry(p.lines[p.i].text) {
		return p.sequence(indent)
	}
	return p.mapping(indent)
}

// isEntry reports whether a line's text is a list entry ("- x" or "-").
func isEntry(text string) bool {
	return text[0] == '-' && (len(text) == 1 || text[1] == ' ')
}

func (p *fastParser) mapping(indent int) (val, bool) {
	first := p.lines[p.i].num
	start := len(p.fields)
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		if l.indent < indent || (l.indent == indent && isEntry(l.text)) {
			break
		}
		if l.indent > indent {
			return val{}, false // a continuation line or a stray indent
		}
		key, rest, ok := blockKey(l.text)
		if !ok {
			return val{}, false
		}
		if p.hasField(start, key) {
			return val{}, false // yaml.v3 refuses it, with its message
		}
		p.i++
		var v val
		if rest == "" {
			// The value is the block on the lines below: more indented,
			// or a list at the key's own indent.
			if p.i >= len(p.lines) {
				return val{}, false
			}
			next := p.lines[p.i]
			if next.indent < indent || (next.indent == indent && !isEntry(next.text)) {
				return val{}, false // empty: null, at a line yaml.v3 chooses
			}
			if v, ok = p.block(next.indent); !ok {
				return val{}, false
			}
		} else {
			// A line indented under it would continue the scalar
			// (or be an error): the loop refuses it next.
			if v, ok = p.inlineValue(rest, l.num); !ok {
				return val{}, false
			}
		}
		p.fields = append(p.fields, field{key: p.own(key), line: l.num, val: v})
	}
	if len(p.fields) == start {
		return val{}, false
	}
	return val{v: p.keepFields(start), line: first}, true
}

func (p *fastParser) sequence(indent int) (val, bool) {
	first := p.lines[p.i].num
	start := len(p.items)
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		if l.indent != indent || !isEntry(l.text) {
			if l.indent > indent {
				return val{}, false
			}
			break
		}
		if len(l.text) == 1 {
			return val{}, false // "-" alone: its item is on the lines below
		}
		// The item starts where its text does: "- name:" opens a mapping
		// whose keys line up under name.
		col := 2
		for col < len(l.text) && l.text[col] == ' ' {
			col++
		}
		rest := l.text[col:]
		if rest == "" || rest[0] == '#' {
			return val{}, false
		}
		if isEntry(rest) || isKeyLine(rest) {
			p.lines[p.i] = fastLine{num: l.num, indent: indent + col, text: rest}
			v, ok := p.block(indent + col)
			if !ok {
				return val{}, false
			}
			p.items = append(p.items, v)
			continue
		}
		v, ok := p.inlineValue(rest, l.num)
		if !ok {
			return val{}, false
		}
		p.i++ // a line indented under it is refused next, as above
		p.items = append(p.items, v)
	}
	return val{v: p.keepItems(start), line: first}, true
}

// isKeyLine reports whether text starts a mapping ("key: ..." or "key:").
func isKeyLine(text string) bool {
	_, _, ok := blockKey(text)
	return ok
}

// blockKey splits "key: rest" and "key:"; rest is "" when the value is on
// the lines below (comments dropped). Only keys that yaml.v3 reads as the
// same string qualify: plain ones that resolve to a string, and quoted
// ones without escapes.
func blockKey(text string) (key, rest string, ok bool) {
	var end int
	switch text[0] {
	case '"', '\'':
		var n int
		if key, n, ok = quoted(text); !ok {
			return "", "", false
		}
		end = n
		if end >= len(text) || text[end] != ':' {
			return "", "", false
		}
	default:
		end = plainKeyEnd(text)
		if end <= 0 {
			return "", "", false
		}
		key = strings.TrimRight(text[:end], " ")
		if !plainString(key, false) {
			return "", "", false
		}
	}
	if end > maxKeyLen {
		return "", "", false
	}
	rest = text[end+1:]
	if rest != "" && rest[0] != ' ' {
		return "", "", false
	}
	rest = strings.TrimLeft(rest, " ")
	if rest != "" && rest[0] == '#' {
		rest = ""
	}
	return key, rest, true
}

// plainKeyEnd finds the ':' that ends a plain key: followed by a space or
// the end of the line, before any comment.
func plainKeyEnd(text string) int {
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case ':':
			if i+1 == len(text) || text[i+1] == ' ' {
				return i
			}
		case '#':
			if i > 0 && text[i-1] == ' ' {
				return -1
			}
		}
	}
	return -1
}

// inlineValue reads the value that ends a block line: a scalar or a flow
// collection, and nothing after it but a comment.
func (p *fastParser) inlineValue(text string, line int) (val, bool) {
	switch text[0] {
	case '[', '{':
		v, n, ok := p.flowNode(text, 0, line)
		if !ok || !onlyComment(text[n:]) {
			return val{}, false
		}
		return v, true
	case '"', '\'':
		s, n, ok := quoted(text)
		if !ok || !onlyComment(text[n:]) {
			return val{}, false
		}
		return val{v: p.own(s), line: line}, true
	}
	// Up to a comment; plainScalar refuses a ": " (a mapping where a
	// scalar was expected).
	if i := strings.Index(text, " #"); i >= 0 {
		text = text[:i]
	}
	s := strings.TrimRight(text, " ")
	v, ok := plainScalar(s, false)
	if !ok {
		return val{}, false
	}
	return val{v: p.ownValue(v), line: line}, true
}

func onlyComment(rest string) bool {
	t := strings.TrimLeft(rest, " ")
	return t == "" || (t[0] == '#' && len(t) < len(rest))
}

// quoted reads a quoted scalar at the start of text that needs no
// unescaping: no backslash in double quotes, no doubled quote in single
// ones. n is the length read, quotes included.
func quoted(text string) (s string, n int, ok bool) {
	q := text[0]
	end := strings.IndexByte(text[1:], q)
	if end < 0 {
		return "", 0, false
	}
	s = text[1 : 1+end]
	n = end + 2
	if q == '"' && strings.IndexByte(s, '\\') >= 0 {
		return "", 0, false
	}
	if q == '\'' && n < len(text) && text[n] == '\'' {
		return "", 0, false
	}
	return s, n, true
}

// flowNode reads a flow list or mapping that opens at text[i] and closes on
// the same line; n is where it ends.
func (p *fastParser) flowNode(text string, i, line int) (v val, n int, ok bool) {
	open := text[i]
	closing := byte(']')
	if open == '{' {
		closing = '}'
	}
	fields, items := len(p.fields), len(p.items)
	i = skipSpaces(text, i+1)
	if i < len(text) && text[i] == closing {
		if open == '{' {
			return val{v: fastMap{}, line: line}, i + 1, true
		}
		return val{v: fastSeq{}, line: line}, i + 1, true
	}
	for {
		if open == '{' {
			var key string
			if key, i, ok = flowKey(text, i); !ok {
				return val{}, 0, false
			}
			if p.hasField(fields, key) {
				return val{}, 0, false
			}
			i = skipSpaces(text, i)
			var x val
			if x, i, ok = p.flowItem(text, i, line); !ok {
				return val{}, 0, false
			}
			p.fields = append(p.fields, field{key: p.own(key), line: line, val: x})
		} else {
			var x val
			if x, i, ok = p.flowItem(text, i, line); !ok {
				return val{}, 0, false
			}
			p.items = append(p.items, x)
		}
		i = skipSpaces(text, i)
		if i >= len(text) {
			return val{}, 0, false // continued on the next line
		}
		switch text[i] {
		case closing:
			if open == '{' {
				// fields() orders a line's keys by name.
				slices.SortStableFunc(p.fields[fields:], func(a, b field) int { return strings.Compare(a.key, b.key) })
				return val{v: p.keepFields(fields), line: line}, i + 1, true
			}
			return val{v: p.keepItems(items), line: line}, i + 1, true
		case ',':
			i = skipSpaces(text, i+1)
			if i >= len(text) || text[i] == closing || text[i] == ',' {
				return val{}, 0, false // a trailing or doubled comma
			}
		default:
			return val{}, 0, false
		}
	}
}

func skipSpaces(text string, i int) int {
	for i < len(text) && text[i] == ' ' {
		i++
	}
	return i
}

// maxKeyLen bounds the keys the fast path reads, in a block (blockKey) as
// in a flow (flowKey): libyaml looks no further than 1024 characters for a
// key's ':', and a longer key goes to yaml.v3 to be refused.
const maxKeyLen = 1000

// flowKey reads "key:" followed by a space in a flow mapping.
func flowKey(text string, i int) (string, int, bool) {
	if i >= len(text) {
		return "", 0, false
	}
	start := i
	var key string
	switch text[i] {
	case '"', '\'':
		s, n, ok := quoted(text[i:])
		if !ok {
			return "", 0, false
		}
		key, i = s, i+n
	default:
		j := i
		for j < len(text) && !flowStop(text[j]) && text[j] != ':' && text[j] != ' ' {
			j++
		}
		key = text[i:j]
		if !plainString(key, true) {
			return "", 0, false
		}
		i = j
	}
	if i+1 >= len(text) || text[i] != ':' || text[i+1] != ' ' {
		return "", 0, false
	}
	if i-start > maxKeyLen {
		return "", 0, false
	}
	return key, i + 1, true
}

func flowStop(c byte) bool {
	return c == ',' || c == '[' || c == ']' || c == '{' || c == '}' || c == '#'
}

// flowItem reads one scalar or nested collection inside a flow collection.
func (p *fastParser) flowItem(text string, i, line int) (val, int, bool) {
	if i >= len(text) {
		return val{}, 0, false
	}
	switch text[i] {
	case '[', '{':
		return p.flowNode(text, i, line)
	case '"', '\'':
		s, n, ok := quoted(text[i:])
		if !ok {
			return val{}, 0, false
		}
		return val{v: p.own(s), line: line}, i + n, true
	}
	// A ':' inside a scalar is one, as in fd00::1/128; plainScalar refuses
	// "a: b" and "a:", a pair for yaml.v3 to read.
	j := i
	for j < len(text) && !flowStop(text[j]) {
		j++
	}
	s := strings.TrimRight(text[i:j], " ")
	v, ok := plainScalar(s, true)
	if !ok {
		return val{}, 0, false
	}
	return val{v: p.ownValue(v), line: line}, i + len(s), true
}

// plainString reports whether yaml.v3 reads a plain scalar as the string
// it is written as.
func plainString(s string, flow bool) bool {
	v, ok := plainScalar(s, flow)
	_, isString := v.(string)
	return ok && isString
}

// plainScalar resolves a plain scalar as yaml.v3 does when it decodes into
// an interface (resolve.go: null, booleans, decimal integers, strings), or
// returns false where that takes more than this: a number in another
// notation, a float, a date, an indicator that begins something else.
func plainScalar(s string, flow bool) (any, bool) {
	if s == "" {
		return nil, false
	}
	switch s[0] {
	case '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`', '<', '.', '+', '~', '=':
		return nil, false
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '#': // a comment
			if s[i-1] == ' ' {
				return nil, false
			}
		case ':': // a key
			if i+1 == len(s) || s[i+1] == ' ' {
				return nil, false
			}
		case ',', '[', ']', '{', '}', '?': // '?' ends a scalar in a flow
			if flow {
				return nil, false
			}
		}
	}
	switch s {
	case "true", "True", "TRUE":
		return true, true
	case "false", "False", "FALSE":
		return false, true
	case "null", "Null", "NULL":
		return nil, true
	}
	if c := s[0]; c < '0' || c > '9' {
		return s, true
	}
	// A digit: yaml.v3 tries a date, then integers of any base, then a
	// float. Decimal integers are decoded here; a string is one only if
	// none of those could read it.
	if allDigits(s) {
		if len(s) > 18 || (len(s) > 1 && s[0] == '0') {
			return nil, false
		}
		n, err := strconv.Atoi(s)
		return n, err == nil
	}
	if len(s) > 4 && allDigits(s[:4]) && s[4] == '-' && strings.Contains(s[5:], "-") {
		return nil, false // perhaps a date: year-month-day
	}
	if strings.ContainsAny(s, "_xXoObBeE") {
		return nil, false // an integer of another base, or an exponent
	}
	if strings.Count(s, ".") == 1 && allDigits(strings.Replace(s, ".", "", 1)) {
		return nil, false // a float
	}
	return s, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}
