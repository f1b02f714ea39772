// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// binaryField is a field in the native protocol's form for values that may
// hold newlines, with the length given.
func binaryField(name string, n uint64, value string) string {
	var b bytes.Buffer
	b.WriteString(name + "\n")
	binary.Write(&b, binary.LittleEndian, n)
	b.WriteString(value + "\n")
	return b.String()
}

func TestParseJournalEntry(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		{in: "A=1\nB=\nC=d=e\n", want: map[string]string{"A": "1", "B": "", "C": "d=e"}},
		{in: binaryField("MESSAGE", 5, "a\nb=c") + "PRIORITY=6\n", want: map[string]string{"MESSAGE": "a\nb=c", "PRIORITY": "6"}},
		{in: binaryField("EMPTY", 0, ""), want: map[string]string{"EMPTY": ""}},
		{in: "K" + strings.Repeat("X", 63) + "=v\n", want: map[string]string{"K" + strings.Repeat("X", 63): "v"}},
		// Our daemon never sends a field twice: the parser is strict.
		{in: "A=1\nB=\nA=2\n", wantErr: "A twice"},
		{in: "MESSAGE=x\n" + binaryField("MESSAGE", 1, "y"), wantErr: "MESSAGE twice"},
		{in: "A=1", wantErr: "without newline"},
		{in: binaryField("A", 5, "ab"), wantErr: "5 bytes announced"},
		{in: binaryField("A", 2, "abc"), wantErr: "no final newline"},
		{in: binaryField("A", 1<<64-1, "ab"), wantErr: "bytes announced"},
		{in: "A\n\x05\x00", wantErr: "no length"},
		{in: "", wantErr: "without fields"},
		// Names journald drops without a word.
		{in: "message=x\n", wantErr: "journald drops"},
		{in: "_PID=1\n", wantErr: "journald drops"},
		{in: "9LIVES=x\n", wantErr: "journald drops"},
		{in: "=x\n", wantErr: "journald drops"},
		{in: "A-B=x\n", wantErr: "journald drops"},
		{in: strings.Repeat("K", 65) + "=v\n", wantErr: "journald drops"},
	}
	for _, tt := range tests {
		got, err := ParseJournalEntry([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseJournalEntry(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("ParseJournalEntry(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// The socket as a client sees it: entries in datagrams and in passed files
// (left at the end of what was written, as go-systemd leaves them), and a
// datagram that is no valid entry reported by Close.
func TestListenJournal(t *testing.T) {
	j, err := ListenJournal()
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	addr := &net.UnixAddr{Name: filepath.Join(j.Dir, "socket"), Net: "unixgram"}
	// Unconnected, as go-systemd's: WriteMsgUnix refuses a connected one.
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := func(data []byte, oob []byte) {
		t.Helper()
		if _, _, err := conn.WriteMsgUnix(data, oob, addr); err != nil {
			t.Fatal(err)
		}
	}

	send([]byte("MESSAGE=small\n"), nil)
	fd, err := unix.MemfdCreate("journal-entry", 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "journal-entry")
	defer f.Close()
	big := strings.Repeat("x\n", 1<<20)
	if _, err := f.WriteString(binaryField("MESSAGE", uint64(len(big)), big)); err != nil {
		t.Fatal(err)
	}
	send(nil, unix.UnixRights(fd))
	send([]byte("A=1\nA=2\n"), nil)
	send([]byte("MESSAGE=after\n"), nil)

	for _, want := range []string{"small", big, "after"} {
		e, err := j.WaitFor(5*time.Second, fmt.Sprintf("%.10q", want), func(map[string]string) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		if len(e) != 1 || e["MESSAGE"] != want {
			t.Errorf("entry %.40q, want MESSAGE=%.40q alone", e, want)
		}
	}
	if got := fmt.Sprint(j.PassedFD()); got != "[false true false]" {
		t.Errorf("PassedFD() = %s, want only the big entry", got)
	}
	err = j.Close()
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 1 || !strings.Contains(err.Error(), "datagram 3: field A twice") {
		t.Errorf("Close() = %v, want the third datagram's field A sent twice, alone", err)
	}
}
