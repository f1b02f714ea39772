package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/vishvananda/netlink"
)

// linkEvents reports that interfaces of this network namespace appeared,
// changed (renamed) or went away. Bursts are coalesced: a receiver re-reads
// the whole interface list anyway. When the kernel drops notifications (a
// full socket buffer) or the subscription fails, it resubscribes and reports
// a change, so nothing is missed for long.
func linkEvents(ctx context.Context, log *slog.Logger) <-chan struct{} {
	out := make(chan struct{}, 1)
	signal := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	go func() {
		for ctx.Err() == nil {
			if err := subscribeLinks(ctx, log, signal); err != nil {
				log.Warn("interface notifications interrupted; resubscribing", "err", err)
			}
			signal()
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return out
}

// subscribeLinks forwards RTM_NEWLINK/RTM_DELLINK until ctx ends or the
// subscription breaks. The library closes the channel when its socket fails
// (ENOBUFS when notifications were lost, for one); the errors it reports
// without giving up are only worth a debug line.
func subscribeLinks(ctx context.Context, log *slog.Logger, signal func()) error {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	var lastErr error
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			log.Debug("interface notification", "err", err)
			lastErr = err
		},
		ReceiveBufferSize: 1 << 20,
	})
	if err != nil {
		return fmt.Errorf("subscribe to interface changes: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-updates:
			if !ok {
				return fmt.Errorf("interface notifications stopped: %v", lastErr)
			}
			signal()
		}
	}
}
