// SPDX-License-Identifier: Apache-2.0

package config

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	yamlv3 "go.yaml.in/yaml/v3"
)

// checkText refuses what the YAML library cannot read, with the line it
// does not give: bytes that are not UTF-8 and the characters YAML does not
// allow (control characters but tab, LF and CR; U+FFFE, U+FFFF). UTF-16,
// which the library would read after its byte order mark, is refused too:
// a configuration is UTF-8 text, and its lines are counted in bytes.
func checkText(data []byte) (line int, msg string, ok bool) {
	if bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) {
		return 1, "the file is UTF-16 (it starts with a UTF-16 byte order mark); write it as UTF-8", false
	}
	for i := 0; i < len(data); {
		// Printable ASCII, the bulk of every file, needs no more look.
		if c := data[i]; c >= 0x20 && c < 0x7f || c == '\n' || c == '\t' {
			i++
			continue
		}
		r, size := rune(data[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return lineAt(data, i), fmt.Sprintf("byte 0x%02X is not UTF-8; the file must be UTF-8 text", data[i]), false
			}
		}
		if !yamlAllowed(r) {
			return lineAt(data, i), fmt.Sprintf("character %U is not allowed in YAML; remove it", r), false
		}
		if msg, ok := editorLineBreak(r, data[i+size:]); !ok {
			return lineAt(data, i), msg, false
		}
		i += size
	}
	return 0, "", true
}

// editorLineBreak refuses what YAML reads as a line break but editors,
// grep -n and this package's line numbers do not: a carriage return not
// followed by a line feed, NEL, and the Unicode line and paragraph
// separators. What the administrator sees as one line must not be two
// lines to the daemon (an allow entry hidden behind a bare CR), and the
// lines in messages must be the editor's. CRLF line ends are fine.
func editorLineBreak(r rune, rest []byte) (string, bool) {
	switch r {
	case '\r':
		if len(rest) > 0 && rest[0] == '\n' {
			return "", true
		}
		return "a carriage return not followed by a line feed is a line break to YAML but not to most editors; save the file with \\n (or \\r\\n) line ends", false
	case 0x85, 0x2028, 0x2029:
		return fmt.Sprintf("character %U is a line break to YAML but not to most editors; remove it", r), false
	}
	return "", true
}

// yamlAllowed is YAML 1.2's c-printable, which the library enforces.
func yamlAllowed(r rune) bool {
	switch {
	case r == '\t', r == '\n', r == '\r':
		return true
	case r >= 0x20 && r <= 0x7e, r == 0x85:
		return true
	case r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd:
		return true
	case r >= 0x10000 && r <= 0x10ffff:
		return true
	}
	return false
}

// lineAt is the line of data's byte at offset i.
func lineAt(data []byte, i int) int {
	return bytes.Count(data[:i], []byte("\n")) + 1
}

// lineOf finds the line of a problem the YAML library names none for. Its
// parser numbers lines from 0 and treats 0 as unknown, so a syntax error
// on the first line comes without one; its decoder names none for a
// problem with one value (an alias of an anchor not defined yet, a key
// that is itself a list, a merge of a scalar, a tag the value does not
// fit). root is the file's node tree, nil where it could not be parsed.
func lineOf(msg string, data []byte, root *yamlv3.Node) int {
	if name, ok := between(msg, "unknown anchor '", "' referenced"); ok {
		return firstLine(data, "*"+name)
	}
	if name, ok := between(msg, "anchor '", "' value contains itself"); ok {
		return firstLine(data, "&"+name)
	}
	if root == nil {
		return 1 // a syntax error the parser met on the first line
	}
	if n := badNode(root, map[*yamlv3.Node]bool{}); n != nil {
		return n.Line
	}
	if n := firstAlias(root, map[*yamlv3.Node]bool{}); n != nil {
		return n.Line // aliasing that expands to too much starts there
	}
	return root.Line
}

func between(s, prefix, suffix string) (string, bool) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, suffix)
}

// firstLine is the line where s first appears, or 1.
func firstLine(data []byte, s string) int {
	if i := bytes.Index(data, []byte(s)); i >= 0 {
		return lineAt(data, i)
	}
	return 1
}

// badNode finds, in document order, the first node that cannot be decoded
// by itself into plain values: a mapping key that is not a scalar, a "<<"
// merge of something other than mappings, an explicitly tagged scalar
// that does not fit its tag.
func badNode(n *yamlv3.Node, seen map[*yamlv3.Node]bool) *yamlv3.Node {
	if n == nil || seen[n] {
		return nil
	}
	seen[n] = true
	switch n.Kind {
	case yamlv3.ScalarNode:
		if n.Style&yamlv3.TaggedStyle != 0 {
			var v any
			if err := n.Decode(&v); err != nil {
				return n
			}
		}
	case yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if b := badNode(k, seen); b != nil {
				return b
			}
			if rk := resolve(k); rk != nil && rk.Kind != yamlv3.ScalarNode {
				return k
			}
			if k.ShortTag() == "!!merge" && !mergeable(v) {
				return v
			}
			if b := badNode(v, seen); b != nil {
				return b
			}
		}
	case yamlv3.AliasNode:
		return badNode(n.Alias, seen)
	default:
		for _, c := range n.Content {
			if b := badNode(c, seen); b != nil {
				return b
			}
		}
	}
	return nil
}

// mergeable says whether a "<<" value is what the decoder accepts: a
// mapping or a list of mappings, through aliases.
func mergeable(v *yamlv3.Node) bool {
	v = resolve(v)
	switch {
	case v == nil:
		return false
	case v.Kind == yamlv3.MappingNode:
		return true
	case v.Kind == yamlv3.SequenceNode:
		for _, c := range v.Content {
			if c := resolve(c); c == nil || c.Kind != yamlv3.MappingNode {
				return false
			}
		}
		return true
	}
	return false
}

func firstAlias(n *yamlv3.Node, seen map[*yamlv3.Node]bool) *yamlv3.Node {
	if n == nil || seen[n] {
		return nil
	}
	seen[n] = true
	if n.Kind == yamlv3.AliasNode {
		return n
	}
	for _, c := range n.Content {
		if a := firstAlias(c, seen); a != nil {
			return a
		}
	}
	return nil
}
