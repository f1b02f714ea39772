// SPDX-License-Identifier: Apache-2.0

package logging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// sent is one call of journal.Send.
type sent struct {
	message  string
	priority journal.Priority
	vars     map[string]string
}

// recorder plays journald: it keeps what the handler sends, and refuses it
// while fail is set.
type recorder struct {
	mu   sync.Mutex
	got  []sent
	fail bool
}

func (r *recorder) send(message string, priority journal.Priority, vars map[string]string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("could not initialize socket to journald")
	}
	r.got = append(r.got, sent{message, priority, vars})
	return nil
}

func (r *recorder) setFail(fail bool) {
	r.mu.Lock()
	r.fail = fail
	r.mu.Unlock()
}

// nilStringer's String method is on a pointer, which may be nil.
type nilStringer struct{ s string }

func (n *nilStringer) String() string { return n.s }

// panicky panics in MarshalText, as bugs do.
type panicky struct{}

func (panicky) MarshalText() ([]byte, error) { panic("boom") }

type lazy struct{}

func (lazy) LogValue() slog.Value { return slog.StringValue("resolved") }

func TestJournalHandlerFields(t *testing.T) {
	when := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	tests := []struct {
		name     string
		log      func(*slog.Logger)
		message  string
		priority journal.Priority
		vars     map[string]string
	}{{
		name: "decision fields are kept verbatim, others converted",
		log: func(l *slog.Logger) {
			l.Warn("denied", "MESSAGE_ID", "5e6f9c2ba1d34b7f8c0e", "NTF_ACTION", "deny", "NTF_UID", "1000",
				"err", errors.New("boom"), "generation", 7, "files", []string{"a.yaml", "b.yaml"})
		},
		message:  "denied",
		priority: journal.PriWarning,
		vars: map[string]string{
			"MESSAGE_ID": "5e6f9c2ba1d34b7f8c0e", "NTF_ACTION": "deny", "NTF_UID": "1000",
			"ERR": "boom", "GENERATION": "7", "FILES": "[a.yaml b.yaml]",
		},
	}, {
		name: "names journald would refuse or that clash",
		log: func(l *slog.Logger) {
			l.Info("m", "rule.name", 1, "_trusted", 2, "9lives", 3, "", 4, "größe", 5,
				"message", 6, "PRIORITY", 7, "SYSLOG_IDENTIFIER", 8, strings.Repeat("k", 70), 9, "Mixed-Case", 10)
		},
		message:  "m",
		priority: journal.PriInfo,
		vars: map[string]string{
			"RULE_NAME": "1", "X_TRUSTED": "2", "X9LIVES": "3", "X": "4", "GR__E": "5",
			"X_MESSAGE": "6", "X_PRIORITY": "7", "X_SYSLOG_IDENTIFIER": "8", strings.Repeat("K", 64): "9",
			"MIXED_CASE": "10",
		},
	}, {
		name: "values",
		log: func(l *slog.Logger) {
			var nilPtr *nilStringer
			l.Info("m", "empty", "", "time", when, "dur", 1500*time.Millisecond, "bytes", []byte("a\x00b"),
				"addr", netip.MustParseAddr("2001:db8::1"), "lazy", lazy{}, "float", 0.5, "bool", true,
				"nilerr", error(nil), "nilptr", nilPtr, "multi", "one\ntwo")
		},
		message:  "m",
		priority: journal.PriInfo,
		vars: map[string]string{
			"EMPTY": "", "TIME": "2024-05-06T07:08:09.123456789Z", "DUR": "1.5s", "BYTES": "a\x00b",
			"ADDR": "2001:db8::1", "LAZY": "resolved", "FLOAT": "0.5", "BOOL": "true",
			"NILERR": "<nil>", "NILPTR": "<nil>", "MULTI": "one\ntwo",
		},
	}, {
		name: "a MarshalText method that panics does not take the daemon down",
		log: func(l *slog.Logger) {
			l.Info("m", "bad", panicky{})
		},
		message:  "m",
		priority: journal.PriInfo,
		vars:     map[string]string{"BAD": "!PANIC: boom"},
	}, {
		name: "With, WithGroup and inline groups",
		log: func(l *slog.Logger) {
			l.With("conn", 1).WithGroup("http").With("status", 200).WithGroup("").
				Info("m", "PATH", "/", slog.Group("req", "id", 9, slog.Group("", "inlined", true)), slog.Group("nothing"))
		},
		message:  "m",
		priority: journal.PriInfo,
		vars: map[string]string{
			"CONN": "1", "HTTP_STATUS": "200", "HTTP_PATH": "/", "HTTP_REQ_ID": "9", "HTTP_REQ_INLINED": "true",
		},
	}, {
		name: "the record's attribute wins over With's",
		log: func(l *slog.Logger) {
			l.With("err", "old").Error("m", "err", "new")
		},
		message:  "m",
		priority: journal.PriErr,
		vars:     map[string]string{"ERR": "new"},
	}, {
		name: "notice: syslog priority 5",
		log: func(l *slog.Logger) {
			l.Log(context.Background(), LevelNotice, "audit", "NTF_ACTION", "audit")
		},
		message:  "audit",
		priority: journal.PriNotice,
		vars:     map[string]string{"NTF_ACTION": "audit"},
	}, {
		name:     "multi-line message",
		log:      func(l *slog.Logger) { l.Debug("line one\nline two") },
		message:  "line one\nline two",
		priority: journal.PriDebug,
		vars:     map[string]string{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			var stderr bytes.Buffer
			tt.log(slog.New(newJournalHandler(slog.LevelDebug, rec.send, &stderr)))
			if len(rec.got) != 1 {
				t.Fatalf("sent %d records, want 1", len(rec.got))
			}
			got := rec.got[0]
			if got.message != tt.message || got.priority != tt.priority {
				t.Errorf("MESSAGE=%q PRIORITY=%d, want %q %d", got.message, got.priority, tt.message, tt.priority)
			}
			want := map[string]string{"SYSLOG_IDENTIFIER": "net-tc-filter"}
			for k, v := range tt.vars {
				want[k] = v
			}
			for k, v := range want {
				if g, ok := got.vars[k]; !ok || g != v {
					t.Errorf("%s = %q (present %v), want %q", k, g, ok, v)
				}
			}
			for k, v := range got.vars {
				if _, ok := want[k]; !ok {
					t.Errorf("unexpected field %s=%q", k, v)
				}
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr written while journald works: %q", stderr.String())
			}
		})
	}
}

