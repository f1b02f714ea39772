package logging

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nsScript runs in a private mount namespace and puts the test's directory
// where journal.Send looks for journald, /run/systemd/journal. A mkdir there
// would create the directory on the host's /run (a mount namespace separates
// mounts, not files), so the directories are made on a fresh tmpfs instead.
const nsScript = `set -e
dir=$1
shift
if [ ! -d /run/systemd/journal ]; then
	if [ -d /run/systemd ]; then
		mount -t tmpfs -o mode=0755 ntf-test /run/systemd
	else
		mount -t tmpfs -o mode=0755 ntf-test /run
	fi
	mkdir -p /run/systemd/journal
fi
mount --bind "$dir" /run/systemd/journal
exec "$@"`

// bigValue is larger than a unix datagram may be, so that go-systemd passes
// the entry in a file descriptor.
const bigValue = 1 << 20

// journalChild runs inside the mount namespace with JOURNAL_STREAM naming its
// stderr, and logs what TestJournalNativeProtocol expects.
func journalChild() int {
	h := NewHandler(os.Stderr, slog.LevelDebug)
	if _, ok := h.(*journalHandler); !ok {
		fmt.Printf("NewHandler chose %T with JOURNAL_STREAM=%s\n", h, os.Getenv("JOURNAL_STREAM"))
		return 1
	}
	slog.New(h).Info("chosen by NewHandler")

	l := slog.New(NewJournalHandler(slog.LevelDebug)).With("generation", 7)
	l.Warn("denied", "MESSAGE_ID", "5e6f9c2ba1d34b7f8c0e", "NTF_ACTION", "deny",
		"err", errors.New("boom"), "files", []string{"a.yaml", "b.yaml"}, "empty", "")
	l.Error("line one\nline two", "detail", "x\ny")
	l.Debug("big", "blob", strings.Repeat("x", bigValue))
	return 0
}

// TestJournalNativeProtocol sends through go-systemd's real code path, to
// the fixed socket path journald listens on, and reads what arrives there
// as journald would.
func TestJournalNativeProtocol(t *testing.T) {
	requireRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("util-linux's unshare is needed: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	entries := listenJournal(t, filepath.Join(dir, "socket"))

	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(stderr.Fd()), &st); err != nil {
		t.Fatal(err)
	}

	before := hostRun(t)
	var stdout bytes.Buffer
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "--",
		"sh", "-c", nsScript, "sh", dir, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=journal", fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	runErr := cmd.Run()
	errOut, _ := os.ReadFile(stderr.Name())
	if runErr != nil {
		t.Fatalf("child: %v\nstdout: %s\nstderr: %s", runErr, stdout.Bytes(), errOut)
	}
	if len(errOut) != 0 {
		t.Errorf("child wrote to stderr, so journald was not reached:\n%s", errOut)
	}
	if after := hostRun(t); after != before {
		t.Errorf("the host's /run changed:\nbefore: %s\nafter:  %s", before, after)
	}

	got := entries()
	want := []map[string]string{{
		"MESSAGE": "chosen by NewHandler", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "net-tc-filter",
	}, {
		"MESSAGE": "denied", "PRIORITY": "4", "SYSLOG_IDENTIFIER": "net-tc-filter",
		"MESSAGE_ID": "5e6f9c2ba1d34b7f8c0e", "NTF_ACTION": "deny",
		"GENERATION": "7", "ERR": "boom", "FILES": "[a.yaml b.yaml]", "EMPTY": "",
	}, {
		"MESSAGE": "line one\nline two", "PRIORITY": "3", "SYSLOG_IDENTIFIER": "net-tc-filter",
		"GENERATION": "7", "DETAIL": "x\ny",
	}, {
		"MESSAGE": "big", "PRIORITY": "7", "SYSLOG_IDENTIFIER": "net-tc-filter",
		"GENERATION": "7", "BLOB": strings.Repeat("x", bigValue),
	}}
	if len(got) != len(want) {
		t.Fatalf("journal got %d entries, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		if big := i == len(want)-1; got[i].viaFD != big {
			t.Errorf("entry %d came in a passed file: %v, want %v", i, got[i].viaFD, big)
		}
		for k, v := range w {
			vs := got[i].fields[k]
			if len(vs) != 1 || vs[0] != v {
				t.Errorf("entry %d: %s = %.80q, want exactly %.80q", i, k, vs, v)
			}
		}
		for k, vs := range got[i].fields {
			if _, ok := w[k]; !ok {
				t.Errorf("entry %d: unexpected field %s=%q", i, k, vs)
			}
		}
	}
}

