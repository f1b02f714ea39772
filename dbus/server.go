// SPDX-License-Identifier: Apache-2.0

// Package dbus puts the running daemon on the system bus as
// org.nettcfilter1 (SPEC §5) and gives the command line a client for it. It
// knows the daemon only through Manager; it never touches the kernel.
package dbus

import (
	"context"
	_ "embed"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"

	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon"
	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/nss"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/units"
)

// Names on the bus.
const (
	BusName   = "org.nettcfilter1"
	Path      = godbus.ObjectPath("/org/nettcfilter1")
	Interface = "org.nettcfilter1.Manager"

	ErrInvalidConfig = "org.nettcfilter1.Error.InvalidConfig"
	ErrFailed        = "org.nettcfilter1.Error.Failed"
	// ErrNotReady answers Check when the daemon cannot: nothing is live
	// yet, no interface is filtered, NSS does not answer. Bad input is
	// InvalidArgs instead.
	ErrNotReady     = "org.nettcfilter1.Error.NotReady"
	ErrAccessDenied = "org.freedesktop.DBus.Error.AccessDenied"
	errInvalidArgs  = "org.freedesktop.DBus.Error.InvalidArgs"
)

// InterfaceXML is the interface's introspection data, as installed to
// /usr/share/dbus-1/interfaces/ and served by the object.
//
//go:embed org.nettcfilter1.Manager.xml
var InterfaceXML string

// Manager is what the object needs of the daemon.
type Manager interface {
	Reload(ctx context.Context) (uint32, error)
	Check(owner policy.Owner, k policy.Packet, iface string) (policy.Verdict, string, error)
	Status() daemon.Status
	Counters() (bpf.Counters, error)
	Stage(ctx context.Context, path string, dur time.Duration) error
	Unstage(ctx context.Context) (daemon.StageSummary, error)
	StageSummary() daemon.StageSummary
}

// ServerOptions configure Serve.
type ServerOptions struct {
	Manager Manager
	Events  <-chan daemon.Change // the daemon's Options.Events
	Version string
	Logger  *slog.Logger
	// Resolver turns user names of Check into uids; nil: NSS.
	Resolver policy.Resolver
	// Retry is how long to wait before connecting again after the bus
	// went away or the name was taken; default 2s.
	Retry time.Duration
}

// Serve keeps the object on the system bus ($DBUS_SYSTEM_BUS_ADDRESS, or
// the standard socket) until ctx ends. Without a bus, or with the name
// taken, it logs and tries again: the filter never depends on D-Bus.
func Serve(ctx context.Context, opts ServerOptions) {
	if opts.Retry == 0 {
		opts.Retry = 2 * time.Second
	}
	if opts.Resolver == nil {
		opts.Resolver = units.With(nss.Resolver{})
	}
	// Check waits policy.LookupBudget at most for a hung NSS, and leaves
	// the lookup behind: this many at most.
	opts.Resolver = policy.Limit(opts.Resolver, policy.MaxStuckLookups)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	logged := ""
	for ctx.Err() == nil {
		err := serveOnce(ctx, opts)
		if err != nil && err.Error() != logged {
			// Once per kind of failure, not once per retry.
			opts.Logger.Warn("D-Bus: "+err.Error()+"; enforcing goes on, retrying", "retry", opts.Retry)
			logged = err.Error()
		}
		if err == nil {
			logged = ""
		}
		select {
		case <-ctx.Done():
		case <-time.After(opts.Retry):
		}
	}
}

// serveOnce serves on one connection until it breaks or ctx ends.
func serveOnce(ctx context.Context, opts ServerOptions) error {
	conn, err := godbus.ConnectSystemBus(godbus.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("connect to the system bus: %w", err)
	}
	defer conn.Close()
	obj := &object{opts: opts, conn: conn}
	if err := obj.export(); err != nil {
		return err
	}
	reply, err := conn.RequestName(BusName, godbus.NameFlagDoNotQueue)
	if err != nil {
		return fmt.Errorf("request the name %s: %w", BusName, err)
	}
	if reply != godbus.RequestNameReplyPrimaryOwner {
		return fmt.Errorf("the name %s is taken by another process", BusName)
	}
	opts.Logger.Info("D-Bus: serving " + BusName + " on the system bus")
	// What happened while off the bus is history, not news: the
	// properties are current already, and old Reloaded signals would
	// mislead.
	for len(opts.Events) > 0 {
		<-opts.Events
	}
	// What they changed is not: the daemon may have moved on (finished
	// starting, say) between the export and the drain.
	if err := obj.refresh(); err != nil {
		return err
	}

	counters := time.NewTicker(time.Second)
	defer counters.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-conn.Context().Done():
			return errors.New("lost the system bus connection")
		case ev := <-opts.Events:
			if err := obj.refresh(); err != nil {
				return err
			}
			if ev.Reload {
				conn.Emit(Path, Interface+".Reloaded", uint64(ev.Generation), ev.Err == "", ev.Err)
			}
		case <-counters.C:
			if err := obj.refreshCounters(); err != nil {
				return err
			}
		}
	}
}

