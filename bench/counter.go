package bench

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Counter counts the datagrams that reach a UDP port on the server, with
// the time of the first and the last.
type Counter struct {
	pc    net.PacketConn
	n     atomic.Int64
	mu    sync.Mutex
	first time.Time
	last  time.Time
	done  chan struct{}
}

// NewCounter listens on port on every server address.
func NewCounter(server *NS, port int) (*Counter, error) {
	c := &Counter{done: make(chan struct{})}
	err := server.Do(func() (err error) {
		c.pc, err = net.ListenPacket("udp", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("udp counter on port %d: %w", port, err)
	}
	go c.loop()
	return c, nil
}

func (c *Counter) loop() {
	defer close(c.done)
	buf := make([]byte, 2048)
	for {
		_, _, err := c.pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		now := time.Now()
		c.mu.Lock()
		if c.n.Load() == 0 {
			c.first = now
		}
		c.last = now
		c.n.Add(1)
		c.mu.Unlock()
	}
}

// Reset forgets what arrived so far.
func (c *Counter) Reset() {
	c.mu.Lock()
	c.n.Store(0)
	c.first, c.last = time.Time{}, time.Time{}
	c.mu.Unlock()
}

// Count is how many datagrams arrived since the last Reset.
func (c *Counter) Count() int64 { return c.n.Load() }

// First is when the first datagram since the last Reset arrived (zero: none).
func (c *Counter) First() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first
}

// Close stops counting.
func (c *Counter) Close() {
	c.pc.Close()
	<-c.done
}
