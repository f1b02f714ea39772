package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/user"
	"strconv"
	"strings"

	"github.com/nettcfilter/net-tc-filter/bpf"
)

// Decision is one kernel decision, enriched for people.
type Decision struct {
	bpf.Event
	User      string // user name, when NSS knows the uid
	Iface     string
	Endpoints []string
	Range     netip.Prefix // invalid: the interface default decided
}

// Action is "allow" or "deny".
func (d Decision) Action() string {
	if d.Allowed {
		return "allow"
	}
	return "deny"
}

// Owner is "uid=1001(bob)", "uid=1001" or "unowned".
func (d Decision) Owner() string {
	if d.Unowned {
		return "unowned"
	}
	if d.User != "" {
		return fmt.Sprintf("uid=%d(%s)", d.UID, d.User)
	}
	return fmt.Sprintf("uid=%d", d.UID)
}

// Message is the human line of SPEC §4, e.g. "denied egress uid=1001(bob)
// 10.0.0.5:51234 -> 169.254.169.254:80/tcp on eth0 (endpoint imdsv2)".
func (d Decision) Message() string {
	verb := "denied"
	if d.Allowed {
		verb = "allowed"
	}
	why := "default"
	if len(d.Endpoints) > 0 {
		why = "endpoint " + strings.Join(d.Endpoints, ", ")
	}
	return fmt.Sprintf("%s egress %s %s -> %s/%s on %s (%s)",
		verb, d.Owner(), hostPort(d.Src, d.Sport, d.Proto), hostPort(d.Dst, d.Dport, d.Proto),
		protoName(d.Proto), d.Iface, why)
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

// decisionLog turns events into log records.
type decisionLog struct {
	f     *bpf.Filter
	log   *slog.Logger
	users map[uint32]string
}

func newDecisionLog(f *bpf.Filter, log *slog.Logger) *decisionLog {
	return &decisionLog{f: f, log: log, users: map[uint32]string{}}
}

func (d *decisionLog) run(events *bpf.EventReader) {
	for {
		ev, err := events.Read()
		if errors.Is(err, bpf.ErrClosed) {
			return
		}
		if err != nil {
			d.log.Error("read decision events", "err", err)
			return
		}
		d.emit(d.enrich(ev))
	}
}

func (d *decisionLog) enrich(ev bpf.Event) Decision {
	dec := Decision{Event: ev, Iface: "ifindex " + strconv.Itoa(ev.Ifindex)}
	for _, a := range d.f.Attachments() {
		if a.Iface.Index == ev.Ifindex {
			dec.Iface = a.Iface.Name
		}
	}
	if r, ok := d.f.Rule(ev.Generation, ev.Rule); ok {
		dec.Range, dec.Endpoints = r.Range, r.Endpoints
	}
	if !ev.Unowned {
		dec.User = d.userName(ev.UID)
	}
	return dec
}

// userName caches NSS answers: a flood of decisions must not become a flood
// of LDAP queries.
func (d *decisionLog) userName(uid uint32) string {
	if name, ok := d.users[uid]; ok {
		return name
	}
	name := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = u.Username
	}
	d.users[uid] = name
	return name
}

func (d *decisionLog) emit(dec Decision) {
	level := slog.LevelWarn
	if dec.Allowed {
		level = slog.LevelInfo
	}
	rng := ""
	if dec.Range.IsValid() {
		rng = dec.Range.String()
	}
	d.log.Log(context.Background(), level, dec.Message(),
		"action", dec.Action(), "uid", dec.UID, "user", dec.User, "iface", dec.Iface,
		"src", dec.Src, "dst", dec.Dst, "proto", protoName(dec.Proto),
		"sport", dec.Sport, "dport", dec.Dport,
		"endpoint", strings.Join(dec.Endpoints, ","), "range", rng)
}
