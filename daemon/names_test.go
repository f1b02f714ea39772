// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// SPEC §1 "Failing closed": a user or group name that does not resolve
// makes the daemon neither refuse to start nor keep stale access. These
// tests use real accounts (useradd, groupadd, userdel) and real traffic
// from the uids they name.

// addUser creates user name with uid (and its private group), removed
// when the test ends.
func addUser(t *testing.T, name string, uid int) {
	t.Helper()
	exec.Command("userdel", "-f", name).Run()
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		t.Fatalf("uid %d is taken by %s on this machine; the test needs it free", uid, u.Username)
	}
	testnet.Run(t, "useradd", "--no-create-home", "--uid", strconv.Itoa(uid), "--user-group", name)
	// -f: the test's agent may still run as the user.
	t.Cleanup(func() { exec.Command("userdel", "-f", name).Run() })
}

// noGroup makes sure group name does not exist, and that it is removed
// again when the test ends (the test creates it).
func noGroup(t *testing.T, name string) {
	t.Helper()
	exec.Command("groupdel", name).Run()
	if _, err := user.LookupGroup(name); err == nil {
		t.Fatalf("group %s exists and cannot be removed", name)
	}
	t.Cleanup(func() { exec.Command("groupdel", name).Run() })
}

func degraded(s string) bool { return strings.Contains(s, "; degraded: ") }

// A group that does not exist yet (LDAP not up at boot, or created
// later): the daemon starts, enforces the rest, says it is degraded and
// why; an unrelated reload does not clear that; once the group exists
// with bob in it, bob is allowed without any command.
func TestUnresolvedGroupAtStart(t *testing.T) {
	testnet.RequireRoot(t)
	name := "ntft-" + strconv.Itoa(bob)
	group := name + "-late"
	addUser(t, name, bob)
	noGroup(t, group)
	const metricsAddr = "127.0.0.1:9965"
	b := newBed(t, policyYAML([]string{"uid:1001", "group:" + group}, "")+"metrics: {listen: \""+metricsAddr+"\"}\n")
	d := b.start(t, testnet.DaemonOptions{})
	s := statusOf(d.Ready)
	if !strings.HasPrefix(s, "enforcing 2 ranges for 1 users on eth0") || !strings.Contains(s, "; degraded: 1 user/group name matches no one: group:"+group+" ("+b.main+":5) does not exist") {
		t.Errorf("STATUS= at start: %q", s)
	}
	// Logged before READY=1, but read from the daemon's stderr on a
	// goroutine of its own, which may not have caught up yet.
	d.WaitLog(t, "degraded: user and group names that do not resolve match no one", 5*time.Second)
	d.WaitLog(t, "group:"+group+" ("+b.main+":5) does not exist", 5*time.Second)
	b.expect(t, b.alice, allowed)
	b.expect(t, b.bob, denied)
	m := scrape(t, b.tp.Client, metricsAddr)
	if m.get(t, `net_tc_filter_state{state="degraded"}`) != 1 {
		t.Errorf("metrics state is not degraded: %v", m.keys("net_tc_filter_state"))
	}

	// A reload that succeeds does not make the name resolve.
	d.Signal(syscall.SIGHUP)
	if s := b.reloaded(t); !degraded(s) || strings.Contains(s, "failed") {
		t.Errorf("STATUS= after SIGHUP while the group is missing: %q", s)
	}

	testnet.Run(t, "groupadd", group)
	testnet.Run(t, "gpasswd", "-a", name, group)
	// groupadd makes an empty group, which resolves: no longer degraded,
	// but only gpasswd brings bob in.
	s = waitStatus(t, d, "with 2 users", func(s string) bool { return strings.Contains(s, " for 2 users ") })
	if degraded(s) {
		t.Errorf("STATUS= once the group exists: %q", s)
	}
	d.WaitLog(t, "every user and group name of the policy resolves again", 5*time.Second)
	b.expect(t, b.bob, allowed)
	b.expect(t, b.alice, allowed)
	scrapeUntil(t, b.tp.Client, metricsAddr, "state running", func(m samples) bool {
		return m[`net_tc_filter_state{state="running"}`] == 1
	})
}

