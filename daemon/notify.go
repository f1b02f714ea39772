// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"fmt"
	"strings"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
)

// notifier tells the service manager how the service is doing. Outside
// systemd (no NOTIFY_SOCKET) every call is a no-op.
type notifier struct{}

func (notifier) send(lines ...string) error {
	if _, err := sddaemon.SdNotify(false, strings.Join(lines, "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

func (n notifier) ready(status string) error {
	return n.send(sddaemon.SdNotifyReady, "STATUS="+oneLine(status))
}

func (n notifier) status(status string) error {
	return n.send("STATUS=" + oneLine(status))
}

// reloading follows systemd's Type=notify-reload protocol: the timestamp
// lets the manager tell this reload from an earlier one.
func (n notifier) reloading() error {
	return n.send(sddaemon.SdNotifyReloading, sddaemon.SdNotifyMonotonicUsec())
}

func (n notifier) stopping() error { return n.send(sddaemon.SdNotifyStopping) }

func (n notifier) watchdog() error { return n.send(sddaemon.SdNotifyWatchdog) }

// watchdogInterval is how often to pet the watchdog: half of WatchdogSec=,
// or 0 when the manager does not watch.
func watchdogInterval() (time.Duration, error) {
	d, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0, fmt.Errorf("watchdog settings: %w", err)
	}
	return d / 2, nil
}

// oneLine keeps STATUS= to the one line systemctl status shows.
func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
