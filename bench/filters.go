// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bytes"
	"fmt"
	"time"

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// Filter is one way to enforce a RuleSet in the client namespace.
type Filter interface {
	Name() string
	// Apply makes rs the live policy (from none, or replacing the
	// current one) and returns how long the command took until the
	// policy was live by the tool's own account.
	Apply(rs RuleSet) (time.Duration, error)
	// Remove takes the filter away.
	Remove() error
}

// Filter names as they appear in the results.
const (
	NameNone     = "none"
	NameIptables = "iptables"
	NameNft      = "nft"
	NameOurs     = "net-tc-filter"
)

type noFilter struct{}

func (noFilter) Name() string                         { return NameNone }
func (noFilter) Apply(RuleSet) (time.Duration, error) { return 0, nil }
func (noFilter) Remove() error                        { return nil }

// Iptables loads the rule set with iptables-restore (replacing the filter table).
type Iptables struct{ NS *netlab.NS }

func (Iptables) Name() string { return NameIptables }

func (f Iptables) Apply(rs RuleSet) (time.Duration, error) {
	if err := rs.validate(); err != nil {
		return 0, err
	}
	return timedStdin(f.NS, rs.IptablesRestore(), "iptables-restore")
}

func (f Iptables) Remove() error {
	_, err := f.NS.Exec("iptables", "-F", "OUTPUT")
	return err
}

// Nft loads the rule set with nft -f (one transaction replacing the table).
type Nft struct{ NS *netlab.NS }

func (Nft) Name() string { return NameNft }

func (f Nft) Apply(rs RuleSet) (time.Duration, error) {
	if err := rs.validate(); err != nil {
		return 0, err
	}
	return timedStdin(f.NS, rs.Nft(), "nft", "-f", "-")
}

func (f Nft) Remove() error {
	_, err := f.NS.Exec("nft", "delete", "table", "inet", NftTable)
	return err
}

func timedStdin(ns *netlab.NS, in []byte, name string, args ...string) (time.Duration, error) {
	cmd := ns.Command(name, args...)
	cmd.Stdin = bytes.NewReader(in)
	start := time.Now()
	_, err := netlab.Run(cmd)
	return time.Since(start), err
}

// Ours runs the daemon. Apply starts it (the time is until READY=1: the
// daemon says READY only once the policy is live) or, when it runs,
// replaces its configuration file and waits for the reload's READY=1.
type Ours struct {
	Bin string
	NS  *netlab.NS
	D   *Daemon
	// LastChange is when the last reload's configuration file was
	// renamed into place; LastReloading when RELOADING=1 came.
	LastChange, LastReloading time.Time
}

func (*Ours) Name() string { return NameOurs }

func (f *Ours) Apply(rs RuleSet) (time.Duration, error) {
	if err := rs.validate(); err != nil {
		return 0, err
	}
	if f.D == nil {
		start := time.Now()
		d, err := StartDaemon(f.Bin, f.NS, rs.Ours(), 5*time.Minute)
		if err != nil {
			return 0, err
		}
		f.D = d
		return time.Since(start), nil
	}
	f.D.Notify.Drain()
	start, err := f.D.WriteConfig(rs.Ours())
	if err != nil {
		return 0, err
	}
	f.LastChange = start
	if f.LastReloading, err = f.D.WaitNotify("RELOADING=1", time.Minute); err != nil {
		return 0, fmt.Errorf("reload: %w", err)
	}
	ready, err := f.D.WaitNotify("READY=1", 5*time.Minute)
	if err != nil {
		return 0, fmt.Errorf("reload: %w", err)
	}
	return ready.Sub(start), nil
}

func (f *Ours) Remove() error {
	if f.D == nil {
		return nil
	}
	err := f.D.Stop()
	f.D = nil
	return err
}
