// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// udpReadBuffer is what a test server's socket may hold unread. The
// default (rmem_max, 208 KiB: a few hundred small datagrams) overflows
// whenever the reading goroutine is starved for a moment, as it is under
// emulation while a daemon starts beside it; a stream's datagrams lost
// there would look like datagrams the filter dropped. 32 MiB holds every
// datagram a test sends.
const udpReadBuffer = 32 << 20

// forceReadBuffer sets the socket's receive buffer past rmem_max
// (SO_RCVBUFFORCE, which needs CAP_NET_ADMIN: the tests run as root).
func forceReadBuffer(pc net.PacketConn, bytes int) error {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return fmt.Errorf("receive buffer: %T has no file descriptor", pc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("receive buffer: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes)
	}); err != nil {
		return fmt.Errorf("receive buffer: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("receive buffer of %d bytes (SO_RCVBUFFORCE): %w", bytes, serr)
	}
	return nil
}

// UDPRcvbufErrors is the namespace's count of UDP datagrams dropped
// because a socket's receive buffer was full (Udp RcvbufErrors in
// /proc/net/snmp): a test that counts arrivals tells by it whether a
// missing datagram was lost at the receiver rather than on the way.
func (n *NS) UDPRcvbufErrors() (uint64, error) {
	var v uint64
	err := n.Do(func() error {
		// thread-self: /proc/self/net is the main thread's namespace,
		// not the one this locked thread has entered.
		f, err := os.Open("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		defer f.Close()
		v, err = snmpField(bufio.NewScanner(f), "Udp:", "RcvbufErrors")
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("udp counters of netns %s: %w", n.Name, err)
	}
	return v, nil
}

// snmpField reads one counter of /proc/net/snmp, where each group is a
// line of names followed by a line of values, both led by the group's tag.
func snmpField(sc *bufio.Scanner, group, field string) (uint64, error) {
	var names []string
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != group {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == field && i < len(f) {
				return strconv.ParseUint(f[i], 10, 64)
			}
		}
		break
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s %s counter", group, field)
}
