// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon/logging"
)

// LoggedDecision is one kernel decision, enriched for people.
type LoggedDecision struct {
	bpf.KernelDecision
	User      string // user name, when NSS knows the uid
	Unit      string // systemd unit of the sender, when known
	Iface     string
	Endpoints []string
	Range     netip.Prefix // invalid: the interface default decided
	// StagedEndpoints are the staged policy's endpoints that decide
	// otherwise, where Staged ("" : its default).
	StagedEndpoints string
}

// Action is "allow", "deny" or "audit" (not allowed, passed by mode:
// audit), as NTF_ACTION says it.
func (d LoggedDecision) Action() string {
	switch {
	case d.Allowed:
		return "allow"
	case d.Audit:
		return "audit"
	}
	return "deny"
}

// Owner is "uid=1001(bob)", "uid=1001" or "unowned".
func (d LoggedDecision) Owner() string {
	if d.Unowned {
		return "unowned"
	}
	if d.User != "" {
		return fmt.Sprintf("uid=%d(%s)", d.UID, d.User)
	}
	return fmt.Sprintf("uid=%d", d.UID)
}

// Message is the human line of SPEC §4, e.g. "denied egress uid=33(www-data)
// unit=webapp.service 10.0.0.5:51234 -> 169.254.169.254:80/tcp on eth0
// (endpoint imdsv2)". The unit is there when known: journalctl shows
// MESSAGE alone, and which service was denied is most of the story.
func (d LoggedDecision) Message() string {
	verb := "denied"
	switch {
	case d.Allowed:
		verb = "allowed"
	case d.Audit:
		// Enforcement would drop it: say so first, in words an
		// administrator grepping for "denied" will not mistake.
		verb = "audit: would deny"
	}
	who := d.Owner()
	if d.Unit != "" {
		who += " unit=" + d.Unit
	}
	why := "default"
	if len(d.Endpoints) > 0 {
		why = "endpoint " + strings.Join(d.Endpoints, ", ")
	}
	if d.Audit {
		why += ", mode: audit, passed"
	}
	msg := fmt.Sprintf("%s egress %s %s -> %s/%s on %s (%s)",
		verb, who, hostPort(d.Src, d.Sport, d.Proto), hostPort(d.Dst, d.Dport, d.Proto),
		protoName(d.Proto), d.Iface, why)
	if d.Staged {
		by := "default"
		if d.StagedEndpoints != "" {
			by = "endpoint " + d.StagedEndpoints
		}
		msg += fmt.Sprintf("; the staged policy would %s it (%s)", d.StagedAction, by)
	}
	return msg
}

func hostPort(a netip.Addr, port uint16, proto uint8) string {
	if !hasPorts(proto) {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}

func hasPorts(proto uint8) bool {
	switch proto {
	case 6, 17, 132, 136:
		return true
	}
	return false
}

func protoName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	case 136:
		return "udplite"
	}
	return strconv.Itoa(int(p))
}

// DeniedMessageID marks denied decisions in the journal, so that
// `journalctl MESSAGE_ID=...` finds them whatever the message says.
const DeniedMessageID = "3f3fbd7373b641db84b2703fd2958c15"

// AuditMessageID marks audited decisions (mode: audit: not allowed, passed),
// so that `journalctl MESSAGE_ID=...` lists what enforcing the audited
// rules would drop.
const AuditMessageID = "dbb8e410b2b34860a05ce3b0a0df4558"

// decisionLog turns the kernel's events into log records: enriched,
// aggregated and held to log.rate. It runs on its own goroutine so that a
// flood of decisions never slows a reload.
type decisionLog struct {
	s      *Service
	filter *bpf.Filter // s.filter, which Run lets go only once the log is closed
	events *bpf.DecisionReader
	units  *logging.Units // nil: no cgroup2, units unknown
	users  map[uint32]string
	limit  *limiter
	lost   uint64 // ring-buffer drops reported so far
	done   chan struct{}
}

func (s *Service) startDecisionLog() (*decisionLog, error) {
	events, err := s.filter.Events()
	if err != nil {
		return nil, err
	}
	d := &decisionLog{
		s:      s,
		filter: s.filter,
		events: events,
		users:  map[uint32]string{},
		limit:  newLimiter(s.cfg.Log.Rate),
		done:   make(chan struct{}),
	}
	if d.units, err = logging.NewUnits(); err != nil {
		s.log.Warn("decision log: systemd units of senders unknown", "err", err)
	}
	if c, err := s.filter.Counters(); err == nil {
		d.lost = c.EventsLost // an earlier run's losses are not ours to report
	}
	go d.run()
	return d, nil
}

func (d *decisionLog) close() {
	d.events.Close()
	<-d.done
}

func (d *decisionLog) run() {
	defer close(d.done)
	next := time.Now().Add(time.Second)
	for {
		d.events.SetDeadline(next)
		ev, err := d.events.Read()
		now := time.Now()
		switch {
		case errors.Is(err, bpf.ErrClosed):
			d.tick(now)
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
		case err != nil:
			d.s.log.Error("read decision events", "err", err)
			time.Sleep(100 * time.Millisecond) // never spin on a broken reader
		default:
			// Every staged event, logged or not, may be an example.
			d.s.noteExample(ev)
			if d.limit.add(ev, now) {
				d.limit.wrote(d.emit(ev, 1))
			}
		}
		if !now.Before(next) {
			d.tick(now)
			// A second after the summaries went out, when the rate
			// has room for as many again.
			next = time.Now().Add(time.Second)
		}
	}
}

