// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"bufio"
	"strings"
	"testing"
)

func TestSNMPField(t *testing.T) {
	const snmp = `Ip: Forwarding DefaultTTL
Ip: 1 64
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors
Udp: 10 2 7 4 5 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors
UdpLite: 0 0 0 0 99 0
`
	for _, tc := range []struct {
		group, field string
		want         uint64
		err          bool
	}{
		{"Udp:", "RcvbufErrors", 5, false},
		{"Udp:", "InErrors", 7, false},
		{"UdpLite:", "RcvbufErrors", 99, false},
		{"Ip:", "RcvbufErrors", 0, true},
		{"Tcp:", "RcvbufErrors", 0, true},
	} {
		got, err := snmpField(bufio.NewScanner(strings.NewReader(snmp)), tc.group, tc.field)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%s %s: got %d, %v; want %d (error %v)", tc.group, tc.field, got, err, tc.want, tc.err)
		}
	}
}
