package bench

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Daemon is `net-tc-filter run` in the client namespace, with a private
// pin directory and configuration directory and a NOTIFY_SOCKET of ours.
type Daemon struct {
	Dir     string // configuration directory (0755, root's)
	PinDir  string
	LogPath string // the daemon's stderr
	Started time.Time

	cmd    *exec.Cmd
	notify *net.UnixConn
	msgs   chan notifyMsg
	done   chan struct{}
	err    error

	written Files // the files as last written
}

type notifyMsg struct {
	at   time.Time
	text string
}

// ConfigPath is the main configuration file.
func (d *Daemon) ConfigPath() string { return filepath.Join(d.Dir, "net-tc-filter.yml") }

// StartDaemon writes cfg, starts the daemon in ns and waits for READY=1.
func StartDaemon(bin string, ns *NS, cfg Files, timeout time.Duration) (*Daemon, error) {
	dir, err := os.MkdirTemp("", "ntfb-daemon-")
	if err != nil {
		return nil, fmt.Errorf("daemon directory: %w", err)
	}
	// The daemon refuses configuration writable by others: 0755, root's.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("daemon directory: %w", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		return nil, fmt.Errorf("daemon directory: %w", err)
	}
	b := make([]byte, 4)
	rand.Read(b)
	d := &Daemon{
		Dir:     dir,
		PinDir:  "/sys/fs/bpf/ntfb-" + hex.EncodeToString(b),
		LogPath: filepath.Join(dir, "daemon.log"),
		msgs:    make(chan notifyMsg, 1024),
		done:    make(chan struct{}),
	}
	if _, err := d.WriteConfig(cfg); err != nil {
		d.cleanup()
		return nil, err
	}
	sock := filepath.Join(dir, "notify")
	d.notify, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		d.cleanup()
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	go d.readNotify()
	logf, err := os.Create(d.LogPath)
	if err != nil {
		d.cleanup()
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	defer logf.Close()
	// A state directory of its own: the host's /var/lib/net-tc-filter is
	// not the bench's to write.
	d.cmd = ns.Command(bin, "run", "--config", d.ConfigPath(), "--pin-dir", d.PinDir, "--state-dir", filepath.Join(dir, "state"))
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.Started = time.Now()
	if err := d.cmd.Start(); err != nil {
		d.cleanup()
		return nil, fmt.Errorf("start daemon: %w", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	if _, err := d.WaitNotify("READY=1", timeout); err != nil {
		d.Stop()
		return nil, fmt.Errorf("daemon start: %w", err)
	}
	return d, nil
}

func (d *Daemon) readNotify() {
	buf := make([]byte, 4096)
	for {
		n, err := d.notify.Read(buf)
		if err != nil {
			close(d.msgs)
			return
		}
		d.msgs <- notifyMsg{time.Now(), string(buf[:n])}
	}
}

// Drain forgets notifications received so far.
func (d *Daemon) Drain() {
	for {
		select {
		case <-d.msgs:
		default:
			return
		}
	}
}

// WaitNotify waits for a notification with a line starting with prefix
// and returns when it arrived.
func (d *Daemon) WaitNotify(prefix string, timeout time.Duration) (time.Time, error) {
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case m, ok := <-d.msgs:
			if !ok {
				return time.Time{}, fmt.Errorf("notify socket closed waiting for %s", prefix)
			}
			seen = append(seen, m.text)
			for _, line := range strings.Split(m.text, "\n") {
				if strings.HasPrefix(line, prefix) {
					return m.at, nil
				}
			}
		case <-d.done:
			return time.Time{}, fmt.Errorf("daemon exited (%v) waiting for %s; log:\n%s", d.err, prefix, d.tail())
		case <-deadline:
			return time.Time{}, fmt.Errorf("no %s within %v (got %q); log:\n%s", prefix, timeout, seen, d.tail())
		}
	}
}

func (d *Daemon) tail() string {
	b, _ := os.ReadFile(d.LogPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// WriteConfig makes the configuration set cfg: it writes the files whose
// contents changed, each atomically (write, rename), removes the files cfg
// does not have, and returns the moment of the last change.
func (d *Daemon) WriteConfig(cfg Files) (time.Time, error) {
	var at time.Time
	for name, data := range cfg {
		if old, ok := d.written[name]; ok && bytes.Equal(old, data) {
			continue
		}
		path := filepath.Join(d.Dir, name)
		tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(name)+".new")
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return at, fmt.Errorf("write config: %w", err)
		}
		if err := os.Chmod(tmp, 0o644); err != nil {
			return at, fmt.Errorf("write config: %w", err)
		}
		at = time.Now()
		if err := os.Rename(tmp, path); err != nil {
			return at, fmt.Errorf("write config: %w", err)
		}
	}
	for name := range d.written {
		if _, ok := cfg[name]; !ok {
			at = time.Now()
			if err := os.Remove(filepath.Join(d.Dir, name)); err != nil {
				return at, fmt.Errorf("write config: %w", err)
			}
		}
	}
	d.written = cfg
	return at, nil
}

// Pid is the daemon's process id (nsenter execs it).
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Stop stops the daemon with SIGTERM (on_stop: detach removes the filter)
// and removes its directories.
func (d *Daemon) Stop() error {
	defer d.cleanup()
	if d.cmd == nil || d.cmd.Process == nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		return errors.New("daemon did not stop within 20s of SIGTERM; killed")
	}
	var ee *exec.ExitError
	if d.err != nil && !errors.As(d.err, &ee) {
		return fmt.Errorf("daemon: %w", d.err)
	}
	if d.err != nil {
		return fmt.Errorf("daemon exited with %v; log:\n%s", d.err, d.tail())
	}
	return nil
}

func (d *Daemon) cleanup() {
	if d.notify != nil {
		d.notify.Close()
	}
	os.RemoveAll(d.PinDir)
	os.RemoveAll(d.Dir)
}

// Log is what the daemon wrote so far.
func (d *Daemon) Log() ([]byte, error) {
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	return b, nil
}

// countLines counts lines of b that contain any of subs.
func countLines(b []byte, subs ...string) int {
	n := 0
	for _, line := range bytes.Split(b, []byte("\n")) {
		for _, s := range subs {
			if bytes.Contains(line, []byte(s)) {
				n++
				break
			}
		}
	}
	return n
}
