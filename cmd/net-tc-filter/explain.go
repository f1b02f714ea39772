// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon"
	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/nss"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/units"
	ntfdbus "github.com/nettcfilter/net-tc-filter/dbus"
)

// explain's exit codes: a script asks "may this user reach that?"
const (
	explainDenied = 3 // every packet asked about is dropped
	explainMixed  = 4 // some pass, some are dropped (several addresses, interfaces or group members)
)

const explainLong = `Say which range decides a sender's packets to a destination, and why: by the
running daemon's live policy (D-Bus Check), else by the configuration files.

--user is a user name, uid:N, group:NAME (each member, as /etc/group and NSS
list them, is judged) or unowned (packets without a socket). --unit NAME puts
the sender in a systemd unit's cgroup (unit: principals); with --unit alone,
only the unit can allow it. --dst is an IPv4 or IPv6 address or a host name:
every address it resolves to is judged. Without --iface, every interface the
policy filters on this host is.
--proto and --port narrow the question to one protocol (tcp, udp, udplite,
sctp, icmp, icmpv6 or a number) and destination port, as endpoints narrowed
by proto: and ports: need: without them the packet's transport is unknown
and only endpoints that narrow neither apply.

When no daemon answers on D-Bus and nothing is pinned in --pin-dir, nothing is
filtered: explain says so instead of judging by the files (--offline does).
When no daemon answers but a filter is pinned (a daemon without the bus, or
one that was killed), explain judges by the files and warns that they may not
be what is enforced.

Exit status:
  0  allowed: every packet asked about passes (also: nothing is filtered)
  1  failure (the files are invalid, the user or host name does not resolve)
  2  usage error
  3  denied: every packet asked about is dropped
  4  some pass and some are dropped (several addresses, interfaces or members)`

type explainOptions struct {
	config, user, unit, dst, iface, pinDir, proto string
	port                                          uint16
	offline                                       bool
}

