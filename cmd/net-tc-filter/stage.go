// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nettcfilter/net-tc-filter/daemon"
	ntfdbus "github.com/nettcfilter/net-tc-filter/dbus"
)

func newStageCmd() *cobra.Command {
	var cfgPath string
	var dur time.Duration
	cmd := &cobra.Command{
		Use:   "stage --config FILE [--for DURATION]",
		Short: "judge every packet by a candidate configuration beside the live one",
		Long: `Have the running daemon (over D-Bus, root only) load the configuration set at
--config (with the drop-ins of conf.d/ beside it) as a candidate, and judge
every packet by it beside the live policy: the live policy alone decides what
passes. Where the candidate would decide otherwise, the decision log says so
(NTF_STAGED_ACTION, NTF_STAGED_ENDPOINT) and the daemon counts it by owner,
endpoint and change: see them with net-tc-filter staged. The stage lasts
--for (for example 30m, 1h; default: until unstage), survives reloads of the
live set, and ends when the daemon stops. An invalid candidate is refused with
every problem (exit 1) and nothing is staged. To apply a candidate, write its
files into /etc/net-tc-filter, as always.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("config") {
				return usageError("--config is required")
			}
			if cmd.Flags().Changed("for") && dur < time.Second {
				return usageError("--for %v: must be a second or more", dur)
			}
			return exit(stage(cmd.Context(), cfgPath, dur, cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "the candidate's main configuration `FILE`; drop-ins are read from conf.d/ beside it")
	cmd.MarkFlagFilename("config", "yml", "yaml")
	cmd.Flags().DurationVar(&dur, "for", 0, "end the stage after `DURATION` (30m, 1h); default: at unstage")
	return cmd
}

func stage(ctx context.Context, cfgPath string, dur time.Duration, stdout, stderr io.Writer) int {
	abs, err := filepath.Abs(cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter stage: %v\n", err)
		return exitFailure
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, err := ntfdbus.Dial(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter stage: %v\n", err)
		return exitFailure
	}
	defer c.Close()
	err = c.Stage(ctx, abs, dur)
	var de *ntfdbus.Error
	switch {
	case errors.As(err, &de) && de.Name == ntfdbus.ErrInvalidConfig:
		fmt.Fprintln(stderr, "net-tc-filter stage: the candidate is invalid; nothing is staged:")
		fmt.Fprintln(stderr, de.Message)
		return exitFailure
	case errors.As(err, &de) && de.Name == ntfdbus.ErrAccessDenied:
		fmt.Fprintf(stderr, "net-tc-filter stage: permission denied: only root may stage (%s)\n", de.Message)
		return exitFailure
	case err != nil:
		fmt.Fprintf(stderr, "net-tc-filter stage: %v\n", err)
		return exitFailure
	}
	until := "until net-tc-filter unstage"
	if dur > 0 {
		until = "until " + time.Now().Add(dur).Format(time.DateTime) + " (or net-tc-filter unstage)"
	}
	fmt.Fprintf(stdout, "staged %s beside the live policy, %s; the live policy still decides every packet\n", abs, until)
	fmt.Fprintln(stdout, "see what it would change: net-tc-filter staged; journalctl -u net-tc-filter NTF_STAGED_ACTION=deny")
	return exitOK
}

func newUnstageCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "unstage [--json]",
		Short: "end the stage and print what the candidate would have changed",
		Long: `End the stage (over D-Bus, root only) and print its summary, as staged does.
Exit 1 when nothing is staged.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return exit(unstage(cmd.Context(), asJSON, cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON")
	return cmd
}

func unstage(ctx context.Context, asJSON bool, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, err := ntfdbus.Dial(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter unstage: %v\n", err)
		return exitFailure
	}
	defer c.Close()
	sum, err := c.Unstage(ctx)
	var de *ntfdbus.Error
	switch {
	case errors.As(err, &de) && de.Name == ntfdbus.ErrNotStaged:
		fmt.Fprintln(stderr, "net-tc-filter unstage: nothing is staged")
		return exitFailure
	case err != nil:
		fmt.Fprintf(stderr, "net-tc-filter unstage: %v\n", err)
		return exitFailure
	}
	if asJSON {
		return printJSON(stdout, stderr, sum)
	}
	fmt.Fprintln(stdout, "unstaged; what the candidate would have changed:")
	printStaged(stdout, sum)
	return exitOK
}

func newStagedCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "staged [--json]",
		Short: "show what the staged candidate would change",
		Long: `Show the stage in force: since and until when, the candidate's files, and
the packets it would decide otherwise than the live policy so far: newly
denied and newly allowed (and newly or no longer audited) packets by owner
(user, systemd unit) and endpoint, with the first few examples. Exit 0 while
something is staged, 3 when nothing is.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return exit(staged(cmd.Context(), asJSON, cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON")
	return cmd
}

// stagedNothing is staged's exit status when nothing is staged.
const stagedNothing = 3

func staged(ctx context.Context, asJSON bool, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := ntfdbus.Dial(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter staged: %v\n", err)
		return exitFailure
	}
	defer c.Close()
	sum, ok, err := c.Staged(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter staged: %v\n", err)
		return exitFailure
	}
	if !ok {
		if asJSON {
			fmt.Fprintln(stdout, "{}")
		} else {
			fmt.Fprintln(stdout, "nothing is staged")
		}
		return stagedNothing
	}
	if asJSON {
		return printJSON(stdout, stderr, sum)
	}
	printStaged(stdout, sum)
	return exitOK
}

func printJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	return exitOK
}

// printStaged prints a stage's summary for an administrator: what would
// break first.
func printStaged(w io.Writer, sum daemon.StageSummary) {
	until := "until unstaged"
	if !sum.Until.IsZero() {
		until = "until " + sum.Until.Format(time.DateTime)
	}
	fmt.Fprintf(w, "staged since %s %s (config %s)\n", sum.Since.Format(time.DateTime), until, sum.Config)
	if len(sum.Files) > 1 {
		fmt.Fprintf(w, "  files: %s\n", strings.Join(sum.Files, ", "))
	}
	for _, kind := range []struct {
		name string
		n    uint64
	}{
		{daemon.NewlyDenied, sum.NewlyDenied}, {daemon.NewlyAllowed, sum.NewlyAllowed},
		{daemon.NewlyAudited, sum.NewlyAudited}, {daemon.NoLongerAudited, sum.NoLongerAudited},
	} {
		if kind.n == 0 && (kind.name == daemon.NewlyAudited || kind.name == daemon.NoLongerAudited) {
			continue // audit changes only where there are any
		}
		fmt.Fprintf(w, "%s: %d packets\n", kind.name, kind.n)
		for _, d := range sum.Differences {
			if d.Change != kind.name {
				continue
			}
			who := d.Owner
			if d.Unit != "" {
				who += " unit " + d.Unit
			}
			fmt.Fprintf(w, "  %s -> %s (now %s): %d", who, endpointName(d.StagedEndpoint), endpointName(d.LiveEndpoint), d.Packets)
			if len(d.Examples) > 0 {
				fmt.Fprintf(w, " (%s)", strings.Join(d.Examples, ", "))
			}
			fmt.Fprintln(w)
		}
	}
}

func endpointName(e string) string {
	if e == "" {
		return "default"
	}
	return "endpoint " + e
}
