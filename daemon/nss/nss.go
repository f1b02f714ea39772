// SPDX-License-Identifier: Apache-2.0

// Package nss resolves user and group names through the C library, so every
// source /etc/nsswitch.conf configures (files, LDAP, SSSD...) is consulted.
// It is the only cgo in the daemon: the policy compiler stays pure Go and
// sees it only as a policy.Resolver. It does not know what a policy is,
// nor how long a lookup may take (policy.LookupBudget bounds that).
package nss

/*
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// Resolver is the policy.Resolver of the running system.
type Resolver struct{}

var _ policy.Resolver = Resolver{}

// User resolves a user name.
func (Resolver) User(name string) (uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return 0, fmt.Errorf("%w user %q", policy.ErrUnknown, name)
		}
		return 0, fmt.Errorf("look up user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %q: uid %q: %w", name, u.Uid, err)
	}
	return uint32(uid), nil
}

// Group resolves a group to its members: users listed in the group entry and
// users whose primary group it is. Primary members are found by enumerating
// the passwd database, which some LDAP/SSSD setups disable
// (enumerate = false); list such users in the group entry itself.
func (n Resolver) Group(name string) ([]uint32, error) {
	gid, members, err := getgrnam(name)
	if err != nil {
		return nil, err
	}
	var uids []uint32
	for _, m := range members {
		uid, err := n.User(m)
		if errors.Is(err, policy.ErrUnknown) {
			// A deleted user still listed in the group owns no socket.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("group %q member: %w", name, err)
		}
		uids = append(uids, uid)
	}
	return append(uids, primaryMembers(gid)...), nil
}

func getgrnam(name string) (uint32, []string, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var grp C.struct_group
	var result *C.struct_group
	for size := 1024; size <= 1<<24; size *= 4 {
		buf := C.malloc(C.size_t(size))
		rc := C.getgrnam_r(cname, &grp, (*C.char)(buf), C.size_t(size), &result)
		if syscall.Errno(rc) == syscall.ERANGE {
			C.free(buf)
			continue
		}
		defer C.free(buf)
		if rc != 0 {
			return 0, nil, fmt.Errorf("look up group %q: %w", name, syscall.Errno(rc))
		}
		if result == nil {
			return 0, nil, fmt.Errorf("%w group %q", policy.ErrUnknown, name)
		}
		var members []string
		for p := grp.gr_mem; *p != nil; p = (**C.char)(unsafe.Add(unsafe.Pointer(p), unsafe.Sizeof(*p))) {
			members = append(members, C.GoString(*p))
		}
		return uint32(grp.gr_gid), members, nil
	}
	return 0, nil, fmt.Errorf("look up group %q: entry too large", name)
}

// pwent serialises passwd enumeration: setpwent/getpwent share one cursor
// per process.
var pwent sync.Mutex

func primaryMembers(gid uint32) []uint32 {
	pwent.Lock()
	defer pwent.Unlock()
	C.setpwent()
	defer C.endpwent()
	var uids []uint32
	for {
		pw := C.getpwent()
		if pw == nil {
			return uids
		}
		if uint32(pw.pw_gid) == gid {
			uids = append(uids, uint32(pw.pw_uid))
		}
	}
}
