// SPDX-License-Identifier: Apache-2.0

// Package logging decides where the daemon's log records go (journald's
// native protocol under systemd, text on stderr otherwise) and names the
// systemd unit that sent a packet from the cgroup id the kernel reports.
package logging

import (
	"context"
	"encoding"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// SyslogIdentifier is sent with every journal entry, so that
// `journalctl -t net-tc-filter` finds the daemon's records even when it does
// not run as net-tc-filter.service.
const SyslogIdentifier = "net-tc-filter"

// LevelNotice is syslog's notice (PRIORITY 5), between info and warning:
// slog has no name for it. The decision log gives it to audited packets,
// which are not an error yet but what enforcement would have dropped.
const LevelNotice = slog.LevelInfo + 2

// maxFieldName is journald's limit: longer names make it drop the field.
const maxFieldName = 64

// NewHandler returns a handler that writes to journald with the native
// protocol when stderr is connected to the journal, and slog's text handler
// on stderr otherwise. The native protocol keeps structured attributes as
// journal fields (journalctl NTF_ACTION=deny), which a line on stderr would
// flatten into MESSAGE.
//
// The check is journal.StderrIsJournalStream: JOURNAL_STREAM, set by systemd,
// must name the device and inode of fd 2. A malformed JOURNAL_STREAM counts
// as "not the journal": stderr is the safe choice, it goes somewhere in any
// case. stderr also takes the records journald refuses (see
// NewJournalHandler). A nil level means slog.LevelInfo.
func NewHandler(stderr io.Writer, level slog.Leveler) slog.Handler {
	if ok, err := journal.StderrIsJournalStream(); err == nil && ok {
		return newJournalHandler(level, journal.Send, stderr)
	}
	return slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
}

// NewJournalHandler returns a handler that sends every record to journald
// with the native protocol:
//
//   - MESSAGE is the record's message, PRIORITY follows its level (debug 7,
//     info 6, LevelNotice 5, warning 4, error 3), SYSLOG_IDENTIFIER is always
//     "net-tc-filter".
//   - Every attribute becomes a field. A key that is already a valid journald
//     field name (A-Z, 0-9, _, not starting with _ or a digit, at most 64
//     bytes), like MESSAGE_ID or NTF_ACTION, is kept as it is; any other key
//     is upper-cased with every other character replaced by _ ("err" → ERR,
//     "rule.name" → RULE_NAME), prefixed with X when it would start with _
//     or a digit, and cut to 64 bytes. Groups prefix their name and _
//     (group "http", key "status" → HTTP_STATUS). Keys that would clash with
//     the three fields the handler owns get an X_ prefix (X_MESSAGE). When
//     two attributes end up with the same name, the later one wins.
//
// When journald cannot be reached the record is written as a text line to
// stderr rather than lost, and the next record tries journald again.
// A nil level means slog.LevelInfo.
func NewJournalHandler(level slog.Leveler) slog.Handler {
	return newJournalHandler(level, journal.Send, os.Stderr)
}

// sendFunc has journal.Send's signature, so that tests can see the exact
// fields without a journald.
type sendFunc func(message string, priority journal.Priority, vars map[string]string) error

// journalHandler is immutable once built; WithAttrs and WithGroup copy it.
type journalHandler struct {
	level slog.Leveler
	send  sendFunc
	// attrs are the fields of WithAttrs, already named and formatted: it
	// is done once per logger rather than once per record.
	attrs  []field
	groups []string // of WithGroup, outermost first
	// fallback mirrors the WithAttrs/WithGroup chain on a text handler, so
	// a record that missed journald reads on stderr as it would have.
	fallback slog.Handler
	shared   *sharedState
}

// sharedState is common to a handler and every handler derived from it.
type sharedState struct {
	// root is the fallback text handler without attrs or groups, for the
	// handler's own notice; it shares its writer's mutex with fallback.
	root slog.Handler
	// failing is set while journald refuses records, so that the notice
	// saying why is written once per outage rather than once per record.
	failing atomic.Bool
}

type field struct{ name, value string }

func newJournalHandler(level slog.Leveler, send sendFunc, fallback io.Writer) *journalHandler {
	if level == nil {
		level = slog.LevelInfo
	}
	text := slog.NewTextHandler(fallback, &slog.HandlerOptions{Level: level})
	return &journalHandler{
		level:    level,
		send:     send,
		fallback: text,
		shared:   &sharedState{root: text},
	}
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	c := *h
	c.attrs = appendFields(h.attrs[:len(h.attrs):len(h.attrs)], h.groups, as)
	c.fallback = h.fallback.WithAttrs(as)
	return &c
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.groups = append(h.groups[:len(h.groups):len(h.groups)], name)
	c.fallback = h.fallback.WithGroup(name)
	return &c
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	vars := make(map[string]string, len(h.attrs)+r.NumAttrs()+1)
	for _, f := range h.attrs {
		vars[f.name] = f.value
	}
	var fs []field
	r.Attrs(func(a slog.Attr) bool {
		fs = appendField(fs, h.groups, a)
		return true
	})
	for _, f := range fs {
		vars[f.name] = f.value
	}
	vars["SYSLOG_IDENTIFIER"] = SyslogIdentifier

	err := h.send(r.Message, priority(r.Level), vars)
	if err == nil {
		// Load first: a store on every record would bounce the cache line
		// between the goroutines that log.
		if h.shared.failing.Load() {
			h.shared.failing.Store(false)
		}
		return nil
	}
	if h.shared.failing.CompareAndSwap(false, true) {
		notice := slog.NewRecord(time.Now(), slog.LevelWarn, "journald refuses records, writing them to stderr", 0)
		notice.AddAttrs(slog.String("err", err.Error()))
		// Best effort: the record itself matters more than the notice.
		_ = h.shared.root.Handle(ctx, notice)
	}
	if ferr := h.fallback.Handle(ctx, r); ferr != nil {
		return fmt.Errorf("journald: %w; stderr: %w", err, ferr)
	}
	return nil
}

// priority maps slog's open-ended levels onto syslog's: anything between two
// named slog levels takes the lower one's priority.
func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= LevelNotice:
		return journal.PriNotice
	case l >= slog.LevelInfo:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}

