// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// Daemon is `net-tc-filter run` in the client namespace (netlab.Daemon),
// with a private pin directory and configuration directory.
type Daemon struct {
	*netlab.Daemon
	Dir     string // configuration directory (0755, root's)
	PinDir  string
	LogPath string // the daemon's stdout and stderr

	written Files // the files as last written
}

// ConfigPath is the main configuration file.
func (d *Daemon) ConfigPath() string { return filepath.Join(d.Dir, "net-tc-filter.yml") }

// StartDaemon writes cfg, starts the daemon in ns and waits for READY=1.
func StartDaemon(bin string, ns *netlab.NS, cfg Files, timeout time.Duration) (*Daemon, error) {
	dir, err := os.MkdirTemp("", "ntfb-daemon-")
	if err != nil {
		return nil, fmt.Errorf("daemon directory: %w", err)
	}
	d := &Daemon{Dir: dir, PinDir: netlab.PinDir("ntfb"), LogPath: filepath.Join(dir, "daemon.log")}
	if err := d.start(bin, ns, cfg, timeout); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) start(bin string, ns *netlab.NS, cfg Files, timeout time.Duration) error {
	// The daemon refuses configuration writable by others: 0755, root's.
	if err := os.Chmod(d.Dir, 0o755); err != nil {
		return fmt.Errorf("daemon directory: %w", err)
	}
	if err := os.Mkdir(filepath.Join(d.Dir, "conf.d"), 0o755); err != nil {
		return fmt.Errorf("daemon directory: %w", err)
	}
	if _, err := d.WriteConfig(cfg); err != nil {
		return err
	}
	logf, err := os.Create(d.LogPath)
	if err != nil {
		return fmt.Errorf("daemon log: %w", err)
	}
	defer logf.Close()
	// A state directory of its own: the host's /var/lib/net-tc-filter is
	// not the bench's to write.
	d.Daemon, err = netlab.StartDaemon(ns, netlab.DaemonOptions{
		Binary: bin, Config: d.ConfigPath(), PinDir: d.PinDir, StateDir: filepath.Join(d.Dir, "state"),
		Stdout: logf, Stderr: logf,
	})
	if err != nil {
		return err
	}
	if _, err := d.WaitNotify("READY=1", timeout); err != nil {
		return fmt.Errorf("daemon start: %w", err)
	}
	return nil
}

// WaitNotify waits for a notification with a line starting with prefix
// and returns when it arrived.
func (d *Daemon) WaitNotify(prefix string, timeout time.Duration) (time.Time, error) {
	m, err := d.Daemon.WaitNotify(prefix, timeout)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w; log:\n%s", err, d.tail())
	}
	return m.At, nil
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

// Stop stops the daemon with SIGTERM (on_stop: detach removes the filter)
// and removes its directories.
func (d *Daemon) Stop() error {
	defer func() {
		os.RemoveAll(d.PinDir)
		os.RemoveAll(d.Dir)
	}()
	if d.Daemon == nil {
		return nil
	}
	err := d.Daemon.Stop(20 * time.Second)
	if cerr := d.Daemon.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w; log:\n%s", err, d.tail())
	}
	return nil
}

// Log is what the daemon wrote so far.
func (d *Daemon) Log() ([]byte, error) {
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	return b, nil
}

// maxInOneSecond is the most lines of b containing any of subs that one
// second holds, by the time= stamp each line of the daemon's log starts
// with (in order).
func maxInOneSecond(b []byte, subs ...string) (int, error) {
	var times []time.Time
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !slices.ContainsFunc(subs, func(s string) bool { return bytes.Contains(line, []byte(s)) }) {
			continue
		}
		stamp, _, _ := bytes.Cut(bytes.TrimPrefix(line, []byte("time=")), []byte(" "))
		t, err := time.Parse(time.RFC3339Nano, string(stamp))
		if err != nil {
			return 0, fmt.Errorf("daemon log line without a time: %q", line)
		}
		times = append(times, t)
	}
	most := 0
	for i, j := 0, 0; j < len(times); j++ {
		for times[j].Sub(times[i]) >= time.Second {
			i++
		}
		most = max(most, j-i+1)
	}
	return most, nil
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
