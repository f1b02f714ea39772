// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// An answer crosses from the agent as a line of text: what comes back is
// what was sent.
func TestAnswerRoundTrip(t *testing.T) {
	for _, a := range []Answer{
		{},
		{Errno: unix.EHOSTUNREACH, Elapsed: 57 * time.Microsecond},
		{Errno: unix.EACCES, Queued: true, Origin: 3, Type: 1, Code: 1, Offender: netip.MustParseAddr("fd00:ec2::254"), Elapsed: time.Second},
		{Errno: unix.EHOSTUNREACH, Queued: true, Origin: 2, Type: 3, Code: 13, Offender: netip.MustParseAddr("169.254.169.254")},
	} {
		line := a.encode()
		got, err := parseAnswer(line[len("ok "):])
		if err != nil || got != a {
			t.Errorf("%q: %+v, %v; want %+v", line, got, err, a)
		}
	}
	if _, err := parseAnswer("garbage"); err == nil {
		t.Error("parseAnswer(garbage): no error")
	}
}

// sock_extended_err as the kernel lays it out, with the offender's
// sockaddr behind it.
func TestParseExtendedErr(t *testing.T) {
	ee := func(errno uint32, origin, typ, code byte, off []byte) []byte {
		b := binary.NativeEndian.AppendUint32(nil, errno)
		b = append(b, origin, typ, code, 0)
		b = append(b, make([]byte, 8)...) // ee_info, ee_data
		return append(b, off...)
	}
	sin := binary.NativeEndian.AppendUint16(nil, unix.AF_INET)
	sin = append(sin, 0, 0, 169, 254, 169, 254)
	sin6 := binary.NativeEndian.AppendUint16(nil, unix.AF_INET6)
	sin6 = append(sin6, make([]byte, 6)...)
	a6 := netip.MustParseAddr("fd00:ec2::254").As16()
	sin6 = append(sin6, a6[:]...)
	tests := []struct {
		name string
		data []byte
		want Answer
		ok   bool
	}{
		{"icmp", ee(uint32(unix.EHOSTUNREACH), 2, 3, 13, sin), Answer{Errno: unix.EHOSTUNREACH, Queued: true, Origin: 2, Type: 3, Code: 13, Offender: netip.MustParseAddr("169.254.169.254")}, true},
		{"icmp6", ee(uint32(unix.EACCES), 3, 1, 1, sin6), Answer{Errno: unix.EACCES, Queued: true, Origin: 3, Type: 1, Code: 1, Offender: netip.MustParseAddr("fd00:ec2::254")}, true},
		{"no offender", ee(uint32(unix.EHOSTUNREACH), 2, 3, 13, nil), Answer{Errno: unix.EHOSTUNREACH, Queued: true, Origin: 2, Type: 3, Code: 13}, true},
		{"cut short", []byte{1, 2, 3}, Answer{}, false},
	}
	for _, tt := range tests {
		got, ok, err := parseExtendedErr(tt.data)
		if ok != tt.ok || got != tt.want || (err == nil) != tt.ok {
			t.Errorf("%s: %+v %v %v, want %+v %v", tt.name, got, ok, err, tt.want, tt.ok)
		}
	}
}
