// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// alternate sends 64-byte datagrams through several filters side by side:
// one socket in each client namespace (a namespace per filter), all owned
// by the user, written to in turn by one thread for slice at a time until
// dur is over. It prints, per namespace, the datagrams its socket took and
// the time it had.
//
// A filter costs tens of nanoseconds of the microseconds a datagram takes,
// while a shared VM's speed drifts by several percent from one second to
// the next. Turns of milliseconds put every filter under the same drift;
// runs of seconds, one filter after another, do not.
func alternate(stdout io.Writer, names []string, dst netip.AddrPort, uid, gid, size int, slice, dur time.Duration, cpu int) error {
	// Every socket is made, and every datagram sent, on this thread.
	runtime.LockOSThread()
	fds := make([]int, 0, len(names))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, name := range names {
		ns := &netlab.NS{Name: name}
		err := ns.Do(func() error {
			if err := netlab.RefuseHostNetns(); err != nil {
				return err
			}
			if err := checkSource(dst); err != nil {
				return err
			}
			fd, err := ownedSocket(uid, gid, dst)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			return nil
		})
		if err != nil {
			return fmt.Errorf("agent alternate: netns %s: %w", name, err)
		}
	}
	if err := netlab.DropTo(uid, gid); err != nil {
		return fmt.Errorf("agent alternate: %w", err)
	}
	if cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("agent alternate: pin to CPU %d: %w", cpu, err)
		}
	}
	buf := make([]byte, max(size, 8))
	sent := make([]int64, len(fds))
	took := make([]time.Duration, len(fds))
	end := time.Now().Add(dur)
	for k := 0; ; k++ {
		i := k % len(fds)
		start := time.Now()
		if !start.Before(end) {
			break
		}
		stop := start.Add(slice)
		var now time.Time
		for {
			// The clock is read once per 32 datagrams: reading it costs
			// about as much as the filters being compared.
			for range 32 {
				if _, err := unix.Write(fds[i], buf); err == nil {
					sent[i]++
				}
			}
			if now = time.Now(); !now.Before(stop) {
				break
			}
		}
		took[i] += now.Sub(start)
	}
	for i, name := range names {
		fmt.Fprintf(stdout, "netns %s sent %d seconds %.6f\n", name, sent[i], took[i].Seconds())
	}
	return nil
}

// ownedSocket makes a UDP socket owned by uid (the kernel takes a socket's
// owner from the file system ids of the thread that makes it), bound to the
// client's address and connected to dst, and checks the owner it got.
func ownedSocket(uid, gid int, dst netip.AddrPort) (fd int, err error) {
	oldGID, err := unix.SetfsgidRetGid(gid)
	if err != nil {
		return -1, fmt.Errorf("setfsgid %d: %w", gid, err)
	}
	defer unix.Setfsgid(oldGID)
	oldUID, err := unix.SetfsuidRetUid(uid)
	if err != nil {
		return -1, fmt.Errorf("setfsuid %d: %w", uid, err)
	}
	defer unix.Setfsuid(oldUID)
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	if err == nil && int(st.Uid) != uid {
		err = fmt.Errorf("socket owned by uid %d, not %d", st.Uid, uid)
	}
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet4{Addr: ClientAddr.As4()})
	}
	if err == nil {
		err = unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("UDP socket: %w", err)
	}
	return fd, nil
}