// object is the exported org.nettcfilter1.Manager. Its exported methods are
// the D-Bus methods, and only those.
type object struct {
	opts   ServerOptions
	conn   *godbus.Conn
	props  *prop.Properties
	staged stagedProp // served beside props (stage.go)
}

func (o *object) export() error {
	values := o.values()
	m := map[string]*prop.Prop{}
	for name, v := range values {
		if name == "Staged" {
			o.staged.value.Store(ptrTo(v.(map[string]godbus.Variant)))
			continue
		}
		emit := prop.EmitTrue
		switch name {
		case "Version":
			emit = prop.EmitConst
		case "Allowed", "Denied", "Audited":
			emit = prop.EmitInvalidates // they change with every packet
		}
		m[name] = &prop.Prop{Value: v, Emit: emit}
	}
	props, err := prop.Export(o.conn, Path, prop.Map{Interface: m})
	if err != nil {
		return fmt.Errorf("export properties: %w", err)
	}
	o.props = props
	if err := o.exportProperties(); err != nil {
		return err
	}
	if err := o.conn.Export(o, Path, Interface); err != nil {
		return fmt.Errorf("export %s: %w", Interface, err)
	}
	node, err := introspection()
	if err != nil {
		return err
	}
	if err := o.conn.Export(introspect.NewIntrospectable(node), Path, "org.freedesktop.DBus.Introspectable"); err != nil {
		return fmt.Errorf("export introspection: %w", err)
	}
	return nil
}

// introspection is the interface's XML with the Properties interface;
// NewIntrospectable adds Introspectable and Peer.
func introspection() (*introspect.Node, error) {
	var node introspect.Node
	if err := xml.Unmarshal([]byte(InterfaceXML), &node); err != nil {
		return nil, fmt.Errorf("parse introspection data: %w", err)
	}
	node.Name = string(Path)
	node.Interfaces = append(node.Interfaces, prop.IntrospectData)
	return &node, nil
}

// iface is one element of the Interfaces property, a(sus).
type iface struct {
	Name  string
	Index uint32
	Mode  string
}

// unit is a Units entry, (sst).
type unit struct {
	Name, Path string
	ID         uint64
}

// values are the properties as the daemon's status has them now.
func (o *object) values() map[string]any {
	st := o.opts.Manager.Status()
	ifaces := make([]iface, len(st.Attachments))
	for i, a := range st.Attachments {
		ifaces[i] = iface{a.Iface.Name, uint32(a.Iface.Index), string(a.Mode)}
	}
	var last uint64
	if !st.LastReload.IsZero() {
		last = uint64(st.LastReload.UnixMicro())
	}
	files := st.Files
	if files == nil {
		files = []string{}
	}
	warnings := st.Warnings
	if warnings == nil {
		warnings = []string{}
	}
	units := make([]unit, len(st.Units))
	for i, u := range st.Units {
		units[i] = unit{u.Name, u.Path, u.ID}
	}
	c, _ := o.opts.Manager.Counters() // zero until the filter is loaded
	return map[string]any{
		"Version":     o.opts.Version,
		"State":       string(st.State),
		"Generation":  uint64(st.Generation),
		"LastReload":  last,
		"LastError":   st.Problem(),
		"ConfigFiles": files,
		"Warnings":    warnings,
		"Units":       units,
		"Interfaces":  ifaces,
		"RuleCount":   uint32(st.Ranges),
		"Allowed":     c.Allowed,
		"Denied":      c.Denied,
		"Audited":     c.Audited,
		"Staged":      stagedValue(o.opts.Manager.StageSummary()),
	}
}

// refresh sets the properties that changed, which emits PropertiesChanged
// for them.
func (o *object) refresh() error {
	return o.set(o.values())
}

func (o *object) refreshCounters() error {
	c, err := o.opts.Manager.Counters()
	if err != nil {
		return nil // not loaded yet, or stopping: nothing new to say
	}
	// The stage's counts move with the traffic too: at most once a second.
	return o.set(map[string]any{"Allowed": c.Allowed, "Denied": c.Denied, "Audited": c.Audited,
		"Staged": stagedValue(o.opts.Manager.StageSummary())})
}

// set stores the values that changed. prop has no setter for read-only
// properties but SetMust, which panics when the signal cannot be sent (the
// connection just closed): a D-Bus hiccup must never take the firewall down.
func (o *object) set(values map[string]any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("update properties: %v", r)
		}
	}()
	// State last: a client that sees the new state (waits for
	// "degraded", say) then reads the properties that say why, and finds
	// them set already, and a subscriber has their signals first.
	names := slices.Sorted(maps.Keys(values))
	if i := slices.Index(names, "State"); i >= 0 {
		names = append(slices.Delete(names, i, i+1), "State")
	}
	for _, name := range names {
		v := values[name]
		if name == "Staged" {
			o.setStaged(v.(map[string]godbus.Variant))
			continue
		}
		if !reflect.DeepEqual(o.props.GetMust(Interface, name), v) {
			o.props.SetMust(Interface, name, v)
		}
	}
	return nil
}

