// SPDX-License-Identifier: Apache-2.0

package nss

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// shadowTool runs useradd/groupadd/userdel/groupdel, retrying while another
// process (a parallel test package) holds the lock on /etc/passwd or /etc/group.
func shadowTool(t *testing.T, name string, args ...string) error {
	t.Helper()
	var out []byte
	var err error
	for range 50 {
		out, err = exec.Command(name, args...).CombinedOutput()
		if err == nil {
			return nil
		}
		var ee *exec.ExitError
		// 10: can't update group file / 1: can't update passwd file; both
		// also occur when the file is locked.
		if !errors.As(err, &ee) || !strings.Contains(strings.ToLower(string(out)), "lock") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &toolError{cmd: name + " " + strings.Join(args, " "), out: strings.TrimSpace(string(out)), err: err}
}

type toolError struct {
	cmd, out string
	err      error
}

func (e *toolError) Error() string { return e.cmd + ": " + e.err.Error() + ": " + e.out }

// idRange keeps the ids of the accounts these tests make away from the
// uids the service tests send as (1001, 1002, ...): useradd would give
// out the first free ones, and a test running beside them would find its
// uid taken, or userdel here refuse a user that their agent runs as.
var idRange = []string{"-K", "UID_MIN=61000", "-K", "UID_MAX=61999", "-K", "GID_MIN=61000", "-K", "GID_MAX=61999"}

func idU(t *testing.T, name string) uint32 {
	t.Helper()
	out, err := exec.Command("id", "-u", name).Output()
	if err != nil {
		t.Fatalf("id -u %s: %v", name, err)
	}
	u, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 32)
	if err != nil {
		t.Fatalf("id -u %s: %q: %v", name, out, err)
	}
	return uint32(u)
}

func TestNSS(t *testing.T) {
	testnet.RequireRoot(t)
	for _, tool := range []string{"useradd", "userdel", "groupadd", "groupdel", "id"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: %v", tool, err)
		}
	}

	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "ntfpol" + hex.EncodeToString(rnd[:])
	group := prefix + "g"
	primary := prefix + "p" // primary group: group
	supp := prefix + "s"    // supplementary member of group
	other := prefix + "o"   // not in group
	lonely := prefix + "e"  // a group with no members at all

	// Cleanups run last-in first-out: groups are removed after the users
	// whose primary group they are.
	if err := shadowTool(t, "groupadd", append(idRange, group)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := shadowTool(t, "groupdel", group); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := shadowTool(t, "groupadd", append(idRange, lonely)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := shadowTool(t, "groupdel", lonely); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	addUser := func(name string, args ...string) {
		t.Helper()
		// -M: no home directory; -U: a user private group for users whose
		// primary group is not given (removed again by userdel).
		if err := shadowTool(t, "useradd", slices.Concat(idRange, []string{"-M", "-s", "/usr/sbin/nologin"}, args, []string{name})...); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := shadowTool(t, "userdel", name); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	}
	addUser(primary, "-N", "-g", group)
	addUser(supp, "-U", "-G", group)
	addUser(other, "-U")

	n := Resolver{}
	for _, name := range []string{primary, supp, other, "root"} {
		got, err := n.User(name)
		if err != nil {
			t.Errorf("User(%q): %v", name, err)
			continue
		}
		if want := idU(t, name); got != want {
			t.Errorf("User(%q) = %d, want %d (id -u)", name, got, want)
		}
	}
	if got, err := n.User("root"); err != nil || got != 0 {
		t.Errorf("User(root) = %d, %v; want 0", got, err)
	}

	members, err := n.Group(group)
	if err != nil {
		t.Fatalf("Group(%q): %v", group, err)
	}
	slices.Sort(members)
	want := []uint32{idU(t, primary), idU(t, supp)}
	slices.Sort(want)
	if !slices.Equal(members, want) {
		t.Errorf("Group(%q) = %v, want exactly %v (primary %s + supplementary %s, not %s uid %d)",
			group, members, want, primary, supp, other, idU(t, other))
	}

	// A user private group has its owner as (primary) member.
	if got, err := n.Group(other); err != nil || !slices.Equal(got, []uint32{idU(t, other)}) {
		t.Errorf("Group(%q) = %v, %v; want [%d]", other, got, err, idU(t, other))
	}
	if got, err := n.Group(lonely); err != nil || len(got) != 0 {
		t.Errorf("Group(%q) = %v, %v; want no members", lonely, got, err)
	}

	for _, tt := range []struct {
		what string
		f    func() error
	}{
		{"unknown user", func() error { _, err := n.User(prefix + "nouser"); return err }},
		{"unknown group", func() error { _, err := n.Group(prefix + "nogroup"); return err }},
	} {
		err := tt.f()
		if err == nil {
			t.Errorf("%s: no error", tt.what)
			continue
		}
		if !errors.Is(err, policy.ErrUnknown) {
			t.Errorf("%s: error %v does not wrap policy.ErrUnknown", tt.what, err)
		}
		if !strings.Contains(err.Error(), prefix+"no") {
			t.Errorf("%s: error %q does not name the name", tt.what, err)
		}
	}

	// Through Compile, with the real resolver.
	cfg := nssConfig(group, primary)
	p, err := policy.Compile(cfg, n)
	if err != nil {
		t.Fatalf("Compile with NSS: %v", err)
	}
	wantAll := append(slices.Clone(want), 0)
	slices.Sort(wantAll)
	wantAll = slices.Compact(wantAll)
	if got := p.Endpoints[0].Principals.UIDs; !slices.Equal(got, wantAll) {
		t.Errorf("compiled UIDs = %v, want %v", got, wantAll)
	}
}

const mainFile = "/etc/net-tc-filter/net-tc-filter.yml"

func nssConfig(group, user string) *config.Config {
	return &config.Config{
		Endpoints: []*config.Endpoint{{
			Name:   "imds",
			Line:   2,
			Site:   &config.Site{File: mainFile, Ifaces: []string{"eth0"}},
			Ranges: []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32")},
			Allow: []config.Principal{
				{Kind: config.PrincipalGroup, Text: "group:" + group, Line: 5},
				{Kind: config.PrincipalUser, Text: user, Line: 6},
				{Kind: config.PrincipalUID, UID: 0, Text: "uid:0", Line: 7},
			},
		}},
		Files: []string{mainFile},
	}
}