func TestFieldName(t *testing.T) {
	tests := []struct {
		groups []string
		key    string
		want   string
	}{
		{nil, "NTF_ACTION", "NTF_ACTION"},
		{nil, "MESSAGE_ID", "MESSAGE_ID"},
		{nil, "CODE_LINE", "CODE_LINE"},
		{nil, "err", "ERR"},
		{nil, "a.b-c d", "A_B_C_D"},
		{nil, "_x", "X_X"},
		{nil, "__", "X__"},
		{nil, "0", "X0"},
		{nil, "", "X"},
		{nil, "MESSAGE", "X_MESSAGE"},
		{nil, "priority", "X_PRIORITY"},
		{nil, "syslog_identifier", "X_SYSLOG_IDENTIFIER"},
		{nil, "SYSLOG_IDENTIFIER_2", "SYSLOG_IDENTIFIER_2"},
		{nil, strings.Repeat("A", 64), strings.Repeat("A", 64)},
		{nil, strings.Repeat("a", 65), strings.Repeat("A", 64)},
		{nil, "_" + strings.Repeat("A", 64), "X_" + strings.Repeat("A", 62)},
		{[]string{"http"}, "status", "HTTP_STATUS"},
		{[]string{"a", "b"}, "MESSAGE", "A_B_MESSAGE"},
		{[]string{"_g"}, "k", "X_G_K"},
		{[]string{"message"}, "", "MESSAGE_"},
	}
	for _, tt := range tests {
		if got := fieldName(tt.groups, tt.key); got != tt.want {
			t.Errorf("fieldName(%q, %q) = %q, want %q", tt.groups, tt.key, got, tt.want)
		}
	}
}

