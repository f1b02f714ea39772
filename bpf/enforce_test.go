// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

const port = 80

var (
	imds4 = netip.MustParseAddr("169.254.169.254")
	imds6 = netip.MustParseAddr("fd00:ec2::254")
	other = netip.MustParseAddr("203.0.113.9")
)

type probe struct {
	who     string // agent: "alice" (1001), "bob" (1002), "carol" (1003), "nobody", "root", "container"
	dst     netip.Addr
	allowed bool
}

// TestEnforce sends real TCP and UDP traffic, IPv4 and IPv6, from processes
// running as different uids and checks each verdict, in both attach modes
// (on a kernel without tcx, the tcx subtest asserts that it is refused).
func TestEnforce(t *testing.T) {
	eachMode(t, testEnforce)
}

func testEnforce(t *testing.T, mode Mode) {
	tp := testnet.NewTopology(t, testnet.Options{Container: true, Tun: true})
	tp.ServeTCP(t, port)
	tp.ServeUDPEcho(t, port)
	agents := map[string]*testnet.Agent{
		"alice":     testnet.StartAgent(t, tp.Client, 1001),
		"bob":       testnet.StartAgent(t, tp.Client, 1002),
		"carol":     testnet.StartAgent(t, tp.Client, 1003),
		"nobody":    testnet.StartAgent(t, tp.Client, 65534),
		"root":      testnet.StartAgent(t, tp.Client, 0),
		"container": testnet.StartAgent(t, tp.Container, 0),
	}
	f := openFilter(t, tp.Client, mode)
	deny := map[string]config.Action{"eth0": config.Deny}
	allow := map[string]config.Action{"eth0": config.Allow}
	imds := ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32", "fd00:ec2::254/128"}, []string{"alice"}}

	cases := []struct {
		name     string
		defaults map[string]config.Action
		eps      []ep
		probes   []probe
	}{{
		name: "only the agent's user reaches the metadata service",
		eps:  []ep{imds},
		probes: []probe{
			{"alice", imds4, true}, {"alice", imds6, true},
			{"bob", imds4, false}, {"bob", imds6, false},
			{"root", imds4, false}, {"container", imds4, false},
			{"alice", other, false}, // default deny outside the ranges
			{"alice", netip.MustParseAddr("::ffff:169.254.169.254"), true},
			{"bob", netip.MustParseAddr("::ffff:169.254.169.254"), false},
		},
	}, {
		name:     "default allow restricts only the listed ranges",
		defaults: allow,
		eps:      []ep{imds},
		probes: []probe{
			{"bob", other, true}, {"bob", netip.MustParseAddr("2001:db8::9"), true},
			{"bob", imds4, false}, {"alice", imds4, true}, {"container", other, true},
		},
	}, {
		name:     "longest prefix carves out",
		defaults: deny,
		eps: []ep{
			{"wide", []string{"eth0"}, []string{"10.10.0.0/16", "fd00:10::/32"}, []string{"*"}},
			{"narrow", []string{"eth0"}, []string{"10.10.5.0/24", "fd00:10:5::/48"}, []string{"bob"}},
			{"host", []string{"eth0"}, []string{"10.10.5.7/32"}, []string{"alice"}},
		},
		probes: []probe{
			{"alice", netip.MustParseAddr("10.10.1.1"), true},
			{"alice", netip.MustParseAddr("10.10.5.5"), false},
			{"bob", netip.MustParseAddr("10.10.5.5"), true},
			{"alice", netip.MustParseAddr("10.10.5.7"), true},
			{"bob", netip.MustParseAddr("10.10.5.7"), false},
			{"alice", netip.MustParseAddr("fd00:10:1::1"), true},
			{"alice", netip.MustParseAddr("fd00:10:5::1"), false},
			{"bob", netip.MustParseAddr("fd00:10:5::1"), true},
			{"container", netip.MustParseAddr("10.10.1.1"), false}, // "*" never means unowned
		},
	}, {
		name: "same prefix in two endpoints merges principals; groups expand",
		eps: []ep{
			{"a", []string{"eth0"}, []string{"169.254.169.254/32"}, []string{"bob"}},
			{"b", []string{"eth0"}, []string{"169.254.169.254/32"}, []string{"group:imds"}},
		},
		probes: []probe{
			{"bob", imds4, true}, {"alice", imds4, true}, {"carol", imds4, true},
			{"nobody", imds4, false}, {"root", imds4, false},
		},
	}, {
		name: "unowned is forwarded traffic; nobody is a user like any other",
		eps: []ep{
			{"fwd", []string{"eth0"}, []string{"169.254.169.254/32", "fd00:ec2::254/128"}, []string{"unowned", "nobody"}},
		},
		probes: []probe{
			{"container", imds4, true}, {"container", imds6, true},
			{"nobody", imds4, true}, {"alice", imds4, false},
			{"container", other, false},
		},
	}}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defaults := c.defaults
			if defaults == nil {
				defaults = deny
			}
			apply(t, tp.Client, f, compile(t, defaults, c.eps...), LogAll)
			if got := attachedNames(f); !slices.Equal(got, []string{"eth0/" + string(mode)}) {
				t.Fatalf("attached: %v", got)
			}
			for _, p := range c.probes {
				testnet.Expect(t, agents[p.who], p.dst, port, p.allowed)
			}
		})
	}

	t.Run("vlan tags", func(t *testing.T) {
		// This kernel has no 8021q driver, so tagged frames are written by a
		// packet socket, as root; the server's side shows what got through.
		seen := testnet.Capture(t, tp.Server, "eth0")
		payload := func(marker string) []byte {
			return udp(40000, port, []byte(marker))
		}
		frames := map[string]func(marker string) []byte{
			"802.1Q IPv4": func(m string) []byte {
				return cat(eth(ethIPv4, [2]uint16{eth8021Q, 100}), ipv4(tp.Client4, imds4, 17, payload(m)))
			},
			"802.1ad+802.1Q IPv4": func(m string) []byte {
				return cat(eth(ethIPv4, [2]uint16{eth8021AD, 200}, [2]uint16{eth8021Q, 100}), ipv4(tp.Client4, imds4, 17, payload(m)))
			},
			"802.1Q IPv6": func(m string) []byte {
				return cat(eth(ethIPv6, [2]uint16{eth8021Q, 100}), ipv6(tp.Client6, imds6, 17, payload(m)))
			},
		}
		for _, rootAllowed := range []bool{false, true} {
			allowList := []string{"alice"}
			if rootAllowed {
				allowList = append(allowList, "root")
			}
			apply(t, tp.Client, f, compile(t, deny, ep{"imds", []string{"eth0"},
				[]string{"169.254.169.254/32", "fd00:ec2::254/128"}, allowList}), LogAll)
			for name, frame := range frames {
				marker := fmt.Sprintf("%s root-allowed=%t", name, rootAllowed)
				err := agents["root"].SendRaw("eth0", frame(marker))
				if rootAllowed && err != nil || !rootAllowed && !errors.Is(err, testnet.ErrDropped) {
					t.Errorf("%s: send: %v", marker, err)
				}
				if got := arrived(seen, marker); got != rootAllowed {
					t.Errorf("%s: arrived %t, want %t", marker, got, rootAllowed)
				}
			}
		}
	})

	var sentMalformed uint64 // by the l3 test; real traffic is never malformed
	t.Run("l3 device", func(t *testing.T) {
		tp.Client.IP(t, "route", "replace", "169.254.169.254/32", "dev", "tun0")
		t.Cleanup(func() { tp.Client.IP(t, "route", "del", "169.254.169.254/32") })
		onTun := ep{"imds", []string{"tun0"}, []string{"169.254.169.254/32"}, []string{"alice"}}
		apply(t, tp.Client, f, compile(t, nil, onTun), LogAll)
		if got := attachedNames(f); !slices.Equal(got, []string{"tun0/" + string(mode)}) {
			t.Fatalf("attached: %v", got)
		}
		for _, who := range []string{"alice", "bob", "alice", "bob"} {
			sport, err := agents[who].Send(imds4, port)
			if err != nil {
				t.Fatal(err)
			}
			want := who == "alice"
			got := arrivedFrom(tp.Tun, func(p []byte) bool {
				return len(p) >= 24 && p[0]>>4 == 4 && binary.BigEndian.Uint16(p[20:]) == sport
			})
			if got != want {
				t.Errorf("%s over tun0: arrived %t, want %t", who, got, want)
			}
		}

		// What is IP on tun0 is the packet's protocol, not its first
		// byte: the same bytes (IPv4 from root to metadata, which root
		// may not reach) pass as another protocol, are denied as IPv4,
		// and broken IPv4 is dropped as malformed.
		pkt := ipv4(tp.Client4, imds4, 17, udp(40001, port, []byte("raw on tun0")))
		broken := bytes.Clone(pkt)
		broken[0] = 0x44 // IHL 4
		before, err := f.Counters()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name    string
			proto   uint16
			pkt     []byte
			arrives bool
		}{
			{"protocol 0x88b5 starting with 0x45", 0x88b5, pkt, true},
			{"protocol IPv4", ethIPv4, pkt, false},
			{"protocol IPv4, IHL 4", ethIPv4, broken, false},
		} {
			err := sendOnTun(tp.Client, "tun0", c.proto, c.pkt)
			if c.arrives && err != nil || !c.arrives && !errors.Is(err, unix.ENOBUFS) {
				t.Errorf("%s: send: %v", c.name, err)
			}
			got := arrivedFrom(tp.Tun, func(p []byte) bool { return bytes.Equal(p, c.pkt) })
			if got != c.arrives {
				t.Errorf("%s over tun0: arrived %t, want %t", c.name, got, c.arrives)
			}
		}
		after, err := f.Counters()
		if err != nil {
			t.Fatal(err)
		}
		d := Counters{NotIP: after.NotIP - before.NotIP, Malformed: after.Malformed - before.Malformed}
		if d != (Counters{NotIP: 1, Malformed: 1}) {
			t.Errorf("raw packets on tun0 counted %+v, want one not IP, one malformed", d)
		}
		sentMalformed = d.Malformed
	})

	c, err := f.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Allowed == 0 || c.Denied == 0 || c.Malformed != sentMalformed || c.NoPolicy != 0 {
		t.Errorf("counters: %+v", c)
	}
}

// sendOnTun sends pkt out of the L3 device iface in ns from a packet socket
// that gives it protocol proto: for what the stack would not send there.
func sendOnTun(ns *testnet.NS, iface string, proto uint16, pkt []byte) error {
	return ns.Do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, pkt, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(proto)})
	})
}

func htons(v uint16) uint16 { return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v)) }

// arrived waits briefly for a frame carrying marker.
func arrived(ch <-chan []byte, marker string) bool {
	return arrivedFrom(ch, func(p []byte) bool { return bytes.Contains(p, []byte(marker)) })
}

func arrivedFrom(ch <-chan []byte, match func([]byte) bool) bool {
	deadline := time.After(testnet.DenyTimeout)
	for {
		select {
		case p := <-ch:
			if match(p) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}
