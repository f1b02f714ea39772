package testnet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Journal stands in for journald: it receives the native protocol on a
// socket that a daemon under test sees at /run/systemd/journal/socket
// (see Wrap), so the daemon's real journald code path is what is tested.
type Journal struct {
	Dir string
	C   <-chan map[string]string // one entry per datagram
}

// ListenJournal opens the socket.
func ListenJournal(t testing.TB) *Journal {
	t.Helper()
	dir := t.TempDir()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "socket"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	// A flood test sends many entries at once: room for them.
	conn.SetReadBuffer(8 << 20)
	c := make(chan map[string]string, 65536)
	go func() {
		defer close(c)
		buf := make([]byte, 1<<20)
		oob := make([]byte, 1024)
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			data := buf[:n]
			if oobn > 0 {
				// Large entries come as a memfd passed with SCM_RIGHTS.
				if data, err = readPassedFD(oob[:oobn]); err != nil {
					continue
				}
			}
			if e, err := ParseJournalEntry(data); err == nil {
				c <- e
			}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return &Journal{Dir: dir, C: c}
}

func readPassedFD(oob []byte) ([]byte, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) == 0 {
		return nil, fmt.Errorf("control message: %v", err)
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return nil, fmt.Errorf("rights: %v", err)
	}
	f := os.NewFile(uintptr(fds[0]), "journal-entry")
	defer f.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(f)
	return b.Bytes(), err
}

// ParseJournalEntry decodes journald's native protocol: KEY=value lines, or
// KEY, newline, a little-endian 64-bit length and the raw value for values
// that contain a newline.
func ParseJournalEntry(data []byte) (map[string]string, error) {
	e := map[string]string{}
	for len(data) > 0 {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			return nil, fmt.Errorf("unterminated field %q", data)
		}
		line := data[:nl]
		if eq := bytes.IndexByte(line, '='); eq >= 0 {
			e[string(line[:eq])] = string(line[eq+1:])
			data = data[nl+1:]
			continue
		}
		rest := data[nl+1:]
		if len(rest) < 8 {
			return nil, fmt.Errorf("field %s: short length", line)
		}
		n := binary.LittleEndian.Uint64(rest[:8])
		rest = rest[8:]
		if uint64(len(rest)) < n+1 || rest[n] != '\n' {
			return nil, fmt.Errorf("field %s: bad binary value", line)
		}
		e[string(line)] = string(rest[:n])
		data = rest[n+1:]
	}
	return e, nil
}

// Wrap is a command prefix that runs a command in a private mount
// namespace where /run/systemd/journal is this journal's directory. The
// host's /run is not touched.
func (j *Journal) Wrap() []string {
	const script = `set -e
if [ -d /run/systemd ]; then mount -t tmpfs tmpfs /run/systemd; else mount -t tmpfs tmpfs /run; fi
mkdir -p /run/systemd/journal
mount --bind "$0" /run/systemd/journal
exec "$@"`
	return []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script, j.Dir}
}

// WaitFor returns the first entry for which match is true, failing the
// test after timeout.
func (j *Journal) WaitFor(t testing.TB, timeout time.Duration, what string, match func(map[string]string) bool) map[string]string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e, ok := <-j.C:
			if !ok {
				t.Fatalf("journal closed while waiting for %s", what)
			}
			if match(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("no journal entry %s within %v", what, timeout)
		}
	}
}

// JournalStream is the value of $JOURNAL_STREAM that makes a process with
// stderr f believe that stderr is connected to journald, as systemd sets it.
func JournalStream(t testing.TB, f *os.File) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}
