// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// Capture receives every frame that arrives on iface in ns, until the
// returned Closer is closed: proof that a frame got through.
func Capture(ns *NS, iface string) (<-chan []byte, io.Closer, error) {
	var fd int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("packet socket: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("capture on %s: %w", iface, err)
	}
	// Closing the socket does not wake a blocked recv; a short receive
	// timeout lets the reader notice.
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	done := make(chan struct{})
	ch := make(chan []byte, 1024)
	go func() {
		defer unix.Close(fd)
		buf := make([]byte, 65536)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			select {
			case ch <- append([]byte(nil), buf[:n]...):
			default:
			}
		}
	}()
	return ch, closerFunc(func() error { close(done); return nil }), nil
}

// SendRaw sends a whole link-layer frame out of iface from the agent, as
// written: for frames the stack would not build, such as inline VLAN tags.
// Packet sockets need CAP_NET_RAW, so the agent must run as root.
func (a *Agent) SendRaw(iface string, frame []byte) error {
	_, err := a.call(fmt.Sprintf("raw %s %x", iface, frame))
	return err
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

func sendRaw(iface string, frame []byte) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index})
}
