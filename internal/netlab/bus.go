// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Bus is a dbus-daemon of the test's own, configured like Debian's system
// bus (deny by default, services open holes with policy files).
type Bus struct {
	Address string
	dir     string
	config  string
	cmd     *exec.Cmd
}

// Replies and signals flow, and everyone may connect, on both buses.
const basePolicy = `    <allow user="*"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
`

// The default policy of Debian's /usr/share/dbus-1/system.conf: no names
// owned, no methods called, but the bus driver's own.
const systemPolicy = `  <policy context="default">
` + basePolicy + `    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
  </policy>
`

// A bus where anyone may own any name and call anything: what a host
// without the service's policy file would be at worst.
const openPolicy = `  <policy context="default">
` + basePolicy + `    <allow own="*"/>
    <allow send_type="method_call"/>
  </policy>
`

// StartBus starts a system-like bus that includes the given policy files
// (the shipped one, normally). Its socket is reachable by every user, as
// the real system bus is. Close stops it and removes its directory.
func StartBus(policyFiles ...string) (*Bus, error) {
	return startBus(systemPolicy, policyFiles)
}

// StartOpenBus starts a bus without any access control, to test what the
// service does on its own.
func StartOpenBus() (*Bus, error) {
	return startBus(openPolicy, nil)
}

func startBus(policy string, files []string) (*Bus, error) {
	var inc strings.Builder
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("bus policy: %w", err)
		}
		fmt.Fprintf(&inc, "  <include>%s</include>\n", abs)
	}
	dir, err := os.MkdirTemp("", "ntf-bus-")
	if err != nil {
		return nil, fmt.Errorf("bus directory: %w", err)
	}
	sock := filepath.Join(dir, "system_bus_socket")
	b := &Bus{Address: "unix:path=" + sock, dir: dir, config: filepath.Join(dir, "bus.conf")}
	conf := fmt.Sprintf(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>%s</listen>
%s%s</busconfig>
`, b.Address, policy, inc.String())
	err = os.Chmod(dir, 0o755)
	if err == nil {
		err = os.WriteFile(b.config, []byte(conf), 0o644)
	}
	if err == nil {
		err = b.Start()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bus: %w", err)
	}
	return b, nil
}

// Start starts the bus daemon (again, after Stop) and waits until it
// listens.
func (b *Bus) Start() error {
	os.Remove(strings.TrimPrefix(b.Address, "unix:path="))
	b.cmd = exec.Command("dbus-daemon", "--config-file="+b.config, "--nofork", "--print-address")
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	b.cmd.Stderr = os.Stderr
	if err := b.cmd.Start(); err != nil {
		return fmt.Errorf("start dbus-daemon: %w", err)
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if line == "" {
			b.Stop()
			return errors.New("dbus-daemon exited before listening")
		}
	case <-time.After(10 * time.Second):
		b.Stop()
		return errors.New("dbus-daemon did not start")
	}
	return nil
}

// Close stops the bus daemon and removes its directory.
func (b *Bus) Close() error {
	b.Stop()
	return os.RemoveAll(b.dir)
}

// Stop kills the bus daemon, as a crash would.
func (b *Bus) Stop() {
	if b.cmd != nil && b.cmd.Process != nil {
		b.cmd.Process.Kill()
		b.cmd.Wait()
		b.cmd = nil
	}
}

// Env is the environment entry that points a process at this bus.
func (b *Bus) Env() string { return "DBUS_SYSTEM_BUS_ADDRESS=" + b.Address }

// AsUser runs a command as uid (and gid) with no supplementary groups,
// pointed at this bus, and returns its output and exit error.
func (b *Bus) AsUser(uid int, name string, args ...string) (string, string, error) {
	id := fmt.Sprint(uid)
	cmd := exec.Command("setpriv", append([]string{"--reuid=" + id, "--regid=" + id, "--clear-groups", "--", name}, args...)...)
	cmd.Env = append(os.Environ(), b.Env())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}