// entry is one journal entry as received: each field with all its values,
// and whether it came in a passed file rather than in the datagram.
type entry struct {
	fields map[string][]string
	viaFD  bool
}

// listenJournal plays journald on path. The returned function waits for
// the entries sent so far and returns them.
func listenJournal(t *testing.T, path string) func() []entry {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	type result struct {
		entries []entry
		err     error
	}
	done := make(chan result, 1)
	// Read while the child writes: a unix datagram queue holds only a few
	// entries, and a sender finding it full waits.
	go func() {
		var r result
		buf := make([]byte, 4<<20)
		oob := make([]byte, unix.CmsgSpace(4*4))
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				r.err = err
				break
			}
			data := buf[:n]
			if oobn > 0 {
				if data, err = readPassedFile(oob[:oobn]); err != nil {
					r.err = err
					break
				}
			}
			e, err := parseNative(data)
			if err != nil {
				r.err = fmt.Errorf("entry %d: %w", len(r.entries), err)
				break
			}
			r.entries = append(r.entries, entry{fields: e, viaFD: oobn > 0})
		}
		done <- r
	}()
	return func() []entry {
		// The entries are queued once the sender's sendmsg returned: a short
		// deadline is enough to drain them.
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		r := <-done
		if r.err != nil {
			t.Fatalf("reading the journal socket: %v", r.err)
		}
		return r.entries
	}
}

// readPassedFile reads an entry too large for a datagram, which go-systemd
// writes to a file and passes with SCM_RIGHTS, as journald does: from the
// start, whatever the file offset the sender left.
func readPassedFile(oob []byte) ([]byte, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("%d control messages, want 1", len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	f := os.NewFile(uintptr(fds[0]), "passed entry")
	defer f.Close()
	return io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
}

// parseNative parses one entry of journald's native protocol: fields are
// "KEY=value\n", or "KEY\n", a little-endian uint64 length, the value and
// "\n" for values that may hold newlines.
func parseNative(b []byte) (map[string][]string, error) {
	e := make(map[string][]string)
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			return nil, fmt.Errorf("field without newline: %.40q", b)
		}
		if eq := bytes.IndexByte(b[:nl], '='); eq >= 0 {
			k := string(b[:eq])
			e[k] = append(e[k], string(b[eq+1:nl]))
			b = b[nl+1:]
			continue
		}
		k := string(b[:nl])
		b = b[nl+1:]
		if len(b) < 8 {
			return nil, fmt.Errorf("field %s: no length", k)
		}
		n := binary.LittleEndian.Uint64(b)
		b = b[8:]
		if uint64(len(b)) < n+1 || b[n] != '\n' {
			return nil, fmt.Errorf("field %s: %d bytes announced, %d left or no final newline", k, n, len(b))
		}
		e[k] = append(e[k], string(b[:n]))
		b = b[n+1:]
	}
	return e, nil
}

// hostRun describes what the test could leave behind on the host: the
// directories it creates in the namespace and the mounts under /run.
func hostRun(t *testing.T) string {
	t.Helper()
	var s strings.Builder
	for _, p := range []string{"/run", "/run/systemd", "/run/systemd/journal"} {
		_, err := os.Lstat(p)
		fmt.Fprintf(&s, "%s exists=%v; ", p, err == nil)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == "/run" || strings.HasPrefix(f[4], "/run/")) {
			fmt.Fprintf(&s, "mount %s; ", f[4])
		}
	}
	return s.String()
}

func TestParseNative(t *testing.T) {
	var bin bytes.Buffer
	bin.WriteString("MESSAGE\n")
	binary.Write(&bin, binary.LittleEndian, uint64(5))
	bin.WriteString("a\nb=c\nPRIORITY=6\n")
	tests := []struct {
		in      string
		want    map[string][]string
		wantErr bool
	}{
		{in: "A=1\nB=\nA=2\n", want: map[string][]string{"A": {"1", "2"}, "B": {""}}},
		{in: bin.String(), want: map[string][]string{"MESSAGE": {"a\nb=c"}, "PRIORITY": {"6"}}},
		{in: "A=1", wantErr: true},
		{in: "A\n\x05\x00\x00\x00\x00\x00\x00\x00ab\n", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseNative([]byte(tt.in))
		if (err != nil) != tt.wantErr || fmt.Sprint(got) != fmt.Sprint(tt.want) && !tt.wantErr {
			t.Errorf("parseNative(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
