// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// needProgram finds a program the test needs; missing, the test is
// skipped, but fails where CI=true (CI installs it).
func needProgram(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v, and CI=true forbids skipping", err)
	}
	t.Skip(err)
	return ""
}

// The scripts the package installs are generated from the command tree
// and parse in their shells.
func TestCompletionScriptsParse(t *testing.T) {
	for _, tc := range []struct{ shell, check string }{
		{"bash", "bash -n"},
		{"zsh", "zsh -n"},
		{"fish", "fish --no-execute"},
	} {
		t.Run(tc.shell, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run([]string{"completion", tc.shell}, &out, &errOut); code != 0 || errOut.Len() > 0 {
				t.Fatalf("exit %d\n%s", code, errOut.String())
			}
			// The scripts ask the binary (the one definition) what to
			// complete: nothing is listed in them by hand.
			for _, want := range []string{"net-tc-filter", "__complete"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("the %s script lacks %q", tc.shell, want)
				}
			}
			sh := strings.Fields(tc.check)
			needProgram(t, sh[0])
			path := filepath.Join(t.TempDir(), "net-tc-filter."+tc.shell)
			if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(sh[0], append(sh[1:], path)...).CombinedOutput(); err != nil {
				t.Errorf("%s %s: %v\n%s", tc.check, path, err, b)
			}
		})
	}
}

// bash completes commands, every flag of a command and flag values, as a
// user pressing Tab would get them: the generated script, sourced into
// bash with bash-completion, calling this test binary as net-tc-filter.
func TestBashCompletes(t *testing.T) {
	bash := needProgram(t, "bash")
	const lib = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(lib); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bash-completion is not installed (%v), and CI=true forbids skipping", err)
		}
		t.Skip(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(os.Args[0], filepath.Join(bin, "net-tc-filter")); err != nil {
		t.Fatal(err)
	}
	var script bytes.Buffer
	if code := run([]string{"completion", "bash"}, &script, io.Discard); code != 0 {
		t.Fatalf("completion bash: exit %d", code)
	}
	scriptPath := filepath.Join(bin, "completion.bash")
	if err := os.WriteFile(scriptPath, script.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// complete WORD... prints what Tab offers for the last word.
	complete := func(words ...string) []string {
		t.Helper()
		prog := `source "$0"; source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
__start_net-tc-filter net-tc-filter "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" 2>/dev/null
printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command(bash, append([]string{"-c", prog, lib, scriptPath, "net-tc-filter"}, words...)...)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), cliEnv+"=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bash: %v", err)
		}
		var got []string
		for w := range strings.FieldsSeq(string(out)) {
			got = append(got, w)
		}
		return got
	}
	root := newRoot(parts{}, io.Discard, io.Discard)
	var commands []string
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() {
			commands = append(commands, c.Name())
		}
	}
	if got := complete(""); !isSuperset(got, commands) {
		t.Errorf("net-tc-filter <Tab> = %q, want every command %q", got, commands)
	}
	if got := complete("ex"); !slices.Equal(got, []string{"explain"}) {
		t.Errorf("net-tc-filter ex<Tab> = %q, want explain", got)
	}
	for _, c := range root.Commands() {
		if !c.IsAvailableCommand() || c.Name() == "completion" {
			continue
		}
		flags := []string{"--help"}
		c.Flags().VisitAll(func(f *pflag.Flag) { flags = append(flags, "--"+f.Name) })
		if got := complete(c.Name(), "--"); !isSuperset(got, flags) {
			t.Errorf("net-tc-filter %s --<Tab> = %q, want every flag %q", c.Name(), got, flags)
		}
	}
	if got := complete("run", "--attach-mode", ""); !slices.Equal(got, []string{"auto", "tcx", "clsact"}) {
		t.Errorf("run --attach-mode <Tab> = %q", got)
	}
	if got := complete("explain", "--user", "roo"); !slices.Contains(got, "root") {
		t.Errorf("explain --user roo<Tab> = %q, want root among them", got)
	}
	// bash splits words at ":" (COMP_WORDBREAKS): what it puts after
	// "group:" is the rest of the word.
	if got := complete("explain", "--user", "group:roo"); !slices.Equal(got, []string{"root"}) {
		t.Errorf("explain --user group:roo<Tab> = %q, want root (after group:)", got)
	}
	if got := complete("explain", "--iface", "l"); !slices.Contains(got, "lo") {
		t.Errorf("explain --iface l<Tab> = %q, want lo among them", got)
	}
}

func isSuperset(got, want []string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}