func TestPriority(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  journal.Priority
	}{
		{slog.LevelDebug - 4, journal.PriDebug},
		{slog.LevelDebug, journal.PriDebug},
		{slog.LevelInfo - 1, journal.PriDebug},
		{slog.LevelInfo, journal.PriInfo},
		{slog.LevelInfo + 1, journal.PriInfo},
		{LevelNotice, journal.PriNotice}, // slog.LevelInfo + 2
		{slog.LevelWarn - 1, journal.PriNotice},
		{slog.LevelWarn, journal.PriWarning},
		{slog.LevelError, journal.PriErr},
		{slog.LevelError + 8, journal.PriErr},
	}
	for _, tt := range tests {
		if got := priority(tt.level); got != tt.want {
			t.Errorf("priority(%v) = %d, want %d", tt.level, got, tt.want)
		}
	}
}

func TestJournalHandlerEnabled(t *testing.T) {
	var level slog.LevelVar
	level.Set(slog.LevelWarn)
	rec := &recorder{}
	l := slog.New(newJournalHandler(&level, rec.send, &bytes.Buffer{})).With("a", 1).WithGroup("g")
	l.Info("dropped")
	l.Warn("kept")
	level.Set(slog.LevelDebug) // the daemon changes its level on reload
	l.Debug("kept too")
	if len(rec.got) != 2 || rec.got[0].message != "kept" || rec.got[1].message != "kept too" {
		t.Errorf("sent %+v, want the warning and the debug record", rec.got)
	}
	if h := newJournalHandler(nil, rec.send, &bytes.Buffer{}); h.Enabled(context.Background(), slog.LevelDebug) ||
		!h.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("a nil level is not slog.LevelInfo")
	}
}

// Handlers derived from one parent must not see each other's attributes,
// even when the parent's slices have spare capacity.
func TestJournalHandlerImmutable(t *testing.T) {
	rec := &recorder{}
	base := slog.New(newJournalHandler(nil, rec.send, &bytes.Buffer{})).With("a", 1, "b", 2, "c", 3).WithGroup("g1")
	x := base.With("x", 1).WithGroup("gx")
	y := base.With("y", 1).WithGroup("gy")
	x.Info("x", "k", 1)
	y.Info("y", "k", 1)
	base.Info("base", "k", 1)
	want := []map[string]string{
		{"A": "1", "B": "2", "C": "3", "G1_X": "1", "G1_GX_K": "1", "SYSLOG_IDENTIFIER": "net-tc-filter"},
		{"A": "1", "B": "2", "C": "3", "G1_Y": "1", "G1_GY_K": "1", "SYSLOG_IDENTIFIER": "net-tc-filter"},
		{"A": "1", "B": "2", "C": "3", "G1_K": "1", "SYSLOG_IDENTIFIER": "net-tc-filter"},
	}
	for i, w := range want {
		if got := rec.got[i].vars; fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("record %q: %v, want %v", rec.got[i].message, got, w)
		}
	}
}

