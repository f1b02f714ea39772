// SPDX-License-Identifier: Apache-2.0

package config

import (
	"strings"
	"testing"
)

// TestYAMLProblemLines: every problem of a file's contents has a line,
// including those the YAML library reports without one (its first line,
// bytes it cannot read, whole-value decoding problems). Found by FuzzLoad.
func TestYAMLProblemLines(t *testing.T) {
	tests := []struct {
		in   string
		line int
		msg  string
	}{
		{"\t- tab\n", 1, "found character that cannot start any token"},
		{"[", 1, "did not find expected node content"},
		{"x: \x00\n", 1, "character U+0000 is not allowed in YAML"},
		{"x: 1\n---\ny: \x01\n", 3, "character U+0001 is not allowed in YAML"},
		{"a: 1\nb: \xff\n", 2, "byte 0xFF is not UTF-8"},
		{"a: 1\nb: \xef\xbf\xbe\n", 2, "character U+FFFE is not allowed in YAML"},
		{"\xff\xfea\x00:\x00", 1, "the file is UTF-16"},
		{"\"0\r", 1, "a carriage return not followed by a line feed"},
		{"x: 1\r\ny: [a]\r  - b\r\n", 2, "a carriage return not followed by a line feed"},
		{"x: 1\ny: a\u2028b\n", 2, "character U+2028 is a line break to YAML"},
		{"x: \u0085\n", 1, "character U+0085 is a line break to YAML"},
		{"x: 1\r\ny: [\r\n", 2, "did not find expected node content"},
		{"x: 1\ny: *nope\n", 2, "unknown anchor 'nope' referenced"},
		{"x: 1\na: &a [*a]\n", 2, "anchor 'a' value contains itself"},
		{"x: 1\ny:\n  ? [a]\n  : 1\n", 3, "invalid map key"},
		{"x: 1\ny:\n  <<: 5\n", 3, "map merge requires map or sequence of maps"},
		{"x: 1\ny: !!int abc\n", 2, "cannot decode !!str `abc` as a !!int"},
		{"x: 1\ny: !!binary \"%%%\"\n", 2, "!!binary value contains invalid base64 data"},
	}
	for _, tt := range tests {
		_, errs := parseFile("f.yml", []byte(tt.in), nil)
		if len(errs) != 1 || errs[0].Pos.Line != tt.line || !strings.Contains(errs[0].Msg, tt.msg) {
			t.Errorf("%q: errors %v, want one at line %d saying %q", tt.in, errs, tt.line, tt.msg)
		}
	}
}