// tick emits the aggregated decisions of the second that ended and says
// what the rate limit and the kernel's ring buffer left out.
func (d *decisionLog) tick(now time.Time) {
	d.limit.setRate(int(d.s.rate.Load()))
	suppressed := d.limit.flush(now, func(sum summary) time.Time { return d.emit(sum.ev, sum.count) })
	if suppressed > 0 {
		d.s.suppressed.Add(suppressed)
		d.s.log.Warn(fmt.Sprintf("decision log over log.rate (%d/s): %d decisions not logged", d.limit.rate, suppressed),
			"NTF_SUPPRESSED", suppressed)
	}
	c, err := d.filter.Counters()
	if err != nil {
		d.s.log.Error("read counters", "err", err)
		return
	}
	if c.EventsLost > d.lost {
		d.s.log.Warn(fmt.Sprintf("kernel ring buffer full: %d decisions not reported", c.EventsLost-d.lost),
			"NTF_EVENTS_LOST", c.EventsLost-d.lost)
		d.lost = c.EventsLost
	}
}

func (d *decisionLog) enrich(ev bpf.KernelDecision) LoggedDecision {
	dec := LoggedDecision{KernelDecision: ev}
	if name, ok := d.s.ifaceName(ev.Ifindex); ok {
		dec.Iface = name
	} else {
		dec.Iface = "ifindex " + strconv.Itoa(ev.Ifindex)
	}
	if ev.Staged {
		dec.StagedEndpoints = d.stagedEndpoints(ev)
	}
	if r, ok := d.filter.Rule(ev.Generation, ev.Rule); ok {
		dec.Range, dec.Endpoints = r.Range, r.Endpoints
	} else if ev.Rule != 0 {
		// A range decided, but of a policy swapped out long ago: say
		// so rather than blame the default.
		dec.Endpoints = []string{fmt.Sprintf("unknown: rule %d of generation %d", ev.Rule, ev.Generation)}
	}
	if !ev.Unowned {
		dec.User = d.userName(ev.UID)
	}
	if d.units != nil && ev.Cgroup != 0 {
		dec.Unit = d.units.Unit(ev.Cgroup)
	}
	return dec
}

// userName caches NSS answers: a flood of decisions must not become a flood
// of LDAP queries.
func (d *decisionLog) userName(uid uint32) string {
	if name, ok := d.users[uid]; ok {
		return name
	}
	if len(d.users) > 4096 {
		clear(d.users)
	}
	name := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = u.Username
	}
	d.users[uid] = name
	return name
}

// emit logs a decision and returns when the line went out.
func (d *decisionLog) emit(ev bpf.KernelDecision, count uint64) time.Time {
	dec := d.enrich(ev)
	level := slog.LevelWarn
	switch {
	case dec.Allowed:
		level = slog.LevelInfo
	case dec.Audit:
		level = logging.LevelNotice // PRIORITY 5: it passed
	}
	d.s.opts.Decisions.LogAttrs(context.Background(), level, dec.Message(), dec.fields(count)...)
	return time.Now()
}

// fields are the journal fields of SPEC §4.
func (d LoggedDecision) fields(count uint64) []slog.Attr {
	uid, user := strconv.FormatUint(uint64(d.UID), 10), d.User
	if d.Unowned {
		uid, user = "", "unowned"
	}
	rng := ""
	if d.Range.IsValid() {
		rng = d.Range.String()
	}
	attrs := []slog.Attr{
		slog.String("NTF_ACTION", d.Action()),
		slog.String("NTF_UID", uid),
		slog.String("NTF_USER", user),
		slog.String("NTF_UNIT", d.Unit),
		slog.String("NTF_IFACE", d.Iface),
		slog.String("NTF_SRC", d.Src.String()),
		slog.String("NTF_DST", d.Dst.String()),
		slog.String("NTF_PROTO", protoName(d.Proto)),
		slog.String("NTF_SPORT", portText(d.Sport, d.Proto)),
		slog.String("NTF_DPORT", portText(d.Dport, d.Proto)),
		slog.String("NTF_ENDPOINT", strings.Join(d.Endpoints, ",")),
		slog.String("NTF_RANGE", rng),
		slog.Uint64("NTF_COUNT", count),
	}
	if d.Staged {
		attrs = append(attrs,
			slog.String("NTF_STAGED_ACTION", d.StagedAction.String()),
			slog.String("NTF_STAGED_ENDPOINT", d.StagedEndpoints))
	}
	switch {
	case d.Audit:
		attrs = append([]slog.Attr{slog.String("MESSAGE_ID", AuditMessageID)}, attrs...)
	case !d.Allowed:
		attrs = append([]slog.Attr{slog.String("MESSAGE_ID", DeniedMessageID)}, attrs...)
	}
	return attrs
}

func portText(port uint16, proto uint8) string {
	if !hasPorts(proto) {
		return ""
	}
	return strconv.Itoa(int(port))
}
