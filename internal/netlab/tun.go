// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// addTun creates tun0 in the client namespace, owned by this process, and
// forwards every packet the kernel transmits on it to tp.Tun until Close.
func (tp *Topology) addTun() error {
	var f *os.File
	err := tp.Client.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		var req struct {
			name  [unix.IFNAMSIZ]byte
			flags uint16
			_     [22]byte
		}
		copy(req.name[:], "tun0")
		req.flags = unix.IFF_TUN | unix.IFF_NO_PI
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req))); errno != 0 {
			unix.Close(fd)
			return errno
		}
		f = os.NewFile(uintptr(fd), "tun0")
		return nil
	})
	if err != nil {
		return err
	}
	tp.closers.add(f.Close)
	err = ipSteps(
		step(tp.Client, "addr", "add", TunNet4.Addr().Next().String()+"/30", "dev", "tun0"),
		step(tp.Client, "link", "set", "tun0", "up"))
	if err != nil {
		return err
	}
	ch := make(chan []byte, 1024)
	tp.Tun = ch
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			select {
			case ch <- append([]byte(nil), buf[:n]...):
			default: // nobody is looking: drop
			}
		}
	}()
	return nil
}