func TestJournalHandlerFallback(t *testing.T) {
	rec := &recorder{}
	var stderr bytes.Buffer
	l := slog.New(newJournalHandler(nil, rec.send, &stderr)).With("generation", 3).WithGroup("g")

	l.Info("before")
	rec.setFail(true)
	l.Info("lost one", "n", 1)
	l.Info("lost two", "n", 2)
	rec.setFail(false)
	l.Info("back")
	rec.setFail(true)
	l.Error("lost three")

	if len(rec.got) != 2 || rec.got[0].message != "before" || rec.got[1].message != "back" {
		t.Errorf("journald got %+v, want before and back", rec.got)
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	want := []string{
		`level=WARN msg="journald refuses records, writing them to stderr" err="could not initialize socket to journald"`,
		`level=INFO msg="lost one" generation=3 g.n=1`,
		`level=INFO msg="lost two" generation=3 g.n=2`,
		`level=WARN msg="journald refuses records, writing them to stderr" err="could not initialize socket to journald"`,
		`level=ERROR msg="lost three" generation=3`,
	}
	if len(lines) != len(want) {
		t.Fatalf("stderr has %d lines, want %d:\n%s", len(lines), len(want), stderr.String())
	}
	for i, line := range lines {
		// Drop the time, which is not ours to choose.
		if _, rest, ok := strings.Cut(line, " "); !ok || !strings.HasPrefix(line, "time=") || rest != want[i] {
			t.Errorf("stderr line %d = %q, want time=… %s", i, line, want[i])
		}
	}
}

type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, syscall.EPIPE }

func TestJournalHandlerFallbackFails(t *testing.T) {
	rec := &recorder{fail: true}
	h := newJournalHandler(nil, rec.send, brokenWriter{})
	err := h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelInfo, "m", 0))
	if err == nil || !errors.Is(err, syscall.EPIPE) || !strings.Contains(err.Error(), "journald") {
		t.Errorf("Handle = %v, want both the journald and the stderr error", err)
	}
}

// Run with -race: derived handlers share the fallback writer and the outage
// flag.
func TestJournalHandlerConcurrent(t *testing.T) {
	rec := &recorder{}
	var stderr testnet.SyncBuffer
	base := slog.New(newJournalHandler(nil, rec.send, &stderr))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			l := base.With("worker", i)
			for j := range 100 {
				rec.setFail(j%3 == 0)
				l.Info("m", "j", j)
			}
		})
	}
	wg.Wait()
	lines := strings.Count(stderr.String(), "\n")
	if len(rec.got)+lines < 800 {
		t.Errorf("%d records reached journald and %d lines stderr: records lost", len(rec.got), lines)
	}
	for line := range strings.SplitSeq(stderr.String(), "\n") {
		if line != "" && !strings.HasPrefix(line, "time=") {
			t.Errorf("interleaved stderr line %q", line)
		}
	}
}

// NewHandler's choice in this process: JOURNAL_STREAM against the real fd 2.
// The end-to-end case, with a child whose stderr the test chooses, is in
// TestJournalNativeProtocol.
func TestNewHandlerChoice(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Fstat(2, &st); err != nil {
		t.Fatal(err)
	}
	other, err := os.Stat(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherSt := other.Sys().(*syscall.Stat_t)
	tests := []struct {
		name    string
		stream  string
		unset   bool
		journal bool
	}{
		{name: "unset", unset: true},
		{name: "empty", stream: ""},
		{name: "malformed", stream: "journal"},
		{name: "another file", stream: fmt.Sprintf("%d:%d", otherSt.Dev, otherSt.Ino)},
		{name: "stderr's device and inode", stream: fmt.Sprintf("%d:%d", st.Dev, st.Ino), journal: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("JOURNAL_STREAM", tt.stream)
			if tt.unset {
				os.Unsetenv("JOURNAL_STREAM")
			}
			var stderr bytes.Buffer
			h := NewHandler(&stderr, slog.LevelDebug)
			jh, isJournal := h.(*journalHandler)
			if isJournal != tt.journal {
				t.Fatalf("NewHandler gave %T, want journal %v", h, tt.journal)
			}
			if isJournal {
				// Records journald refuses go to the stderr given, not fd 2.
				rec := &recorder{fail: true}
				jh.send = rec.send
				slog.New(jh).Debug("refused")
			} else {
				slog.New(h).Debug("refused")
			}
			if !strings.Contains(stderr.String(), "level=DEBUG msg=refused") {
				t.Errorf("stderr = %q, want the record as text", stderr.String())
			}
		})
	}
}
