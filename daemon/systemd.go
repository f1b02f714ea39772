// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"fmt"
	"os"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
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
	// Not sddbus.NewWithContext: it tries the private socket only when
	// euid is 0, and a daemon that lost the bus must still tell a restart
	// from a stop whoever it runs as.
	conn, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		conn, err = sddbus.NewSystemdConnectionContext(ctx)
	}
	if err != nil {
		return false, fmt.Errorf("reach systemd: %w", err)
	}
	defer conn.Close()
	unit, err := conn.GetUnitNameByPID(ctx, uint32(os.Getpid()))
	if err != nil {
		return false, fmt.Errorf("find our unit: %w", err)
	}
	// One call answers both the unit's job and that job's type.
	units, err := conn.ListUnitsByNamesContext(ctx, []string{unit})
	if err != nil {
		return false, fmt.Errorf("read the job of %s: %w", unit, err)
	}
	if len(units) != 1 {
		return false, fmt.Errorf("read the job of %s: systemd answered with %d units", unit, len(units))
	}
	if units[0].JobId == 0 {
		return false, nil
	}
	switch units[0].JobType {
	case "restart", "try-restart", "reload-or-restart", "reload-or-try-restart":
		return true, nil
	}
	return false, nil
}
