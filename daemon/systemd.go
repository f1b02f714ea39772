package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"

	godbus "github.com/godbus/dbus/v5"
)

// restarting reports whether systemd is stopping this service to start it
// again (`systemctl restart`, a package upgrade): its unit has a restart
// job. Then the filter stays for the next start to adopt, whatever
// on_stop says — a restart must not leave a moment unfiltered.
//
// systemd is asked on the system bus, or on its private socket when the
// bus is down. Outside systemd (no $INVOCATION_ID) the answer is no.
func restarting(ctx context.Context) (bool, error) {
	if os.Getenv("INVOCATION_ID") == "" {
		return false, nil
	}
	conn, err := godbus.ConnectSystemBus(godbus.WithContext(ctx))
	if err != nil {
		conn, err = godbus.Connect("unix:path=/run/systemd/private", godbus.WithContext(ctx))
	}
	if err != nil {
		return false, fmt.Errorf("reach systemd: %w", err)
	}
	defer conn.Close()
	const dest = "org.freedesktop.systemd1"
	var unit godbus.ObjectPath
	err = conn.Object(dest, "/org/freedesktop/systemd1").
		CallWithContext(ctx, dest+".Manager.GetUnitByPID", 0, uint32(os.Getpid())).Store(&unit)
	if err != nil {
		return false, fmt.Errorf("find our unit: %w", err)
	}
	v, err := conn.Object(dest, unit).GetProperty(dest + ".Unit.Job")
	if err != nil {
		return false, fmt.Errorf("read the unit's job: %w", err)
	}
	var job struct {
		ID   uint32
		Path godbus.ObjectPath
	}
	if err := v.Store(&job); err != nil {
		return false, fmt.Errorf("read the unit's job: %w", err)
	}
	if job.ID == 0 {
		return false, nil
	}
	t, err := conn.Object(dest, job.Path).GetProperty(dest + ".Job.JobType")
	if err != nil {
		return false, fmt.Errorf("read job %d: %w", job.ID, err)
	}
	kind, ok := t.Value().(string)
	if !ok {
		return false, errors.New("job type is not a string")
	}
	switch kind {
	case "restart", "try-restart", "reload-or-restart", "reload-or-try-restart":
		return true, nil
	}
	return false, nil
}