func appendFields(fs []field, groups []string, as []slog.Attr) []field {
	for _, a := range as {
		fs = appendField(fs, groups, a)
	}
	return fs
}

// appendField follows slog's handler rules: resolve the value, drop empty
// attributes, flatten groups into prefixed names, inline groups without a key.
func appendField(fs []field, groups []string, a slog.Attr) []field {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return fs
	}
	if a.Value.Kind() == slog.KindGroup {
		as := a.Value.Group()
		if len(as) == 0 {
			return fs
		}
		if a.Key != "" {
			groups = append(groups[:len(groups):len(groups)], a.Key)
		}
		return appendFields(fs, groups, as)
	}
	return append(fs, field{name: fieldName(groups, a.Key), value: fieldValue(a.Value)})
}

// fieldName turns a key under groups into a name journald accepts. It is the
// identity on names that are valid already, which is what lets the daemon
// choose its journal fields by choosing its attribute keys.
func fieldName(groups []string, key string) string {
	raw := key
	if len(groups) > 0 {
		raw = strings.Join(groups, "_") + "_" + key
	}
	b := make([]byte, 0, len(raw)+2)
	for _, c := range raw {
		switch {
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
			b = append(b, byte(c))
		case 'a' <= c && c <= 'z':
			b = append(b, byte(c-'a'+'A'))
		default:
			b = append(b, '_')
		}
	}
	// Names starting with _ are journald's trusted fields, which it drops
	// from clients, and it refuses a leading digit.
	if len(b) == 0 || b[0] == '_' || ('0' <= b[0] && b[0] <= '9') {
		b = append([]byte{'X'}, b...)
	}
	if len(b) > maxFieldName {
		b = b[:maxFieldName]
	}
	name := string(b)
	switch name {
	case "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER":
		// The handler sets these: a second copy would give the entry two
		// messages, and the identifier must stay what journalctl -t expects.
		return "X_" + name
	}
	return name
}

// fieldValue formats like slog's text handler, minus the quoting: a journal
// field holds any bytes, newlines included.
func fieldValue(v slog.Value) (s string) {
	// A String or MarshalText method on a nil pointer must not take the
	// firewall down with it; slog's own handlers recover the same way.
	defer func() {
		if r := recover(); r != nil {
			s = fmt.Sprintf("!PANIC: %v", r)
		}
	}()
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case encoding.TextMarshaler:
			if b, err := x.MarshalText(); err == nil {
				return string(b)
			}
		case []byte:
			return string(x)
		}
		return fmt.Sprintf("%+v", v.Any())
	default:
		return v.String()
	}
}