// userdel: the deleted user's uid loses its access at once, and a new
// user given the same uid gets none.
func TestDeletedUserLosesAccess(t *testing.T) {
	testnet.RequireRoot(t)
	carol := "ntft-" + strconv.Itoa(bob)
	dave := carol + "-new"
	addUser(t, carol, bob)
	exec.Command("userdel", "-f", dave).Run()
	t.Cleanup(func() { exec.Command("userdel", "-f", dave).Run() })
	b := newBed(t, policyYAML([]string{"uid:1001", carol}, ""))
	d := b.start(t, testnet.DaemonOptions{})
	if s := statusOf(d.Ready); degraded(s) {
		t.Fatalf("STATUS= at start: %q", s)
	}
	b.expect(t, b.bob, allowed)

	testnet.Run(t, "userdel", "-f", carol)
	s := waitStatus(t, d, "degraded", degraded)
	if !strings.Contains(s, carol+" ("+b.main+":5) does not exist") || strings.Contains(s, "failed") {
		t.Errorf("STATUS= after userdel: %q", s)
	}
	b.expect(t, b.bob, denied)
	b.expect(t, b.alice, allowed)

	testnet.Run(t, "useradd", "--no-create-home", "--uid", strconv.Itoa(bob), "--user-group", dave)
	s = b.reloaded(t) // the watcher's reload for /etc/passwd
	if !degraded(s) {
		t.Errorf("STATUS= after useradd of another name: %q", s)
	}
	b.expect(t, b.bob, denied)
	b.expect(t, b.alice, allowed)
}

