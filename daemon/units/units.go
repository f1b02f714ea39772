// SPDX-License-Identifier: Apache-2.0

// Package units finds the cgroup of a systemd unit, for unit: principals:
// asked of systemd over D-Bus where it knows the unit, computed by its
// rules where it does not (yet).
package units

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// Timeout bounds one question to systemd: a hung bus must not hold a
// reload (the unit is then unresolved and matches nothing).
const Timeout = 5 * time.Second

// Systemd resolves units through the system bus. The zero value is ready;
// it connects on first use and again after a failure.
type Systemd struct {
	mu   sync.Mutex
	conn *sddbus.Conn
	// pid1 is where the name of PID 1 is read; tests change it.
	pid1 string
}

// With makes r resolve unit: principals through systemd as well.
func With(r policy.Resolver) policy.Resolver {
	return withUnits{Resolver: r, units: &Systemd{}}
}

type withUnits struct {
	policy.Resolver
	units *Systemd
}

func (w withUnits) UnitCgroup(name string) (policy.UnitCgroup, error) {
	return w.units.UnitCgroup(name)
}

// ErrNoSystemd wraps the error of a unit asked for on a host whose PID 1
// is not systemd.
var ErrNoSystemd = errors.New("PID 1 is not systemd")

// UnitCgroup is where systemd runs (or will run) the unit's processes,
// relative to the cgroup2 mount.
func (s *Systemd) UnitCgroup(name string) (policy.UnitCgroup, error) {
	if err := s.checkPID1(); err != nil {
		return policy.UnitCgroup{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	conn, err := s.connect(ctx)
	if err != nil {
		return policy.UnitCgroup{}, fmt.Errorf("cannot be resolved: no answer from systemd on the system bus (%v); use cgroup:PATH", err)
	}
	c, err := resolve(ctx, conn, name)
	if err != nil {
		s.drop(conn) // a broken connection is made again next time
		return policy.UnitCgroup{}, fmt.Errorf("cannot be resolved: systemd: %w", err)
	}
	return c, nil
}

func (s *Systemd) checkPID1() error {
	p := s.pid1
	if p == "" {
		p = "/proc/1/comm"
	}
	comm, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("cannot be resolved: cannot tell whether PID 1 is systemd: %w; use cgroup:PATH", err)
	}
	if c := strings.TrimSpace(string(comm)); c != "systemd" {
		return fmt.Errorf("cannot be resolved: %w (it is %q): use cgroup:PATH", ErrNoSystemd, c)
	}
	return nil
}

func (s *Systemd) connect(ctx context.Context) (*sddbus.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.conn.Connected() {
		return s.conn, nil
	}
	c, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, err
	}
	s.conn = c
	return c, nil
}

func (s *Systemd) drop(c *sddbus.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == c {
		c.Close()
		s.conn = nil
	}
}

// Close closes the connection to the bus, if any.
func (s *Systemd) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// resolve asks systemd where the unit's cgroup is. systemd loads a unit
// when asked about it: one with a unit file is "loaded" even while
// inactive, and its Slice= says where it goes; one without is
// "not-found" and goes where systemd puts a system unit by default.
func resolve(ctx context.Context, conn *sddbus.Conn, name string) (policy.UnitCgroup, error) {
	rootProp, err := conn.GetManagerProperty("ControlGroup")
	if err != nil {
		return policy.UnitCgroup{}, fmt.Errorf("its own cgroup: %w", err)
	}
	root := strings.Trim(rootProp, `"`)
	if strings.HasSuffix(name, ".slice") {
		p, err := SlicePath(name)
		if err != nil {
			return policy.UnitCgroup{}, err
		}
		load, err := conn.GetUnitPropertyContext(ctx, name, "LoadState")
		if err != nil {
			return policy.UnitCgroup{}, fmt.Errorf("unit %s: %w", name, err)
		}
		return policy.UnitCgroup{Path: join(root, p), Exists: strings.Trim(load.Value.String(), `"`) == "loaded"}, nil
	}
	props, err := conn.GetUnitPropertiesContext(ctx, name)
	if err != nil {
		return policy.UnitCgroup{}, fmt.Errorf("unit %s: %w", name, err)
	}
	load, _ := props["LoadState"].(string)
	typ := unitType(name)
	tprops, err := conn.GetUnitTypePropertiesContext(ctx, name, typ)
	if err != nil && load == "loaded" {
		return policy.UnitCgroup{}, fmt.Errorf("unit %s: %w", name, err)
	}
	// A running unit says where it is; an inactive one where it will be.
	if cg, _ := tprops["ControlGroup"].(string); cg != "" {
		return policy.UnitCgroup{Path: cg, Exists: true}, nil
	}
	slice, _ := tprops["Slice"].(string)
	if slice == "" || load != "loaded" {
		slice = "system.slice" // systemd's default for a system unit
	}
	sp, err := SlicePath(slice)
	if err != nil {
		return policy.UnitCgroup{}, fmt.Errorf("unit %s: %w", name, err)
	}
	return policy.UnitCgroup{Path: join(root, path.Join(sp, Escape(name))), Exists: load == "loaded"}, nil
}

func join(root, p string) string {
	if root == "" || root == "/" {
		return p
	}
	return path.Join(root, p)
}

// unitType is the D-Bus interface of a unit's type: Service for
// "x.service".
func unitType(name string) string {
	t := name[strings.LastIndexByte(name, '.')+1:]
	return strings.ToUpper(t[:1]) + t[1:]
}

// SlicePath is the cgroup path of a slice below systemd's root, by
// systemd's rule (slice_build_subslice / unit_name_to_path): each dash
// nests, "a-b-c.slice" is /a.slice/a-b.slice/a-b-c.slice; "-.slice" is the
// root.
func SlicePath(name string) (string, error) {
	if name == "-.slice" {
		return "/", nil
	}
	base, ok := strings.CutSuffix(name, ".slice")
	if !ok || base == "" || strings.HasPrefix(base, "-") || strings.HasSuffix(base, "-") || strings.Contains(base, "--") {
		return "", fmt.Errorf("%q is not a valid slice name", name)
	}
	parts := strings.Split(base, "-")
	var b strings.Builder
	for i := range parts {
		b.WriteString("/")
		b.WriteString(Escape(strings.Join(parts[:i+1], "-") + ".slice"))
	}
	return b.String(), nil
}

// Escape is systemd's cg_escape: a cgroup directory name that could be
// taken for one of the kernel's files or a controller's ("cpu.x": the part
// before the last dot is a controller's name), or that starts with '_' or
// '.', is prefixed with '_'.
func Escape(name string) string {
	if name == "" || name[0] == '_' || name[0] == '.' || name == "notify_on_release" || name == "release_agent" ||
		name == "tasks" || strings.HasPrefix(name, "cgroup.") {
		return "_" + name
	}
	if dot := strings.LastIndexByte(name, '.'); dot > 0 {
		switch name[:dot] {
		// systemd's controllers (cgroup_controller_to_string), the
		// BPF pseudo-controllers included.
		case "cpu", "cpuacct", "cpuset", "io", "blkio", "memory", "devices", "pids",
			"bpf-firewall", "bpf-devices", "bpf-foreign", "bpf-socket-bind", "bpf-restrict-network-interfaces":
			return "_" + name
		}
	}
	return name
}
