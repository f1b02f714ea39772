// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// ErrNotRunning means the bus answers but nobody owns org.nettcfilter1.
var ErrNotRunning = errors.New("net-tc-filter is not running (nobody owns " + BusName + " on the system bus)")

// Client talks to the running daemon.
type Client struct {
	conn *godbus.Conn
	obj  godbus.BusObject
}

// Dial connects to the system bus ($DBUS_SYSTEM_BUS_ADDRESS, or the
// standard socket) and makes sure the daemon is there.
func Dial(ctx context.Context) (*Client, error) {
	conn, err := godbus.ConnectSystemBus(godbus.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("cannot reach the system bus: %w", err)
	}
	var owned bool
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, BusName).Store(&owned); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ask the system bus about %s: %w", BusName, err)
	}
	if !owned {
		conn.Close()
		return nil, ErrNotRunning
	}
	return &Client{conn: conn, obj: conn.Object(BusName, Path)}, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Error is an error the daemon answered with.
type Error struct {
	Name    string // e.g. org.nettcfilter1.Error.InvalidConfig
	Message string // for InvalidConfig, every problem, one per line
}

func (e *Error) Error() string { return e.Message }

// answer turns a D-Bus error into an *Error.
func answer(err error) error {
	var de godbus.Error
	if errors.As(err, &de) {
		msg := de.Name
		if len(de.Body) > 0 {
			if s, ok := de.Body[0].(string); ok {
				msg = s
			}
		}
		return &Error{Name: de.Name, Message: msg}
	}
	return err
}

// Reload asks for a reload and returns the new generation once it is live.
func (c *Client) Reload(ctx context.Context) (uint64, error) {
	var gen uint64
	err := c.obj.CallWithContext(ctx, Interface+".Reload", 0).Store(&gen)
	return gen, answer(err)
}

// CheckResult is the answer of Check.
type CheckResult struct {
	Allowed  bool
	Endpoint string // comma-separated when several name the range
	Range    string // empty: the interface default decided
	Reason   string
}

// Check asks what the live policy does with a packet.
func (c *Client) Check(ctx context.Context, principal, dst, iface string) (CheckResult, error) {
	var d CheckResult
	err := c.obj.CallWithContext(ctx, Interface+".Check", 0, principal, dst, iface).
		Store(&d.Allowed, &d.Endpoint, &d.Range, &d.Reason)
	return d, answer(err)
}

// Attachment is one filtered interface.
// Unit is a unit the live policy names, with its cgroup and that
// cgroup's id now (0: not there).
type Unit struct {
	Name     string `json:"name"`
	Path     string `json:"cgroup"`
	CgroupID uint64 `json:"cgroup_id"`
}

type Attachment struct {
	Name  string `json:"name"`
	Index uint32 `json:"ifindex"`
	Mode  string `json:"mode"`
}

// Status is the daemon's Status() answer.
type Status struct {
	Version     string       `json:"version"`
	State       string       `json:"state"`
	Generation  uint64       `json:"generation"`
	LastReload  time.Time    `json:"last_reload"`
	LastError   string       `json:"last_error"` // why degraded, one problem a line; "" when not
	ConfigFiles []string     `json:"config_files"`
	Warnings    []string     `json:"warnings"` // files not read, risky settings
	Units       []Unit       `json:"units"`    // of unit: principals
	Interfaces  []Attachment `json:"interfaces"`
	RuleCount   uint32       `json:"rule_count"`
	Allowed     uint64       `json:"allowed"`
	Denied      uint64       `json:"denied"`
	Audited     uint64       `json:"audited"` // passed by mode: audit; 0 from daemons without it
}

// Status reads everything at once.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var m map[string]godbus.Variant
	if err := c.obj.CallWithContext(ctx, Interface+".Status", 0).Store(&m); err != nil {
		return Status{}, answer(err)
	}
	var st Status
	var last uint64
	for name, dst := range map[string]any{
		"Version": &st.Version, "State": &st.State, "Generation": &st.Generation,
		"LastReload": &last, "LastError": &st.LastError, "ConfigFiles": &st.ConfigFiles,
		"Interfaces": &st.Interfaces, "RuleCount": &st.RuleCount,
		"Allowed": &st.Allowed, "Denied": &st.Denied,
	} {
		v, ok := m[name]
		if !ok {
			return Status{}, fmt.Errorf("status lacks %s", name)
		}
		if err := v.Store(dst); err != nil {
			return Status{}, fmt.Errorf("status field %s: %w", name, err)
		}
	}
	if last != 0 {
		st.LastReload = time.UnixMicro(int64(last))
	}
	// Optional: daemons before them did not have them.
	if v, ok := m["Audited"]; ok {
		if err := v.Store(&st.Audited); err != nil {
			return Status{}, fmt.Errorf("status field Audited: %w", err)
		}
	}
	if v, ok := m["Warnings"]; ok {
		if err := v.Store(&st.Warnings); err != nil {
			return Status{}, fmt.Errorf("status field Warnings: %w", err)
		}
	}
	if v, ok := m["Units"]; ok {
		if err := v.Store(&st.Units); err != nil {
			return Status{}, fmt.Errorf("status field Units: %w", err)
		}
	}
	return st, nil
}
