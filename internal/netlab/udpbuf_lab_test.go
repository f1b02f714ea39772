// SPDX-License-Identifier: Apache-2.0

package netlab_test

import (
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// A test server's reader starved for a while loses nothing (its buffer
// holds the stream), and a socket nobody reads is counted as the
// namespace's loss, not the host's: the counter a failing flow test
// quotes reads the right namespace.
func TestUDPReceiverKeepsAndCountsLosses(t *testing.T) {
	testnet.RequireRoot(t)
	tp, err := netlab.NewTopology(netlab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	a, err := netlab.StartAgent(tp.Client, 1001)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const n = 5000

	release := make(chan struct{})
	var got atomic.Int64
	srv, err := tp.Server.ServeUDP(7071, func(net.PacketConn, []byte, net.Addr) {
		<-release
		got.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	before, err := tp.Server.UDPRcvbufErrors()
	if err != nil {
		t.Fatal(err)
	}
	if sent, err := a.Burst(tp.Server4, 7071, n); err != nil || sent != n {
		t.Fatalf("burst: %d sent, %v", sent, err)
	}
	close(release)
	deadline := time.Now().Add(netlab.Slowed(3 * time.Second))
	for got.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	srv.Close()
	if after, err := tp.Server.UDPRcvbufErrors(); err != nil || after != before {
		t.Fatalf("a starved reader's socket dropped %d datagrams (%v)", after-before, err)
	}
	if got.Load() != n {
		t.Errorf("the starved reader got %d of %d datagrams", got.Load(), n)
	}

	// A socket with the default buffer that nobody reads.
	var unread net.PacketConn
	if err := tp.Server.Do(func() (err error) {
		unread, err = net.ListenPacket("udp", ":"+strconv.Itoa(7072))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unread.Close()
	if sent, err := a.Burst(tp.Server4, 7072, n); err != nil || sent != n {
		t.Fatalf("burst: %d sent, %v", sent, err)
	}
	after, err := tp.Server.UDPRcvbufErrors()
	if err != nil {
		t.Fatal(err)
	}
	if after-before < n/2 {
		t.Errorf("an unread socket's buffer overflowed by %d datagrams of %d, want most of them", after-before, n)
	}
}
