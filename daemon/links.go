// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkEvents reports that interfaces of this network namespace appeared,
// changed (renamed) or went away, with the indexes of those that went away.
// Bursts are coalesced: a receiver re-reads the whole interface list anyway.
// A report follows every (re)subscription, so an interface created while
// nobody listened is not missed: the first subscription is made before
// linkEvents returns, so that a list taken afterwards misses nothing; when
// the kernel drops notifications (a full socket buffer) or the
// subscription fails, it resubscribes.
func linkEvents(ctx context.Context, log *slog.Logger) *links {
	l := &links{C: make(chan struct{}, 1), gone: map[int]bool{}}
	sub, err := subscribeLinks(ctx, log)
	if err != nil {
		log.Warn("interface notifications", "err", err)
	}
	go func() {
		for ctx.Err() == nil {
			if sub != nil {
				err := sub.forward(ctx, l)
				if err != nil {
					log.Warn("interface notifications interrupted; resubscribing", "err", err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			if sub, err = subscribeLinks(ctx, log); err != nil {
				log.Warn("interface notifications", "err", err)
			}
			l.signal(-1)
		}
	}()
	return l
}

// links carries interface changes to the service.
type links struct {
	C    chan struct{}
	mu   sync.Mutex
	gone map[int]bool // ifindexes deleted since the last Gone
}

func (l *links) signal(deleted int) {
	if deleted > 0 {
		l.mu.Lock()
		l.gone[deleted] = true
		l.mu.Unlock()
	}
	select {
	case l.C <- struct{}{}:
	default:
	}
}

// Gone returns the interfaces deleted since the last call: a device that
// comes back with the same index is a new device, and must be attached to
// afresh even when nothing else looks different.
func (l *links) Gone() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for idx := range l.gone {
		out = append(out, idx)
	}
	clear(l.gone)
	return out
}

type subscription struct {
	updates chan netlink.LinkUpdate
	done    chan struct{}
	lastErr *error
}

// subscribeLinks subscribes to RTM_NEWLINK/RTM_DELLINK. The library closes
// the channel when its socket fails (ENOBUFS when notifications were lost,
// for one); the errors it reports without giving up are only worth a debug
// line.
func subscribeLinks(ctx context.Context, log *slog.Logger) (*subscription, error) {
	s := &subscription{updates: make(chan netlink.LinkUpdate, 64), done: make(chan struct{}), lastErr: new(error)}
	err := netlink.LinkSubscribeWithOptions(s.updates, s.done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			log.Debug("interface notification", "err", err)
			*s.lastErr = err
		},
		ReceiveBufferSize: 1 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to interface changes: %w", err)
	}
	return s, nil
}

// forward passes notifications on until ctx ends or the subscription breaks.
func (s *subscription) forward(ctx context.Context, l *links) error {
	defer close(s.done)
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-s.updates:
			if !ok {
				return fmt.Errorf("interface notifications stopped: %v", *s.lastErr)
			}
			deleted := 0
			if u.Header.Type == unix.RTM_DELLINK {
				deleted = int(u.Index)
			}
			l.signal(deleted)
		}
	}
}