func newExplainCmd() *cobra.Command {
	var o explainOptions
	cmd := &cobra.Command{
		Use:   "explain --user USER|--unit NAME --dst ADDRESS|HOST [--proto PROTO [--port N]] [--iface NAME] [--offline] [--config FILE] [--pin-dir DIR]",
		Short: "say which range decides a user's packets to a destination, and why",
		Long:  explainLong,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (o.user == "" && o.unit == "") || o.dst == "" {
				return usageError("--user (or --unit) and --dst are required")
			}
			// The files named: the question is about them.
			o.offline = o.offline || cmd.Flags().Changed("config")
			return explain(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.user, "user", "", "sender: a user `NAME`, uid:N, group:NAME (each member) or unowned (no socket)")
	f.StringVar(&o.unit, "unit", "", "the sender's systemd unit `NAME` (x.service, x.slice...): its socket is in that unit's cgroup")
	f.StringVar(&o.dst, "dst", "", "destination: an IPv4 or IPv6 `ADDRESS`, or a host name (every address it resolves to)")
	f.StringVar(&o.iface, "iface", "", "interface `NAME` (default: every filtered interface of this host)")
	f.StringVar(&o.proto, "proto", "", "the packet's protocol `PROTO`: tcp, udp, udplite, sctp, icmp, icmpv6 or a number")
	f.Uint16Var(&o.port, "port", 0, "the packet's destination port `N` (1-65535; with --proto of a protocol with ports)")
	f.BoolVar(&o.offline, "offline", false, "judge by the configuration files, not by the running daemon's live policy")
	configFlag(cmd, &o.config, "main configuration `FILE` to judge by; drop-ins are read from conf.d/ beside it (implies --offline)")
	pinDirFlag(cmd, &o.pinDir, "bpffs `DIR` where a daemon pins its filter: when none answers, tells \"nothing is filtered\" from \"not the daemon's answer\"")
	cmd.RegisterFlagCompletionFunc("user", completeUsers)
	cmd.RegisterFlagCompletionFunc("iface", completeIfaces)
	cmd.RegisterFlagCompletionFunc("dst", cobra.NoFileCompletions)
	cmd.RegisterFlagCompletionFunc("proto", cobra.FixedCompletions([]string{"tcp", "udp", "udplite", "sctp", "icmp", "icmpv6"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("port", cobra.NoFileCompletions)
	return cmd
}

// sender is one owner to judge: the user asked about, or one member of
// the group asked about.
type sender struct {
	principal string // as D-Bus Check takes it
	owner     func() (policy.Owner, error)
}

// judge answers for one interface, sender and packet.
type judge func(iface string, s sender, k policy.Packet) (allowed bool, reason string, err error)

// transport reads --proto and --port into the packet to dst.
func transport(o explainOptions, dst netip.Addr) (policy.Packet, error) {
	if o.proto == "" {
		if o.port != 0 {
			return policy.Packet{}, usageError("--port needs --proto (tcp, udp, udplite or sctp)")
		}
		return policy.Packet{Dst: dst}, nil
	}
	proto, err := config.ParseProto(o.proto)
	if err != nil {
		return policy.Packet{}, usageError("--proto: %v", err)
	}
	k, err := policy.PacketTo(dst, proto, o.port)
	if err != nil {
		return policy.Packet{}, usageError("--proto %s --port: %v", o.proto, err)
	}
	return k, nil
}

func explain(ctx context.Context, o explainOptions, stdout, stderr io.Writer) error {
	// The question's own faults first, before any name is resolved.
	if _, err := transport(o, netip.IPv4Unspecified()); err != nil {
		return err
	}
	dsts, byName, err := destinations(ctx, o.dst)
	if err != nil {
		return err
	}
	senders, err := sendersOf(o.user, o.unit)
	if err != nil {
		return err
	}
	var ifaces []string
	var decide judge
	if !o.offline {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := ntfdbus.Dial(ctx)
		if err == nil {
			defer c.Close()
			ifaces, decide, err = online(ctx, c, o.iface)
			if err != nil {
				return err
			}
		} else {
			left, perr := pinned(o.pinDir)
			if perr == nil && !left {
				fmt.Fprintf(stdout, "no daemon running: nothing is filtered (%v; nothing is pinned in %s). --offline judges by the configuration files.\n", err, o.pinDir)
				return nil
			}
			why := fmt.Sprintf("a filter is pinned in %s", o.pinDir)
			if perr != nil {
				why = fmt.Sprintf("cannot tell whether a filter is pinned: %v", perr)
			}
			fmt.Fprintf(stderr, "net-tc-filter explain: %v, but %s: judging by the configuration files instead, which may not be what is enforced\n", err, why)
		}
	}
	if decide == nil {
		if ifaces, decide, err = offline(o.config, o.iface, stderr); err != nil {
			return err
		}
	}

	names := newNamer()
	if byName {
		fmt.Fprintf(stdout, "%s resolves to %s\n", o.dst, joinAddrs(dsts))
	}
	if strings.HasPrefix(o.user, "group:") {
		var members []string
		for _, s := range senders {
			members = append(members, names.humanize(s.principal))
		}
		fmt.Fprintf(stdout, "%s: members %s\n", o.user, strings.Join(members, ", "))
	}
	var allowed, denied int
	for _, iface := range ifaces {
		for _, s := range senders {
			for _, dst := range dsts {
				k, err := transport(o, dst)
				if err != nil {
					return err
				}
				ok, reason, err := decide(iface, s, k)
				if err != nil {
					return err
				}
				where := iface
				if byName {
					where += " " + dst.String()
				}
				verdict := "denied"
				if ok {
					verdict = "allowed"
					allowed++
				} else {
					denied++
				}
				fmt.Fprintf(stdout, "%s: %s: %s\n", where, verdict, names.humanize(reason))
			}
		}
	}
	switch {
	case denied == 0:
		return nil
	case allowed == 0:
		return exit(explainDenied)
	}
	return exit(explainMixed)
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// destinations reads --dst: an address, or a host name (byName) and
// every address it resolves to.
func destinations(ctx context.Context, s string) (_ []netip.Addr, byName bool, _ error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return []netip.Addr{a}, false, nil
	} else if strings.Contains(s, ":") || strings.Trim(s, "0123456789.") == "" {
		// Meant as an address, not a name: say what is wrong with it.
		return nil, false, usageError("--dst: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	found, err := net.DefaultResolver.LookupNetIP(ctx, "ip", s)
	if err != nil {
		return nil, true, fail("--dst %s: the host name does not resolve: %v", s, err)
	}
	var as []netip.Addr
	for _, a := range found {
		as = append(as, a.Unmap())
	}
	slices.SortFunc(as, netip.Addr.Compare)
	return slices.Compact(as), true, nil
}

// sendersOf reads --user and --unit: one sender, or every member of a
// group, in the unit's cgroup when unit is given.
func sendersOf(who, unit string) ([]sender, error) {
	in := func(principal string) string {
		switch {
		case unit == "":
			return principal
		case principal == "":
			return "unit:" + unit
		}
		return principal + "@unit:" + unit
	}
	if unit != "" && who == "unowned" {
		return nil, usageError("--unit: a packet without a socket (unowned) has no cgroup")
	}
	group, ok := strings.CutPrefix(who, "group:")
	if !ok {
		p := in(who)
		return []sender{{
			principal: p,
			owner:     func() (policy.Owner, error) { return daemon.ParseOwner(p, units.With(nss.Resolver{})) },
		}}, nil
	}
	uids, err := nss.Resolver{}.Group(group)
	if err != nil {
		return nil, fail("--user: %v", err)
	}
	slices.Sort(uids)
	uids = slices.Compact(uids)
	if len(uids) == 0 {
		return nil, fail("--user: group %q has no members: nobody to judge", group)
	}
	var ss []sender
	for _, uid := range uids {
		p := in("uid:" + strconv.FormatUint(uint64(uid), 10))
		ss = append(ss, sender{
			principal: p,
			owner:     func() (policy.Owner, error) { return daemon.ParseOwner(p, units.With(nss.Resolver{})) },
		})
	}
	return ss, nil
}

// online judges by the running daemon's live policy.
func online(ctx context.Context, c *ntfdbus.Client, iface string) ([]string, judge, error) {
	ifaces := []string{iface}
	if iface == "" {
		st, err := c.Status(ctx)
		if err != nil {
			return nil, nil, fail("%v", err)
		}
		ifaces = ifaces[:0]
		for _, a := range st.Interfaces {
			ifaces = append(ifaces, a.Name)
		}
		if len(ifaces) == 0 {
			return nil, nil, fail("the running daemon filters no interface; name one with --iface")
		}
	}
	return ifaces, func(iface string, s sender, k policy.Packet) (bool, string, error) {
		d, err := c.Check(ctx, s.principal, k.Destination(), iface)
		if err != nil {
			return false, "", fail("%v", err)
		}
		return d.Allowed, d.Reason, nil
	}, nil
}

// offline judges by the files, as the daemon would enforce them.
func offline(cfgPath, iface string, stderr io.Writer) ([]string, judge, error) {
	// A name that does not resolve matches no one (check calls it an
	// error).
	_, p, err := daemon.LoadAsEnforced(cfgPath, units.With(nss.Resolver{}))
	if err != nil {
		printErrors(stderr, err)
		return nil, nil, exit(exitFailure)
	}
	for _, u := range p.Unresolved {
		fmt.Fprintf(stderr, "warning: %s: it matches no one, as in the daemon\n", u)
	}
	ifaces := []string{iface}
	if iface == "" {
		all, err := bpf.Interfaces()
		if err != nil {
			return nil, nil, fail("%v", err)
		}
		ifaces = ifaces[:0]
		for _, ifc := range daemon.Filtered(p, all) {
			ifaces = append(ifaces, ifc.Name)
		}
		if len(ifaces) == 0 {
			return nil, nil, fail("the configuration filters no interface of this host; name one with --iface")
		}
	}
	return ifaces, func(iface string, s sender, k policy.Packet) (bool, string, error) {
		owner, err := s.owner()
		if err != nil {
			return false, "", fail("--user: %v", err)
		}
		d := p.DecidePacket(iface, owner, k)
		return d.Allowed, d.Reason, nil
	}, nil
}

// namer puts user names where the policy's words have uids: an
// administrator knows www-data, not uid:33.
type namer struct {
	names map[string]string
}

func newNamer() *namer { return &namer{names: map[string]string{}} }

var (
	uidWord     = regexp.MustCompile(`\buid:[0-9]+\b`)
	allowedList = regexp.MustCompile(`allowed: ([^;)]*)\)`)
)

// humanize names the uids of a reason and lists the allowed ones with
// commas ("allowed: uid:0 uid:1000" is "allowed: root, agent").
func (n *namer) humanize(reason string) string {
	reason = allowedList.ReplaceAllStringFunc(reason, func(m string) string {
		list := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(m, "allowed: "), ")"))
		return "allowed: " + strings.Join(list, ", ") + ")"
	})
	return uidWord.ReplaceAllStringFunc(reason, n.name)
}

// name is the user name of "uid:N", or "uid:N" when NSS has none. A
// lookup NSS does not answer within policy.LookupBudget is given up: the
// uid stays.
func (n *namer) name(word string) string {
	if s, ok := n.names[word]; ok {
		return s
	}
	found := make(chan string, 1)
	go func() {
		u, err := user.LookupId(strings.TrimPrefix(word, "uid:"))
		if err != nil {
			found <- word
			return
		}
		found <- u.Username
	}()
	s := word
	select {
	case s = <-found:
	case <-time.After(policy.LookupBudget):
	}
	n.names[word] = s
	return s
}

// completeUsers offers the users and groups NSS enumerates.
func completeUsers(_ *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
	words := []string{"unowned"}
	for _, db := range []struct{ path, prefix string }{{"/etc/passwd", ""}, {"/etc/group", "group:"}} {
		body, err := os.ReadFile(db.path)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(body)) {
			if name, _, ok := strings.Cut(line, ":"); ok && name != "" && !strings.HasPrefix(name, "#") {
				words = append(words, db.prefix+name)
			}
		}
	}
	var out []cobra.Completion
	for _, w := range words {
		if strings.HasPrefix(w, prefix) {
			out = append(out, w)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeIfaces offers this host's interfaces.
func completeIfaces(_ *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
	all, err := bpf.Interfaces()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var out []cobra.Completion
	for _, ifc := range all {
		if strings.HasPrefix(ifc.Name, prefix) {
			out = append(out, ifc.Name)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
