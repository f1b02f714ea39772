// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	ntfdbus "github.com/nettcfilter/net-tc-filter/dbus"
)

// status's exit codes, after systemctl is-active's: 0 only while the
// configured policy is what is enforced.
const (
	statusNotRunning = 3 // no daemon on the bus, or one starting or stopping
	statusDegraded   = 4 // enforcing, but not (only) what the files say: see last error
)

const statusLong = `Show the running daemon's state, policy generation, counters and, after a
failed reload, every problem of it (one per line). Asks the daemon over D-Bus;
every user may.

Exit status:
  0  running (or reloading): the configured policy is enforced
  1  the daemon could not be asked (no system bus)
  3  not running (nobody owns org.nettcfilter1 on the bus), starting or stopping
  4  degraded: enforcing, but the last reload failed (the previous policy stays),
     the files are invalid at start (the last good set is enforced), or a user
     or group name does not resolve (it matches no one)`

func newStatusCmd() *cobra.Command {
	var asJSON bool
	var pinDir string
	cmd := &cobra.Command{
		Use:   "status [--json] [--pin-dir DIR]",
		Short: "show the running daemon's state, policy generation and counters",
		Long:  statusLong,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return exit(status(cmd.Context(), asJSON, pinDir, cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON, for scripts")
	pinDirFlag(cmd, &pinDir, "bpffs `DIR` where a daemon pins its filter: when none runs, says whether one is still enforced")
	return cmd
}

func status(ctx context.Context, asJSON bool, pinDir string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := ntfdbus.Dial(ctx)
	if errors.Is(err, ntfdbus.ErrNotRunning) {
		fmt.Fprintf(stderr, "net-tc-filter status: %v\n", err)
		if left, _ := pinned(pinDir); left {
			fmt.Fprintf(stderr, "net-tc-filter status: a filter is still pinned in %s and stays enforced (a daemon killed, or stopped with on_stop: keep); 'net-tc-filter detach' removes it\n", pinDir)
		}
		return statusNotRunning
	}
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter status: %v\n", err)
		return exitFailure
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter status: %v\n", err)
		return exitFailure
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			fmt.Fprintf(stderr, "net-tc-filter status: %v\n", err)
			return exitFailure
		}
	} else {
		printStatus(stdout, st)
	}
	return statusCode(st.State)
}

// statusCode is the exit status for a daemon's State.
func statusCode(state string) int {
	switch state {
	case "running", "reloading":
		return exitOK
	case "degraded":
		return statusDegraded
	}
	return statusNotRunning
}

// pinned reports whether pinDir holds anything: a filter a daemon left
// enforced (every run pins its programs, maps and links there; a clean
// stop with on_stop: detach empties it). An error means it cannot tell
// (not root: the directory is root's only).
func pinned(pinDir string) (bool, error) {
	entries, err := os.ReadDir(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return len(entries) > 0, nil
}

func printStatus(w io.Writer, st ntfdbus.Status) {
	fmt.Fprintf(w, "net-tc-filter %s: %s\n", st.Version, st.State)
	applied := "never"
	if !st.LastReload.IsZero() {
		applied = st.LastReload.Local().Format("2006-01-02 15:04:05 MST")
	}
	fmt.Fprintf(w, "  %-12s %d, applied %s\n", "generation", st.Generation, applied)
	lastErr := []string{"none"}
	if st.LastError != "" {
		// One problem a line, as the daemon words them: every one, so
		// that the cause is not hidden behind what follows from it.
		lastErr = strings.Split(strings.TrimRight(st.LastError, "\n"), "\n")
	}
	list(w, "last error", lastErr)
	fmt.Fprintf(w, "  %-12s %d ranges\n", "rules", st.RuleCount)
	audited := ""
	if st.Audited > 0 {
		// Only where mode: audit passed something: most hosts audit
		// nothing, and their status stays as it was.
		audited = fmt.Sprintf(", %d audited (passed by mode: audit)", st.Audited)
	}
	fmt.Fprintf(w, "  %-12s %d allowed, %d denied%s\n", "packets", st.Allowed, st.Denied, audited)
	ifaces := []string{"none"}
	if len(st.Interfaces) > 0 {
		ifaces = ifaces[:0]
	}
	for _, a := range st.Interfaces {
		ifaces = append(ifaces, fmt.Sprintf("%s (ifindex %d, %s)", a.Name, a.Index, a.Mode))
	}
	list(w, "interfaces", ifaces)
	var units []string
	for _, u := range st.Units {
		now := "not there now"
		if u.CgroupID != 0 {
			now = fmt.Sprintf("cgroup id %d", u.CgroupID)
		}
		units = append(units, fmt.Sprintf("%s (%s, %s)", u.Name, u.Path, now))
	}
	list(w, "units", units)
	fmt.Fprintf(w, "  %-12s %s\n", "config", strings.Join(st.ConfigFiles, ", "))
	list(w, "warnings", st.Warnings)
}

// list prints lines under a label, the label on the first only.
func list(w io.Writer, label string, lines []string) {
	for i, s := range lines {
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(w, "  %-12s %s\n", label, s)
	}
}

func newReloadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "make the running daemon reload its configuration (synchronous)",
		Long: `Make the running daemon reload its configuration over D-Bus (root only) and
wait until the new policy is live; the unit's ExecReload=. An invalid set is
refused with every problem, and the running policy stays (exit 1). The new
set's warnings (an interface it locks down with a deny default, an endpoint
that protects nothing on this host) follow on stderr, exit 0. Without
D-Bus (at boot, before the bus), SIGHUP to $MAINPID instead.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return exit(reload(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
}

func reload(ctx context.Context, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, err := ntfdbus.Dial(ctx)
	if err != nil {
		return reloadBySignal(err, stderr)
	}
	defer c.Close()
	gen, err := c.Reload(ctx)
	var de *ntfdbus.Error
	switch {
	case errors.As(err, &de) && de.Name == ntfdbus.ErrInvalidConfig:
		fmt.Fprintln(stderr, "net-tc-filter reload: the configuration is invalid; the running policy stays:")
		fmt.Fprintln(stderr, de.Message)
		return exitFailure
	case errors.As(err, &de) && de.Name == ntfdbus.ErrAccessDenied:
		fmt.Fprintf(stderr, "net-tc-filter reload: permission denied: only root may reload (%s)\n", de.Message)
		return exitFailure
	case err != nil:
		fmt.Fprintf(stderr, "net-tc-filter reload: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "reloaded: generation %d is live\n", gen)
	// What the set does on this host (an interface locked down by a deny
	// default, an endpoint that protects nothing) is said where the
	// administrator is looking: a reload that exits 0 silently is read
	// as "all is well". Status, not the Warnings property: it is computed
	// when asked, so it is this reload's, while the property follows the
	// daemon's change events a moment later.
	st, err := c.Status(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter reload: the new policy is live, but its warnings could not be read (net-tc-filter status lists them): %v\n", err)
		return exitOK
	}
	printWarnings(stderr, st.Warnings)
	return exitOK
}

// reloadBySignal is the fallback of the unit's ExecReload= when D-Bus is
// not up yet (the service starts before it at boot): systemd names the
// daemon in $MAINPID, and SIGHUP reloads it, without the synchronous
// answer.
func reloadBySignal(busErr error, stderr io.Writer) int {
	pid, err := strconv.Atoi(os.Getenv("MAINPID"))
	if err != nil || pid <= 1 {
		fmt.Fprintf(stderr, "net-tc-filter reload: %v\n", busErr)
		return exitFailure
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		fmt.Fprintf(stderr, "net-tc-filter reload: %v; SIGHUP to %d: %v\n", busErr, pid, err)
		return exitFailure
	}
	fmt.Fprintf(stderr, "net-tc-filter reload: %v; sent SIGHUP to %d instead (the outcome is in the journal)\n", busErr, pid)
	return exitOK
}