// rootOnly refuses callers other than root, as the bus policy does: the
// check holds should the policy file be missing.
func (o *object) rootOnly(sender godbus.Sender, method, what string) *godbus.Error {
	var uid uint32
	err := o.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, string(sender)).Store(&uid)
	if err != nil {
		return godbus.NewError(ErrFailed, []any{"cannot tell who is asking: " + err.Error()})
	}
	if uid != 0 {
		o.opts.Logger.Warn("D-Bus: refused "+method, "uid", uid, "sender", string(sender))
		return godbus.NewError(ErrAccessDenied, []any{fmt.Sprintf("only root may %s (caller uid %d)", what, uid)})
	}
	return nil
}

// Stage is the D-Bus method (SPEC §5, §8): root only. An invalid set is
// InvalidConfig with every problem; nothing is staged then.
func (o *object) Stage(sender godbus.Sender, path string, seconds uint64) *godbus.Error {
	if e := o.rootOnly(sender, "Stage", "stage a policy"); e != nil {
		return e
	}
	if !filepath.IsAbs(path) {
		return godbus.NewError(errInvalidArgs, []any{fmt.Sprintf("config_path %q is not an absolute path", path)})
	}
	if seconds > uint64(maxStage/time.Second) {
		return godbus.NewError(errInvalidArgs, []any{fmt.Sprintf("%d seconds is more than a stage may last (%v)", seconds, maxStage)})
	}
	err := o.opts.Manager.Stage(context.Background(), path, time.Duration(seconds)*time.Second)
	var errs config.Errors
	switch {
	case errors.As(err, &errs):
		return godbus.NewError(ErrInvalidConfig, []any{errs.Error()})
	case err != nil:
		return godbus.NewError(ErrFailed, []any{err.Error()})
	}
	// Staged says so by the time the caller has the answer.
	o.setStaged(stagedValue(o.opts.Manager.StageSummary()))
	return nil
}

// maxStage bounds --for: what fits a time.Duration, with room.
const maxStage = 100 * 365 * 24 * time.Hour

// Unstage is the D-Bus method: root only; the summary of the stage that
// ended. With nothing staged: org.nettcfilter1.Error.NotStaged.
func (o *object) Unstage(sender godbus.Sender) (map[string]godbus.Variant, *godbus.Error) {
	if e := o.rootOnly(sender, "Unstage", "unstage a policy"); e != nil {
		return nil, e
	}
	sum, err := o.opts.Manager.Unstage(context.Background())
	switch {
	case errors.Is(err, daemon.ErrNothingStaged):
		return nil, godbus.NewError(ErrNotStaged, []any{err.Error()})
	case err != nil:
		return nil, godbus.NewError(ErrFailed, []any{err.Error()})
	}
	o.setStaged(map[string]godbus.Variant{})
	return stagedValue(sum), nil
}

// Reload is the D-Bus method. Only root may call it: the bus policy says
// so, and so does this check, should the policy file be missing.
func (o *object) Reload(sender godbus.Sender) (uint64, *godbus.Error) {
	if e := o.rootOnly(sender, "Reload", "reload net-tc-filter"); e != nil {
		return 0, e
	}
	gen, err := o.opts.Manager.Reload(context.Background())
	var errs config.Errors
	switch {
	case errors.As(err, &errs):
		return 0, godbus.NewError(ErrInvalidConfig, []any{errs.Error()})
	case err != nil:
		return 0, godbus.NewError(ErrFailed, []any{err.Error()})
	}
	return uint64(gen), nil
}

// Check is the D-Bus method. Bad input is InvalidArgs; what the daemon
// cannot answer yet (nothing live, no interface filtered, NSS not
// answering for the principal's name) is NotReady.
func (o *object) Check(principal, destination, iface string) (bool, string, string, string, *godbus.Error) {
	owner, err := daemon.ParseOwner(principal, o.opts.Resolver)
	if err != nil {
		return false, "", "", "", checkErr("principal: ", err)
	}
	k, err := policy.ParseDestination(destination)
	if err != nil {
		return false, "", "", "", godbus.NewError(errInvalidArgs, []any{"destination: " + err.Error()})
	}
	d, _, err := o.opts.Manager.Check(owner, k, iface)
	if err != nil {
		return false, "", "", "", checkErr("", err)
	}
	rng := ""
	if d.Range.IsValid() {
		rng = d.Range.String()
	}
	return d.Allowed, strings.Join(d.Endpoints, ","), rng, d.Reason, nil
}

// checkErr is Check's D-Bus error for err, its message after prefix:
// NotReady for what the daemon cannot answer yet (daemon.ErrNotReady),
// InvalidArgs for the question's own fault.
func checkErr(prefix string, err error) *godbus.Error {
	name := errInvalidArgs
	if errors.Is(err, daemon.ErrNotReady) {
		name = ErrNotReady
	}
	return godbus.NewError(name, []any{prefix + err.Error()})
}

// Status is the D-Bus method: every property at once.
func (o *object) Status() (map[string]godbus.Variant, *godbus.Error) {
	out := map[string]godbus.Variant{}
	for name, v := range o.values() {
		out[name] = godbus.MakeVariant(v)
	}
	return out, nil
}
