// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BuildDaemon builds the net-tc-filter command of the module the current
// directory is in, with -race when race is set, into a fresh directory
// that every user may enter (labs run it as other users too). remove
// deletes that directory.
func BuildDaemon(race bool) (path string, remove func() error, err error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", nil, fmt.Errorf("find the module: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir, err := os.MkdirTemp("", "ntf-bin-")
	if err != nil {
		return "", nil, fmt.Errorf("build directory: %w", err)
	}
	remove = func() error { return os.RemoveAll(dir) }
	if err := os.Chmod(dir, 0o755); err != nil {
		remove()
		return "", nil, fmt.Errorf("build directory: %w", err)
	}
	path = filepath.Join(dir, "net-tc-filter")
	args := []string{"build", "-o", path}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/net-tc-filter")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		remove()
		return "", nil, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return path, remove, nil
}

// CheckProgram checks a prebuilt program: an absolute path (labs run it
// from other directories) to an executable file that other users may run
// too.
func CheckProgram(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s: not an absolute path", p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o005 != 0o005 {
		return fmt.Errorf("%s: not a program every user may run (%v)", p, fi.Mode())
	}
	return nil
}

// PinDir returns a fresh bpffs directory name, prefix-RANDOM, for one
// daemon's pins. The caller removes it (os.RemoveAll), with whatever the
// daemon left pinned there.
func PinDir(prefix string) string {
	return "/sys/fs/bpf/" + prefix + "-" + randomID()
}

// Notification is one datagram a service sent to $NOTIFY_SOCKET.
type Notification struct {
	At   time.Time // when it arrived
	Text string
}

// Notifications receives what a service sends to $NOTIFY_SOCKET, as
// systemd would.
type Notifications struct {
	Path string
	C    <-chan Notification // one datagram each; closed by Close
	dir  string
	conn *net.UnixConn
	done chan struct{}
}

// ListenNotify opens a NOTIFY_SOCKET in a directory of its own; Close
// removes both.
func ListenNotify() (*Notifications, error) {
	dir, err := os.MkdirTemp("", "ntf-notify-")
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	c := make(chan Notification, 4096)
	n := &Notifications{Path: path, C: c, dir: dir, conn: conn, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		defer close(c)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			c <- Notification{At: time.Now(), Text: string(buf[:k])}
		}
	}()
	return n, nil
}

// Close stops receiving and removes the socket.
func (n *Notifications) Close() error {
	err := n.conn.Close()
	<-n.done
	return errors.Join(err, os.RemoveAll(n.dir))
}

// Drain forgets what was received so far.
func (n *Notifications) Drain() {
	for {
		select {
		case <-n.C:
		default:
			return
		}
	}
}

// HasLine says whether a datagram has a line starting with prefix (e.g.
// "READY=1").
func HasLine(text, prefix string) bool {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}

// WaitFor returns the first datagram with a line starting with prefix
// (e.g. "READY=1"), or an error after timeout or when stop is closed
// first (nil: never). The texts of the datagrams before it are returned
// too, in order, for callers that check the sequence.
func (n *Notifications) WaitFor(prefix string, timeout time.Duration, stop <-chan struct{}) (Notification, []string, error) {
	var seen []string
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-n.C:
			if !ok {
				return Notification{}, seen, fmt.Errorf("notify socket closed while waiting for %s; got %q", prefix, seen)
			}
			seen = append(seen, m.Text)
			if HasLine(m.Text, prefix) {
				return m, seen, nil
			}
		case <-stop:
			// What the process sent before it stopped counts.
			for {
				select {
				case m, ok := <-n.C:
					if ok {
						seen = append(seen, m.Text)
						if HasLine(m.Text, prefix) {
							return m, seen, nil
						}
						continue
					}
				default:
				}
				return Notification{}, seen, fmt.Errorf("stopped while waiting for %s; got %q", prefix, seen)
			}
		case <-deadline:
			return Notification{}, seen, fmt.Errorf("no %s within %v; got %q", prefix, timeout, seen)
		}
	}
}

// Daemon is `net-tc-filter run` inside a network namespace, with a
// NOTIFY_SOCKET of its own.
type Daemon struct {
	Notify *Notifications
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
}

// DaemonOptions say how to run the daemon.
type DaemonOptions struct {
	Binary   string // the net-tc-filter program
	Config   string // main configuration file
	PinDir   string // bpffs pin directory
	StateDir string // where the daemon keeps the last good set; required
	Args     []string
	Env      []string // more environment (NOTIFY_SOCKET is set)
	// Wrap is a command prefix the daemon runs under inside the
	// namespace, e.g. Journal.Wrap. It must exec, not fork, so signals
	// reach the daemon.
	Wrap []string
	// Stdout and Stderr receive the daemon's output (nil: discarded).
	Stdout, Stderr io.Writer
}

// StartDaemon starts the daemon in ns without waiting for anything (see
// Notify for READY=1). Stop it with Stop, then Close.
func StartDaemon(ns *NS, opts DaemonOptions) (*Daemon, error) {
	if opts.StateDir == "" {
		// Never the host's /var/lib: a lab's daemon keeps its own.
		return nil, errors.New("daemon: no state directory")
	}
	args := append([]string{"--net=" + ns.Path(), "--"}, opts.Wrap...)
	args = append(args, opts.Binary, "run", "--config", opts.Config, "--pin-dir", opts.PinDir, "--state-dir", opts.StateDir)
	args = append(args, opts.Args...)
	notify, err := ListenNotify()
	if err != nil {
		return nil, err
	}
	d := &Daemon{Notify: notify, done: make(chan struct{})}
	d.cmd = exec.Command("nsenter", args...)
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify.Path)
	d.cmd.Env = append(d.cmd.Env, opts.Env...)
	d.cmd.Stdout, d.cmd.Stderr = opts.Stdout, opts.Stderr
	if err := d.cmd.Start(); err != nil {
		notify.Close()
		return nil, fmt.Errorf("start daemon: %w", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// WaitNotify waits for a notification with a line starting with prefix,
// failing early when the daemon exits first.
func (d *Daemon) WaitNotify(prefix string, timeout time.Duration) (Notification, error) {
	m, _, err := d.Notify.WaitFor(prefix, timeout, d.done)
	if err != nil {
		select {
		case <-d.done:
			return m, fmt.Errorf("daemon exited (%v): %w", d.err, err)
		default:
		}
	}
	return m, err
}

// Pid is the daemon's process id (nsenter and Wrap exec, not fork).
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Signal sends sig to the daemon.
func (d *Daemon) Signal(sig syscall.Signal) error {
	return d.cmd.Process.Signal(sig)
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

// Stop stops the daemon with SIGTERM, or with SIGKILL when it is still
// running after timeout, and returns how it exited. A daemon that had
// exited already is only waited for.
func (d *Daemon) Stop(timeout time.Duration) error {
	d.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(timeout):
		d.Kill()
		return fmt.Errorf("daemon did not stop within %v of SIGTERM; killed", timeout)
	}
	if d.err != nil {
		return fmt.Errorf("daemon: %w", d.err)
	}
	return nil
}

// Close stops the daemon as Stop does, with 10 seconds, unless it has
// exited already, and closes its notify socket.
func (d *Daemon) Close() error {
	var err error
	select {
	case <-d.done:
	default:
		err = d.Stop(10 * time.Second)
	}
	return errors.Join(err, d.Notify.Close())
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
