// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Frame builders for tests that need packets the stack would not make.

var (
	clientMAC = []byte{2, 0, 0, 0, 0, 1}
	serverMAC = []byte{2, 0, 0, 0, 0, 2}
)

const (
	ethIPv4   = 0x0800
	ethIPv6   = 0x86dd
	ethARP    = 0x0806
	eth8021Q  = 0x8100
	eth8021AD = 0x88a8
)

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// eth builds an Ethernet header; tags are VLAN (TPID, VID) pairs, outermost first.
func eth(ethertype uint16, tags ...[2]uint16) []byte {
	h := cat(serverMAC, clientMAC)
	for _, tag := range tags {
		h = cat(h, be16(tag[0]), be16(tag[1]))
	}
	return cat(h, be16(ethertype))
}

func udp(sport, dport uint16, payload []byte) []byte {
	return cat(be16(sport), be16(dport), be16(uint16(8+len(payload))), be16(0), payload)
}

func ipv4(src, dst netip.Addr, proto byte, payload []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[8] = 64
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
	return cat(h, payload)
}

// ipv6 builds an IPv6 header; ext are extension headers already chained
// (each starting with its next-header byte), next is the first header after
// the fixed one.
func ipv6(src, dst netip.Addr, next byte, payload []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6] = next
	h[7] = 64
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return cat(h, payload)
}

// srh builds a segment routing header (type 4) whose segment list is
// segs (segs[0] is the final destination).
func srh(next byte, segsLeft byte, segs ...netip.Addr) []byte {
	h := []byte{next, byte(2 * len(segs)), 4, segsLeft, byte(len(segs) - 1), 0, 0, 0}
	for _, s := range segs {
		b := s.As16()
		h = append(h, b[:]...)
	}
	return h
}

// ext builds a generic 8-byte extension header (hop-by-hop or destination
// options with padding).
func ext(next byte) []byte { return []byte{next, 0, 1, 4, 0, 0, 0, 0} }

func fragHdr(next byte, offset uint16, more bool) []byte {
	v := offset << 3
	if more {
		v |= 1
	}
	return cat([]byte{next, 0}, be16(v), []byte{0, 0, 0, 1})
}
