// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// UserNSTopology is a Topology whose client namespace belongs to a user
// namespace of its own, as a container's does: its root is HostUID on the
// host. Agent runs in it as that root; the filter goes on the client's
// eth0, the veth that carries the container's traffic.
//
//	user ns (root = HostUID) / client ns --eth0==eth0-- server ns
type UserNSTopology struct {
	*Topology
	HostUID uint32
	Agent   *Agent // uid 0 inside the user namespace, HostUID on the host
}

// NewUserNSTopology makes the user and network namespaces the way
// `unshare --user --map-root-user --net` run by HostUID does: a process
// whose uid 0 (and gid 0) map to hostUID, in a new network namespace owned
// by its new user namespace. Its sockets' owner as the host sees it is
// hostUID; inside, the same sockets say uid 0. The process is the agent
// (the running executable, which must call ServeAgent); the namespace gets
// a name (ip netns attach) so the caller can set it up from outside. Close
// removes it all.
func NewUserNSTopology(hostUID uint32) (*UserNSTopology, error) {
	tp := &Topology{
		Client4: LinkNet4.Addr().Next(),
		Server4: LinkNet4.Addr().Next().Next(),
		Client6: LinkNet6.Addr().Next(),
		Server6: LinkNet6.Addr().Next().Next(),
	}
	u := &UserNSTopology{Topology: tp, HostUID: hostUID}
	if err := u.build(); err != nil {
		tp.Close()
		return nil, fmt.Errorf("user namespace topology: %w", err)
	}
	return u, nil
}

func (u *UserNSTopology) build() error {
	exe, err := u.executableCopy()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(u.HostUID), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(u.HostUID), Size: 1}},
		// Root of the new user namespace before exec, so that the agent
		// keeps that namespace's capabilities and may drop to its uid
		// (setgroups, setresgid, setresuid) as it does everywhere.
		Credential:                 &syscall.Credential{Uid: 0, Gid: 0},
		GidMappingsEnableSetgroups: true,
	}
	if u.Agent, err = startAgent(cmd, 0); err != nil {
		return err
	}
	u.closers.add(u.Agent.Close)
	u.Agent.UID = u.HostUID // what the host, and so the filter, sees

	client := &NS{Name: "ntft-u-" + randomID()}
	if _, err := Output("ip", "netns", "attach", client.Name, strconv.Itoa(u.Agent.Pid())); err != nil {
		return err
	}
	u.closers.add(client.Close)
	u.Client = client
	if err := checkUserNS(u.Agent.Pid(), u.HostUID); err != nil {
		return err
	}
	if _, err := client.IP("link", "set", "lo", "up"); err != nil {
		return err
	}
	return u.link()
}

// checkUserNS makes sure that pid runs in a user namespace other than
// ours in which uid 0 is hostUID: the state the topology is about. The
// maps are written before the process runs the executable.
func checkUserNS(pid int, hostUID uint32) error {
	self, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		return err
	}
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err != nil {
		return err
	}
	m, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		return err
	}
	var inside, outside, n uint32
	if _, err := fmt.Sscan(string(m), &inside, &outside, &n); err != nil {
		return fmt.Errorf("agent %d: uid_map %q: %w", pid, m, err)
	}
	if theirs == self || inside != 0 || outside != hostUID || n != 1 {
		return fmt.Errorf("agent %d: user namespace %s (ours %s), uid_map %q: want 0 -> %d", pid, theirs, self, m, hostUID)
	}
	return nil
}

// executableCopy copies the running executable to where the user
// namespace's root may run it: it execs as hostUID, which may not enter
// the build's private directory. Close removes the copy.
func (u *UserNSTopology) executableCopy() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "ntft-userns-")
	if err != nil {
		return "", err
	}
	u.closers.add(func() error { return os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	src, err := os.Open(exe)
	if err != nil {
		return "", err
	}
	defer src.Close()
	path := filepath.Join(dir, filepath.Base(exe))
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return "", fmt.Errorf("copy the executable: %w", err)
	}
	return path, dst.Close()
}
