// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Journal stands in for journald: it receives the native protocol on a
// socket that a daemon under test sees at /run/systemd/journal/socket
// (see Wrap), so the daemon's real journald code path is what is tested.
//
// It is stricter than journald: a datagram that is not a valid entry (see
// ParseJournalEntry) is not sent on C, and Close reports it.
type Journal struct {
	Dir string
	C   <-chan map[string]string // one entry per datagram

	conn  *net.UnixConn
	stop  chan struct{}
	done  chan struct{}
	close sync.Once

	mu     sync.Mutex
	passed []bool  // for each entry sent on C: whether it came in a file
	errs   []error // the datagrams that were not a valid entry
	n      int     // datagrams received
}

// ListenJournal opens the socket in a directory of its own; Close removes
// both.
func ListenJournal() (*Journal, error) {
	dir, err := os.MkdirTemp("", "ntf-journal-")
	if err != nil {
		return nil, fmt.Errorf("journal socket: %w", err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "socket"), Net: "unixgram"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("journal socket: %w", err)
	}
	// A flood test sends many entries at once: room for them.
	conn.SetReadBuffer(8 << 20)
	c := make(chan map[string]string, 65536)
	j := &Journal{Dir: dir, C: c, conn: conn, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(j.done)
		defer close(c)
		j.read(conn, c, j.stop)
	}()
	return j, nil
}

// Close stops receiving, removes the socket and returns the datagrams that
// were not a valid entry, and any error receiving, joined. Later calls do
// nothing.
func (j *Journal) Close() error {
	var err error
	j.close.Do(func() {
		close(j.stop)
		j.conn.Close()
		<-j.done
		j.mu.Lock()
		defer j.mu.Unlock()
		err = errors.Join(append(j.errs, os.RemoveAll(j.Dir))...)
	})
	return err
}

// read receives datagrams until the socket is closed or stop is.
func (j *Journal) read(conn *net.UnixConn, c chan<- map[string]string, stop <-chan struct{}) {
	buf := make([]byte, 1<<20)
	oob := make([]byte, 1024)
	for {
		n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				j.mu.Lock()
				j.errs = append(j.errs, err)
				j.mu.Unlock()
			}
			return
		}
		e, passed, err := decodeDatagram(buf[:n], oob[:oobn], flags)
		j.mu.Lock()
		j.n++
		if err != nil {
			j.errs = append(j.errs, fmt.Errorf("datagram %d: %w", j.n, err))
		} else {
			j.passed = append(j.passed, passed)
		}
		j.mu.Unlock()
		if err != nil {
			continue
		}
		select {
		case c <- e:
		case <-stop:
			return
		}
	}
}

// PassedFD says, for each entry sent on C so far and in the same order,
// whether it came in a file passed with SCM_RIGHTS (how an entry too large
// for a datagram is sent) rather than in the datagram itself.
func (j *Journal) PassedFD() []bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]bool(nil), j.passed...)
}

// decodeDatagram returns the entry a datagram carries, in its payload or,
// for an entry too large for a datagram, in the file passed with it, and
// says which.
func decodeDatagram(data, oob []byte, flags int) (map[string]string, bool, error) {
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		return nil, false, errors.New("truncated datagram")
	}
	passed := len(oob) > 0
	if passed {
		var err error
		if data, err = readPassedFile(oob); err != nil {
			return nil, true, err
		}
	}
	e, err := ParseJournalEntry(data)
	return e, passed, err
}

// readPassedFile reads an entry passed as a file, as journald does: from
// the start, whatever the file offset the sender left (go-systemd leaves it
// at the end of what it wrote).
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
	for _, fd := range fds[min(1, len(fds)):] {
		unix.Close(fd)
	}
	if len(fds) != 1 {
		return nil, fmt.Errorf("%d file descriptors passed, want 1", len(fds))
	}
	f := os.NewFile(uintptr(fds[0]), "passed entry")
	defer f.Close()
	return io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
}

// ParseJournalEntry decodes one entry of journald's native protocol:
// fields are "KEY=value\n", or "KEY\n", a little-endian 64-bit length, the
// raw value and "\n" for values that may contain a newline.
//
// It is stricter than journald, because journald would hide what it
// refuses from a test: a field named twice is an error (journald keeps
// both values, which the map could not show, and our daemon never sends a
// field twice), and so are a field name journald drops without a word and
// an entry without fields.
func ParseJournalEntry(data []byte) (map[string]string, error) {
	e := map[string]string{}
	for len(data) > 0 {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			return nil, fmt.Errorf("field without newline: %.40q", data)
		}
		var k, v string
		if eq := bytes.IndexByte(data[:nl], '='); eq >= 0 {
			k, v = string(data[:eq]), string(data[eq+1:nl])
			data = data[nl+1:]
		} else {
			k, data = string(data[:nl]), data[nl+1:]
			if len(data) < 8 {
				return nil, fmt.Errorf("field %s: no length", k)
			}
			n := binary.LittleEndian.Uint64(data)
			data = data[8:]
			if n >= uint64(len(data)) || data[n] != '\n' {
				return nil, fmt.Errorf("field %s: %d bytes announced, %d left or no final newline", k, n, len(data))
			}
			v, data = string(data[:n]), data[n+1:]
		}
		if !journalFieldName(k) {
			return nil, fmt.Errorf("field name %.80q: journald drops it", k)
		}
		if _, ok := e[k]; ok {
			return nil, fmt.Errorf("field %s twice", k)
		}
		e[k] = v
	}
	if len(e) == 0 {
		return nil, errors.New("entry without fields")
	}
	return e, nil
}

// journalFieldName is journald's rule for a field a client may send: 1 to
// 64 of A-Z, 0-9 and _, the first neither a digit nor _ (journald's own
// trusted fields start with _).
func journalFieldName(k string) bool {
	if k == "" || len(k) > 64 || k[0] == '_' || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for _, c := range []byte(k) {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Wrap is a command prefix that runs a command in a private mount
// namespace where /run/systemd/journal is this journal's directory, the
// path go-systemd sends to. The host's /run is not touched: a mkdir in
// the namespace would still make the directory on the host (a mount
// namespace separates mounts, not files), so where /run/systemd/journal
// is missing the directories are made on a fresh tmpfs over /run/systemd,
// or over /run where that is missing too. Where it exists (a host with
// systemd) the journal's directory is bound over it alone, and the rest of
// /run/systemd stays visible.
func (j *Journal) Wrap() []string {
	const script = `set -e
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
	return []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", j.Dir}
}

// WaitFor returns the first entry for which match is true, or an error
// after timeout.
func (j *Journal) WaitFor(timeout time.Duration, what string, match func(map[string]string) bool) (map[string]string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case e, ok := <-j.C:
			if !ok {
				return nil, fmt.Errorf("journal closed while waiting for %s", what)
			}
			if match(e) {
				return e, nil
			}
		case <-deadline:
			return nil, fmt.Errorf("no journal entry %s within %v", what, timeout)
		}
	}
}

// JournalStream is the value of $JOURNAL_STREAM that makes a process with
// stderr f believe that stderr is connected to journald, as systemd sets it.
func JournalStream(f *os.File) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return "", fmt.Errorf("journal stream: %w", err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}
