// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"

	"github.com/nettcfilter/net-tc-filter/daemon"
)

// ErrNotStaged is Unstage's error when nothing is staged.
const ErrNotStaged = "org.nettcfilter1.Error.NotStaged"

// difference is one element of the Staged property's Differences,
// a(subsssstas): owner, uid, unowned, unit, live endpoint, staged
// endpoint, change, packets, examples.
type difference struct {
	Owner          string
	UID            uint32
	Unowned        bool
	Unit           string
	LiveEndpoint   string
	StagedEndpoint string
	Change         string
	Packets        uint64
	Examples       []string
}

// stagedValue is the Staged property (and Unstage's answer): empty when
// nothing is staged. Times are microseconds since the epoch, Until 0 when
// the stage lasts until Unstage.
func stagedValue(sum daemon.StageSummary) map[string]godbus.Variant {
	if sum.Since.IsZero() {
		return map[string]godbus.Variant{}
	}
	var until uint64
	if !sum.Until.IsZero() {
		until = uint64(sum.Until.UnixMicro())
	}
	files := sum.Files
	if files == nil {
		files = []string{}
	}
	diffs := make([]difference, len(sum.Differences))
	for i, d := range sum.Differences {
		ex := d.Examples
		if ex == nil {
			ex = []string{}
		}
		diffs[i] = difference{d.Owner, d.UID, d.Unowned, d.Unit, d.LiveEndpoint, d.StagedEndpoint, d.Change, d.Packets, ex}
	}
	return map[string]godbus.Variant{
		"Config":          godbus.MakeVariant(sum.Config),
		"Files":           godbus.MakeVariant(files),
		"Since":           godbus.MakeVariant(uint64(sum.Since.UnixMicro())),
		"Until":           godbus.MakeVariant(until),
		"NewlyDenied":     godbus.MakeVariant(sum.NewlyDenied),
		"NewlyAllowed":    godbus.MakeVariant(sum.NewlyAllowed),
		"NewlyAudited":    godbus.MakeVariant(sum.NewlyAudited),
		"NoLongerAudited": godbus.MakeVariant(sum.NoLongerAudited),
		"Differences":     godbus.MakeVariant(diffs),
	}
}

// parseStaged reads stagedValue back; ok is false when nothing is staged.
func parseStaged(m map[string]godbus.Variant) (daemon.StageSummary, bool, error) {
	var sum daemon.StageSummary
	if len(m) == 0 {
		return sum, false, nil
	}
	var since, until uint64
	var diffs []difference
	for name, dst := range map[string]any{
		"Config": &sum.Config, "Files": &sum.Files, "Since": &since, "Until": &until,
		"NewlyDenied": &sum.NewlyDenied, "NewlyAllowed": &sum.NewlyAllowed,
		"NewlyAudited": &sum.NewlyAudited, "NoLongerAudited": &sum.NoLongerAudited,
		"Differences": &diffs,
	} {
		v, ok := m[name]
		if !ok {
			return sum, false, fmt.Errorf("staged summary lacks %s", name)
		}
		if err := v.Store(dst); err != nil {
			return sum, false, fmt.Errorf("staged summary field %s: %w", name, err)
		}
	}
	sum.Since = time.UnixMicro(int64(since))
	if until != 0 {
		sum.Until = time.UnixMicro(int64(until))
	}
	sum.Differences = make([]daemon.StagedDifference, len(diffs))
	for i, d := range diffs {
		sum.Differences[i] = daemon.StagedDifference{Owner: d.Owner, UID: d.UID, Unowned: d.Unowned, Unit: d.Unit,
			LiveEndpoint: d.LiveEndpoint, StagedEndpoint: d.StagedEndpoint, Change: d.Change, Packets: d.Packets, Examples: d.Examples}
	}
	return sum, true, nil
}

// Stage stages the set at path (absolute) for dur (0: until Unstage).
func (c *Client) Stage(ctx context.Context, path string, dur time.Duration) error {
	return answer(c.obj.CallWithContext(ctx, Interface+".Stage", 0, path, uint64(dur/time.Second)).Err)
}

// Unstage ends the stage and returns its summary.
func (c *Client) Unstage(ctx context.Context) (daemon.StageSummary, error) {
	var m map[string]godbus.Variant
	if err := c.obj.CallWithContext(ctx, Interface+".Unstage", 0).Store(&m); err != nil {
		return daemon.StageSummary{}, answer(err)
	}
	sum, _, err := parseStaged(m)
	return sum, err
}

// Staged reads the Staged property; ok is false when nothing is staged.
func (c *Client) Staged(ctx context.Context) (daemon.StageSummary, bool, error) {
	v, err := c.obj.GetProperty(Interface + ".Staged")
	if err != nil {
		return daemon.StageSummary{}, false, answer(err)
	}
	m, ok := v.Value().(map[string]godbus.Variant)
	if !ok {
		return daemon.StageSummary{}, false, fmt.Errorf("Staged is %s, not a{sv}", v.Signature())
	}
	return parseStaged(m)
}

// stagedProp is the Staged property, served beside prop's: prop keeps an
// a{sv} value by storing each new one into the map it holds (dbus.Store
// merges maps), so a stage that ended would leave its keys behind, and it
// hands that same map to replies being encoded while the next update
// writes it. Here every value is a map of its own, never written again.
type stagedProp struct {
	value atomic.Pointer[map[string]godbus.Variant]
	mu    sync.Mutex // setStaged's: each change is emitted in the order stored
}

func ptrTo[T any](v T) *T { return &v }

// exportProperties serves org.freedesktop.DBus.Properties: prop's
// properties, and Staged.
func (o *object) exportProperties() error {
	if o.staged.value.Load() == nil {
		o.staged.value.Store(ptrTo(map[string]godbus.Variant{}))
	}
	get := func(iface, name string) (godbus.Variant, *godbus.Error) {
		if iface == Interface && name == "Staged" {
			return godbus.MakeVariant(*o.staged.value.Load()), nil
		}
		return o.props.Get(iface, name)
	}
	getAll := func(iface string) (map[string]godbus.Variant, *godbus.Error) {
		all, err := o.props.GetAll(iface)
		if err == nil && iface == Interface {
			all["Staged"] = godbus.MakeVariant(*o.staged.value.Load())
		}
		return all, err
	}
	set := func(iface, name string, v godbus.Variant) *godbus.Error {
		if iface == Interface && name == "Staged" {
			return prop.ErrReadOnly
		}
		return o.props.Set(iface, name, v)
	}
	err := o.conn.ExportMethodTable(map[string]any{"Get": get, "GetAll": getAll, "Set": set}, Path, "org.freedesktop.DBus.Properties")
	if err != nil {
		return fmt.Errorf("export properties: %w", err)
	}
	return nil
}

// setStaged updates Staged and emits PropertiesChanged when it changed.
func (o *object) setStaged(v map[string]godbus.Variant) {
	o.staged.mu.Lock()
	defer o.staged.mu.Unlock()
	if reflect.DeepEqual(*o.staged.value.Load(), v) {
		return
	}
	o.staged.value.Store(&v)
	// Best effort, as prop's: a D-Bus hiccup must never take the
	// firewall down.
	_ = o.conn.Emit(Path, "org.freedesktop.DBus.Properties.PropertiesChanged",
		Interface, map[string]godbus.Variant{"Staged": godbus.MakeVariant(v)}, []string{})
}