// Names are resolved again every --resolve-interval without any file
// event, for NSS sources that have no file to watch (LDAP, SSSD). The
// daemon runs in a mount namespace of its own, where /etc/group is a copy
// bound over the real one: writing the copy changes what NSS answers in
// there, and the watcher, which watches /etc, sees nothing.
func TestNamesResolvedPeriodically(t *testing.T) {
	testnet.RequireRoot(t)
	name := "ntft-" + strconv.Itoa(bob)
	group := name + "-ldap"
	addUser(t, name, bob)
	noGroup(t, group)
	groups := filepath.Join(t.TempDir(), "group")
	data, err := os.ReadFile("/etc/group")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, groups, string(data))
	wrap := []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		`mount --bind "$1" /etc/group && shift && exec "$@"`, "sh", groups}

	b := newBed(t, policyYAML([]string{"uid:1001", "group:" + group}, ""))
	d := b.start(t, testnet.DaemonOptions{Wrap: wrap, Args: []string{"--resolve-interval", "500ms"}})
	if s := statusOf(d.Ready); !degraded(s) {
		t.Fatalf("STATUS= at start: %q", s)
	}
	b.expect(t, b.bob, denied)

	// In place: the bind mount holds this inode.
	f, err := os.OpenFile(groups, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(group + ":x:64999:" + name + "\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s := waitStatus(t, d, "without degraded", func(s string) bool { return !degraded(s) })
	if !strings.HasPrefix(s, "enforcing 2 ranges for 2 users on eth0") {
		t.Errorf("STATUS= once the group resolves: %q", s)
	}
	b.expect(t, b.bob, allowed)
	d.WaitLog(t, "user and group names resolved again", 5*time.Second)
	if log := d.Log(); !strings.Contains(log, "resolving user and group names every 500ms") || strings.Contains(log, "changed: ") {
		t.Errorf("the change went live otherwise than by the periodic resolution:\n%s", log)
	}
}

// hungNSS is NSS with a backend that hangs rather than fails (sssd or
// nslcd stuck: their clients wait minutes): every lookup waits until the
// test ends.
type hungNSS struct{ release chan struct{} }

func (r hungNSS) User(name string) (uint32, error) {
	<-r.release
	return 0, fmt.Errorf("%w user %q", policy.ErrUnknown, name)
}

func (r hungNSS) Group(name string) ([]uint32, error) {
	<-r.release
	return nil, fmt.Errorf("%w group %q", policy.ErrUnknown, name)
}

// A hung NSS holds neither the start (whose filter is not attached yet)
// nor a reload (on the goroutine the watchdog pings from) for longer than
// policy.LookupBudget: the names it does not answer match no one, the
// service says why and is degraded. The service runs in this process, with
// the hung resolver, on an interface name that no interface has: the
// program is loaded and attached nowhere.
func TestNamesHungNSS(t *testing.T) {
	testnet.RequireRoot(t)
	r := hungNSS{release: make(chan struct{})}
	// After Run: the lookups left behind end.
	svc, ctx, main := runInProcess(t, "endpoints:\n  - x:\n      iface: [ntft-none0]\n      range: [192.0.2.7/32]\n      allow: [uid:7, someone, group:ldap-readers]\non_stop: keep\n",
		r, time.Hour, func() { close(r.release) })
	// Generous for a loaded CI machine; without the budget, never.
	bound := policy.LookupBudget + netlab.Slowed(10*time.Second)
	want := []string{
		"someone (" + main + ":5) NSS lookup timed out after " + policy.LookupBudget.String(),
		"group:ldap-readers (" + main + ":5) NSS lookup not attempted: NSS did not answer within " + policy.LookupBudget.String(),
	}
	deadline := time.Now().Add(bound)
	for svc.Status().State == StateStarting {
		if time.Now().After(deadline) {
			t.Fatalf("not started %s after Run with NSS hung: %+v", bound, svc.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := svc.Status()
	if st.State != StateDegraded || !slices.Equal(st.Unresolved, want) || st.Users != 1 || !degraded(st.Summary) {
		t.Errorf("started with NSS hung: state %s, unresolved %q, %d users; want degraded, %q, 1 user", st.State, st.Unresolved, st.Users, want)
	}

	rctx, rcancel := context.WithTimeout(ctx, bound)
	defer rcancel()
	// A reload that applies: the files changed (another range).
	writeFile(t, main, "endpoints:\n  - x:\n      iface: [ntft-none0]\n      range: [192.0.2.7/32, 192.0.2.8/32]\n      allow: [uid:7, someone, group:ldap-readers]\non_stop: keep\n")
	gen, err := svc.Reload(rctx)
	if err != nil {
		t.Fatalf("Reload with NSS hung: %v", err)
	}
	st = svc.Status()
	if st.Generation != gen || st.Ranges != 2 || st.State != StateDegraded || !slices.Equal(st.Unresolved, want) {
		t.Errorf("after the reload: generation %d (reload made %d), %d ranges, state %s, unresolved %q", st.Generation, gen, st.Ranges, st.State, st.Unresolved)
	}
}

// gatedNSS answers from a table that the test changes (userdel), as the
// table was when a lookup began; while gated, each lookup then waits for
// the test to let it answer.
type gatedNSS struct {
	mu      sync.Mutex
	users   map[string]uint32
	gated   bool
	began   chan struct{} // a gated lookup began
	proceed chan struct{} // let it answer
}

func (r *gatedNSS) User(name string) (uint32, error) {
	r.mu.Lock()
	uid, ok := r.users[name]
	gated := r.gated
	r.mu.Unlock()
	if gated {
		r.began <- struct{}{}
		<-r.proceed
	}
	if !ok {
		return 0, fmt.Errorf("%w user %q", policy.ErrUnknown, name)
	}
	return uid, nil
}

func (r *gatedNSS) Group(name string) ([]uint32, error) {
	return nil, fmt.Errorf("%w group %q", policy.ErrUnknown, name)
}

// A resolution asked for while another runs is not dropped: the running
// one may have asked NSS before a userdel, and the request came after it
// (the watcher's failed reload for /etc/passwd). Once the stale answer is
// taken, another resolution runs, and carol matches no one.
func TestResolutionAskedWhileRunning(t *testing.T) {
	main := filepath.Join(t.TempDir(), "net-tc-filter.yml")
	writeFile(t, main, "endpoints:\n  - x:\n      iface: [eth0]\n      range: [192.0.2.7/32]\n      allow: [uid:7, carol]\n")
	r := &gatedNSS{users: map[string]uint32{"carol": 1005}, began: make(chan struct{}), proceed: make(chan struct{})}
	_, live, err := load(main, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	carolAllowed := func(p *policy.Policy) bool {
		return slices.Contains(p.Endpoints[0].Principals.UIDs, 1005)
	}
	if !carolAllowed(live) {
		t.Fatalf("carol not allowed at first: %+v", live.Endpoints[0].Principals)
	}
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(policy.LookupBudget / 2):
			t.Fatalf("no %s", what)
		}
	}
	r.mu.Lock()
	r.gated = true
	r.mu.Unlock()
	defer close(r.proceed) // lookups still gated when the test fails end

	res := newResolutions(r)
	res.start(live, "every 30s")
	wait("lookup for the first resolution", r.began) // NSS read carol's entry
	r.mu.Lock()
	delete(r.users, "carol") // userdel carol
	r.mu.Unlock()
	res.start(live, "the set could not be reloaded") // while the first runs
	r.proceed <- struct{}{}

	var stale resolution
	select {
	case stale = <-res.answers:
	case <-time.After(policy.LookupBudget / 2):
		t.Fatal("no answer from the first resolution")
	}
	if !carolAllowed(stale.next) || stale.why != "every 30s" {
		t.Fatalf("the first resolution (from before userdel): %+v, %q", stale.next.Endpoints[0].Principals, stale.why)
	}
	// Run applies it (its base is the live policy) and starts again.
	again := res.done()
	if again != "the set could not be reloaded" {
		t.Fatalf("done says %q; the request made during the first resolution is lost", again)
	}
	live = stale.next
	res.start(live, again)
	wait("second resolution", r.began)
	r.proceed <- struct{}{}
	select {
	case fresh := <-res.answers:
		if carolAllowed(fresh.next) || len(fresh.next.Unresolved) != 1 || fresh.next.Unresolved[0].Principal != "carol" || fresh.why != again {
			t.Errorf("the second resolution: %+v, unresolved %v, %q", fresh.next.Endpoints[0].Principals, fresh.next.Unresolved, fresh.why)
		}
	case <-time.After(policy.LookupBudget / 2):
		t.Fatal("no answer from the second resolution")
	}
	if again := res.done(); again != "" {
		t.Errorf("done after the second resolution says %q; nothing was asked for meanwhile", again)
	}
}
