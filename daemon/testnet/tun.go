package testnet

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// addTun creates tun0 in the client namespace, owned by this process, and
// forwards every packet the kernel transmits on it to tp.Tun.
func (tp *Topology) addTun(t testing.TB) {
	var f *os.File
	tp.Client.MustDo(t, func() error {
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
	t.Cleanup(func() { f.Close() })
	tp.Client.IP(t, "addr", "add", "198.18.3.1/30", "dev", "tun0")
	tp.Client.IP(t, "link", "set", "tun0", "up")
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
}
