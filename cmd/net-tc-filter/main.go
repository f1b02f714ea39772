// SPDX-License-Identifier: Apache-2.0

// Command net-tc-filter is a host egress firewall that decides by the user
// who owns the sending socket.
//
// The command line is one cobra tree (newRoot): --help, the usage lines,
// the man page's synopsis and the bash/zsh/fish completion all come from
// it. run is main without the process, so that tests drive it in-process.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	ntfdbus "github.com/nettcfilter/net-tc-filter/dbus"
)

// version is stamped at build time: -ldflags "-X main.version=...".
var version = "dev"

// Exit codes shared by every command. explain and status add their own
// above these (explainDenied..., statusNotRunning...), never reusing 1
// or 2.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// exitError is an error with the exit status it stands for. A command
// returns one for every outcome that is not a usage error; an error
// without one (cobra's own: an unknown command, a bad flag, a missing
// argument) is a usage error.
type exitError struct {
	code int
	err  error // nil: already reported (the command printed what it had to say)
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// fail is a failure (exit 1) with its message.
func fail(format string, a ...any) error {
	return &exitError{code: exitFailure, err: fmt.Errorf(format, a...)}
}

// exit ends a command with code, its messages already printed.
func exit(code int) error {
	if code == exitOK {
		return nil
	}
	return &exitError{code: code}
}

// usageError is a usage error the command found itself (cobra's own
// are usage errors anyway).
func usageError(format string, a ...any) error {
	return fmt.Errorf(format, a...)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: testable.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run whose commands end when ctx does, as on SIGTERM: the
// tests end an in-process daemon this way.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return execute(ctx, parts{serveBus: ntfdbus.Serve}, args, stdout, stderr)
}

// parts are the pieces of the daemon a test may wrap to watch them.
type parts struct {
	serveBus func(context.Context, ntfdbus.ServerOptions) // the D-Bus object, until ctx ends
}

func execute(ctx context.Context, p parts, args []string, stdout, stderr io.Writer) int {
	root := newRoot(p, stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), err)
	fmt.Fprintf(stderr, "Usage: %s\nRun '%s --help' for more.\n", cmd.UseLine(), cmd.CommandPath())
	return exitUsage
}

const helpTemplate = `Usage: {{.UseLine}}
{{with .Long}}
{{. | trimTrailingWhitespaces}}
{{end}}{{if .HasAvailableSubCommands}}
Commands:{{range .Commands}}{{if .IsAvailableCommand}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}
{{end}}{{if .HasAvailableLocalFlags}}
Options:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}
{{end}}{{if .HasAvailableSubCommands}}
Run '{{.CommandPath}} COMMAND --help' for a command's options.
{{end}}`

const rootLong = `A host egress firewall that decides by the user who owns the sending socket.

Exit status: 0 success, 1 failure, 2 usage error; explain and status say
more (see their --help).`

// newRoot builds the command tree, writing to stdout and stderr.
func newRoot(p parts, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:     "net-tc-filter COMMAND [OPTIONS]",
		Short:   "host egress firewall by socket owner",
		Long:    rootLong,
		Version: version,
		// Without a command: the usage, as a usage error.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					return usageError("unknown command %q; did you mean %s?", args[0], strings.Join(s, " or "))
				}
				return usageError("unknown command %q", args[0])
			}
			return usageError("a command is needed")
		},
		SilenceErrors:              true,
		SilenceUsage:               true,
		DisableFlagsInUseLine:      true,
		SuggestionsMinimumDistance: 2,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetHelpTemplate(helpTemplate)
	root.SetVersionTemplate("net-tc-filter {{.Version}}\n")
	// Go's flag package took -config; pflag reads it as -c -o -n...:
	// point at the GNU spelling.
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if _, long, ok := strings.Cut(err.Error(), "' in -"); ok {
			long, _, _ = strings.Cut(long, "=")
			if c.Flags().Lookup(long) != nil {
				return fmt.Errorf("%w: long options take two dashes: --%s", err, long)
			}
		}
		return err
	})
	// --version without cobra's -v: GNU has no short form for it.
	root.Flags().Bool("version", false, "print the version")
	root.AddCommand(
		newRunCmd(p),
		newCheckCmd(),
		newStatusCmd(),
		newReloadCmd(),
		newExplainCmd(),
		newStageCmd(),
		newUnstageCmd(),
		newStagedCmd(),
		newDetachCmd(),
		newVersionCmd(),
	)
	// Every command, cobra's completion and help included, speaks the
	// same way: a usage line without "[flags]", its options under
	// "Options:".
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.DisableFlagsInUseLine = true
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		c.Short = "print the bash, zsh or fish completion script"
		for _, sh := range c.Commands() {
			// Debian installs bash, zsh and fish completion; powershell
			// stays available, unlisted.
			sh.Hidden = sh.Name() == "powershell"
		}
	}
	walk(root)
	return root
}

// noArgs refuses operands: every option of this CLI is a flag.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError("unexpected argument %q", args[0])
	}
	return nil
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "net-tc-filter %s\n", version)
			return nil
		},
	}
}
