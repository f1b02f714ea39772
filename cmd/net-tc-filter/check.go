// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon"
	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/nss"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/units"
)

func newCheckCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "check [--config FILE]",
		Short: "validate the configuration set and print the compiled policy",
		Long: `Validate the configuration set (the file and the drop-ins in conf.d/ beside
it) as the daemon would load it, and print the compiled policy. Every problem
is printed as FILE:LINE: MESSAGE; the exit status is 1 when there is one.

Warnings go to stderr and leave the exit status 0: an interface of this host
that the set filters with a deny default (everything but the listed ranges is
dropped there, for everyone), an endpoint whose iface matches no interface of
this host (it protects nothing), files in conf.d/ that are not read, and a
deny default that keeps root from IPv6 neighbour discovery.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return exit(check(cfgPath, cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	configFlag(cmd, &cfgPath, "main configuration `FILE`; drop-ins are read from conf.d/ beside it")
	return cmd
}

// configFlag is --config, the same for every command that reads the files.
func configFlag(cmd *cobra.Command, p *string, usage string) {
	cmd.Flags().StringVar(p, "config", daemon.DefaultConfigPath, usage)
	cmd.MarkFlagFilename("config", "yml", "yaml")
}

func check(cfgPath string, stdout, stderr io.Writer) int {
	cfg, p, err := daemon.Load(cfgPath, units.With(nss.Resolver{}))
	if err != nil {
		printErrors(stderr, err)
		// A file that is not read may be where the fix was written.
		printWarnings(stderr, cfg.Warnings)
		return exitFailure
	}
	// Buffered: the policy is a few lines per endpoint, and a write per
	// line was a fifth of the command's time at 100 000 ranges.
	out := bufio.NewWriter(stdout)
	printPolicy(out, cfg, p)
	out.Flush()
	// The host's interfaces decide what is locked down and which
	// endpoint's iface matches nothing: this host's, as the daemon here
	// would see them.
	ifaces, err := bpf.Interfaces()
	if err != nil {
		fmt.Fprintf(stderr, "warning: %v: what the set locks down on this host's interfaces is not checked\n", err)
		printWarnings(stderr, slices.Concat(cfg.Warnings, p.Warnings))
	} else {
		host := make([]string, len(ifaces))
		for i, ifc := range ifaces {
			host[i] = ifc.Name
		}
		printWarnings(stderr, daemon.Warnings(cfg, p, host))
	}
	fmt.Fprintf(stdout, "OK: %d endpoints, %d ranges\n", len(p.Endpoints), p.RangeCount())
	return exitOK
}

// printErrors prints configuration problems one per line, file:line first.
func printErrors(w io.Writer, err error) {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func printWarnings(w io.Writer, warnings []string) {
	for _, s := range warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
}

func printPolicy(w io.Writer, cfg *config.Config, p *policy.Policy) {
	fmt.Fprintf(w, "files: %s\n", strings.Join(cfg.Files, ", "))
	fmt.Fprintf(w, "decision log: %s, at most %d lines/s; on stop: %s\n", cfg.Log.Decisions, cfg.Log.Rate, cfg.OnStop)
	fmt.Fprintln(w, "interfaces:")
	if len(p.Interfaces) == 0 {
		fmt.Fprintln(w, "  (no interfaces: key; filtered interfaces default to deny)")
	}
	for _, s := range p.Interfaces {
		mode := ""
		if s.Audit && s.Default == policy.Deny {
			mode = " (audit: logs what it would drop, drops nothing)"
		}
		// deny: drop only: answering is the default, and the lines of
		// sets that do not say stay as they were.
		drop := ""
		if s.Drop {
			drop = ", deny: drop (denied packets are not answered)"
		}
		fmt.Fprintf(w, "  %-16s default %s%s\n", s.Pattern, s.Default, mode+drop)
	}
	fmt.Fprintln(w, "endpoints:")
	if len(p.Endpoints) == 0 {
		fmt.Fprintln(w, "  (none: nothing is filtered)")
	}
	for _, e := range p.Endpoints {
		mode := ""
		if e.Audit {
			mode = " (audit: logs what it would drop, drops nothing)"
		}
		fmt.Fprintf(w, "  %s on %s%s\n", e.Name, strings.Join(e.Ifaces(), ", "), mode)
		fmt.Fprintf(w, "    allow: %s => %s\n", strings.Join(e.AllowList(), ", "), e.Principals)
		if n := e.Narrowing(); n != "" {
			fmt.Fprintf(w, "    only: %s\n", n)
		}
		switch e.Deny {
		case config.DenyDrop:
			fmt.Fprintln(w, "    deny: drop (denied packets are not answered)")
		case config.DenyReject:
			fmt.Fprintln(w, "    deny: reject (denied senders are told at once, whatever the interface says)")
		}
		for _, r := range e.Ranges {
			fmt.Fprintf(w, "    %s\n", r)
		}
	}
}

func newDetachCmd() *cobra.Command {
	var pinDir string
	cmd := &cobra.Command{
		Use:   "detach [--pin-dir DIR]",
		Short: "remove the filter and its pinned state by hand",
		Long: `Remove the filter from every interface and its pinned state, as a clean stop
with on_stop: detach does: for a filter left behind by a killed daemon or by
on_stop: keep.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bpf.Remove(pinDir); err != nil {
				return fail("%v", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "detached: no interface is filtered by net-tc-filter any more")
			return nil
		},
	}
	pinDirFlag(cmd, &pinDir, "bpffs `DIR` of the pinned state to remove")
	return cmd
}

func pinDirFlag(cmd *cobra.Command, p *string, usage string) {
	cmd.Flags().StringVar(p, "pin-dir", bpf.DefaultPinDir, usage)
	cmd.MarkFlagDirname("pin-dir")
}
