package testnet

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var build struct {
	once sync.Once
	dir  string // made by this process (not for $NTF_TEST_BINARY): removed at exit
	path string
	err  error
}

// BinaryEnv names a prebuilt net-tc-filter command for Binary to use
// instead of building one: test binaries made with `go test -c` run where
// there is no Go toolchain (the kernel matrix's guests, .ci/kernels).
const BinaryEnv = "NTF_TEST_BINARY"

// Binary builds the net-tc-filter command once per test process and
// returns its path: service tests run the real program, as systemd would.
// With $NTF_TEST_BINARY set, that program is used as it is.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		if p := os.Getenv(BinaryEnv); p != "" {
			build.path, build.err = prebuilt(p)
			return
		}
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			build.err = fmt.Errorf("find the module: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "ntf-bin-")
		if err != nil {
			build.err = err
			return
		}
		os.Chmod(dir, 0o755) // tests run it as other users too
		build.dir = dir
		build.path = filepath.Join(dir, "net-tc-filter")
		args := []string{"build", "-o", build.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/net-tc-filter")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// prebuilt checks a program named by $NTF_TEST_BINARY: an absolute path
// (the tests run it from other directories) to an executable file that
// other users may run too.
func prebuilt(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%s=%s: not an absolute path", BinaryEnv, p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", BinaryEnv, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o005 != 0o005 {
		return "", fmt.Errorf("%s=%s: not a program every user may run (%v)", BinaryEnv, p, fi.Mode())
	}
	return p, nil
}

// PinDir returns a fresh bpffs directory for one daemon's pins, removed
// (with whatever is pinned in it) when the test ends.
func PinDir(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	dir := "/sys/fs/bpf/ntf-test-" + hex.EncodeToString(b)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Notifications receives what a service sends to $NOTIFY_SOCKET, as
// systemd would.
type Notifications struct {
	Path string
	C    <-chan string // one datagram each
	conn *net.UnixConn
}

// ListenNotify opens a NOTIFY_SOCKET for a service under test.
func ListenNotify(t testing.TB) *Notifications {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	c := make(chan string, 4096)
	go func() {
		defer close(c)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			c <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return &Notifications{Path: path, C: c, conn: conn}
}

// WaitFor returns the first datagram with a line starting with prefix
// (e.g. "READY=1"), failing the test after timeout. Datagrams before it
// are returned too, in order, for tests of the sequence.
func (n *Notifications) WaitFor(t testing.TB, prefix string, timeout time.Duration) (string, []string) {
	t.Helper()
	var seen []string
	deadline := time.After(timeout)
	for {
		select {
		case msg, ok := <-n.C:
			if !ok {
				t.Fatalf("notify socket closed while waiting for %s; got %q", prefix, seen)
			}
			seen = append(seen, msg)
			for _, line := range strings.Split(msg, "\n") {
				if strings.HasPrefix(line, prefix) {
					return msg, seen
				}
			}
		case <-deadline:
			t.Fatalf("no %s within %v; got %q", prefix, timeout, seen)
		}
	}
}

// Daemon is `net-tc-filter run` inside a network namespace.
type Daemon struct {
	Notify *Notifications
	Ready  string // the READY=1 datagram of the start, with its STATUS=
	cmd    *exec.Cmd
	stderr *SyncBuffer
	done   chan struct{}
	err    error
}

// DaemonOptions say how to run the daemon.
type DaemonOptions struct {
	Config string // main configuration file
	PinDir string // bpffs pin directory
	// StateDir is where the daemon keeps the last good set; "": a fresh
	// one for this daemon alone (never the host's /var/lib). Tests of a
	// restart that must find the set again pass the same one twice.
	StateDir string
	Args     []string // more arguments to run
	Env      []string // more environment (NOTIFY_SOCKET is set)
	// Wrap is a command prefix the daemon runs under inside the
	// namespace, e.g. Journal.Wrap. It must exec, not fork, so signals
	// reach the daemon.
	Wrap []string
	// Stderr, when set, is the daemon's stderr (else a buffer, see Log).
	Stderr *os.File
}

// StartDaemon starts the daemon in ns and waits for READY=1. It is
// stopped with SIGTERM when the test ends, unless the test did.
func StartDaemon(t testing.TB, ns *NS, opts DaemonOptions) *Daemon {
	t.Helper()
	d := startDaemon(t, ns, opts)
	d.Ready, _ = d.Notify.WaitFor(t, "READY=1", 30*time.Second)
	return d
}

// StartDaemonNoWait starts the daemon without waiting for anything, for
// tests of a daemon that must refuse to start.
func StartDaemonNoWait(t testing.TB, ns *NS, opts DaemonOptions) *Daemon {
	t.Helper()
	return startDaemon(t, ns, opts)
}

func startDaemon(t testing.TB, ns *NS, opts DaemonOptions) *Daemon {
	t.Helper()
	args := []string{"nsenter", "--net=" + ns.Path(), "--"}
	args = append(args, opts.Wrap...)
	if opts.StateDir == "" {
		opts.StateDir = t.TempDir()
	}
	args = append(args, Binary(t), "run", "--config", opts.Config, "--pin-dir", opts.PinDir, "--state-dir", opts.StateDir)
	args = append(args, opts.Args...)
	d := &Daemon{Notify: ListenNotify(t), stderr: &SyncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(args[0], args[1:]...)
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+d.Notify.Path)
	d.cmd.Env = append(d.cmd.Env, opts.Env...)
	if opts.Stderr != nil {
		d.cmd.Stderr = opts.Stderr
	} else {
		d.cmd.Stderr = d.stderr
	}
	d.cmd.Stdout = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("daemon output:\n%s", d.Log())
		}
	})
	return d
}

// Pid is the daemon's process id (nsenter and Wrap exec, not fork).
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Signal sends sig to the daemon.
func (d *Daemon) Signal(sig syscall.Signal) {
	d.cmd.Process.Signal(sig)
}

// Kill kills the daemon with SIGKILL and waits for it to be gone.
func (d *Daemon) Kill() {
	d.cmd.Process.Kill()
	<-d.done
}

// Wait waits for the daemon to exit and returns how it exited.
func (d *Daemon) Wait(timeout time.Duration) error {
	select {
	case <-d.done:
		return d.err
	case <-time.After(timeout):
		return fmt.Errorf("daemon still running after %v", timeout)
	}
}

// Log is what the daemon wrote to stderr and stdout so far.
func (d *Daemon) Log() string { return d.stderr.String() }

// WaitLog waits until the daemon's output contains s.
func (d *Daemon) WaitLog(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(d.Log(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not log %q within %v", s, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SyncBuffer is a bytes.Buffer that several goroutines may write and read
// at once, e.g. a process's stdout and stderr, or a log handler's output.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
