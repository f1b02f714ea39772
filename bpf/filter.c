//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only
//
// net-tc-filter: tc egress classifier that decides by the owner of the
// sending socket. The policy lives in map-in-map slots so that user space can
// build a whole new policy beside the live one and switch with one write to
// `active`: every packet is judged wholly by one slot.

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "filter.h"

char __license[] SEC("license") = "GPL";

// Inner map templates. Key and value sizes are given as numbers because
// clang 14 leaves struct-typed keys of templates unsized in BTF.
struct ifaces_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NTF_MAX_IFACES);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct ntf_iface));
};

struct ranges_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct ntf_range_key));
	__uint(value_size, sizeof(struct ntf_range));
	__uint(map_flags, BPF_F_NO_PREALLOC);
};

struct owners_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct ntf_owner_key));
	__uint(value_size, sizeof(__u8));
};

// Slot-indexed policy parts. A slot is written only while no running program
// can still be using it (user space waits a grace period after each flip).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, NTF_SLOTS);
	__type(key, __u32);
	__array(values, struct ifaces_inner);
} ntf_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, NTF_SLOTS);
	__type(key, __u32);
	__array(values, struct ranges_inner);
} ntf_ranges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, NTF_SLOTS);
	__type(key, __u32);
	__array(values, struct owners_inner);
} ntf_owners SEC(".maps");

// [0]: the slot in force; [1]: its generation, for user space after a restart.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} ntf_active SEC(".maps");

// Epoch of each slot's policy, never reused: cache entries made from a
// slot's policy are valid while the slot's epoch is theirs. A slot's epoch is
// written with its policy, before the slot goes live. 0: no caching.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NTF_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} ntf_epoch SEC(".maps");

// Direct-mapped per-CPU caches: most packets go to a few destinations from a
// few owners, so the policy's hash and trie lookups are paid once per
// (destination, owner) and CPU, not per packet.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NTF_IFACE_CACHE);
	__type(key, __u32);
	__type(value, struct ntf_iface_entry);
} ntf_iface_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NTF_VERDICT_CACHE);
	__type(key, __u32);
	__type(value, struct ntf_verdict_entry);
} ntf_verdict_cache SEC(".maps");

// Set by benchmarks to measure the uncached path.
volatile const __u8 ntf_nocache = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NTF_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ntf_counters SEC(".maps");

// Allowed and denied packets per interface and per endpoint, at
// [counter*2 + allowed]; user space knows which counter is whose.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NTF_MAX_COUNTERS * 2);
	__type(key, __u32);
	__type(value, __u64);
} ntf_iface_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NTF_MAX_COUNTERS * 2);
	__type(key, __u32);
	__type(value, __u64);
} ntf_endpoint_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, NTF_RINGBUF_BYTES);
} ntf_events SEC(".maps");

// Interfaces whose clsact qdisc this program's loader created (legacy attach),
// so that detaching never removes a qdisc somebody else owns. Unused here.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NTF_MAX_IFACES);
	__type(key, __u32);
	__type(value, __u8);
} ntf_clsact SEC(".maps");

// Make the shared structs visible in BTF so bpf2go emits their Go twins.
const struct ntf_event *unused_event __attribute__((unused));
const struct ntf_iface *unused_iface __attribute__((unused));
const struct ntf_range_key *unused_range_key __attribute__((unused));
const struct ntf_range *unused_range __attribute__((unused));
const struct ntf_owner_key *unused_owner_key __attribute__((unused));
const enum ntf_counter *unused_counter __attribute__((unused));
const enum ntf_range_flags *unused_range_flags __attribute__((unused));
const enum ntf_log *unused_log __attribute__((unused));
const struct ntf_verdict_entry *unused_verdict_entry __attribute__((unused));

// The kernel's view of a socket's owner, as far as reading it needs (CO-RE:
// offsets come from the running kernel's BTF).
struct user_namespace___ntf {
	int level; // 0: the initial user namespace
} __attribute__((preserve_access_index));

struct net___ntf {
	struct user_namespace___ntf *user_ns;
} __attribute__((preserve_access_index));

struct sock_common___ntf {
	struct {
		struct net___ntf *net;
	} skc_net;
} __attribute__((preserve_access_index));

struct sock___ntf {
	struct sock_common___ntf __sk_common;
	struct {
		__u32 val;
	} sk_uid;
} __attribute__((preserve_access_index));

// Kernels from 6.2 on; on older ones the loader makes this NULL.
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

// socket_uid is bpf_get_socket_uid() without the helper call, which is the
// dearest step on a CPU whose returns are mitigated (SRSO): it reads the
// owner straight from the full socket when the socket's network namespace
// belongs to the initial user namespace, where the helper's uid mapping is
// the identity. Request sockets (SYN-ACKs) and other user namespaces go
// through the helper, which answers for the listener and maps the uid.
static __always_inline __u32 socket_uid(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	if (sk && &bpf_rdonly_cast != NULL && sk->state != BPF_TCP_NEW_SYN_RECV) {
		struct sock___ntf *ks = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct sock___ntf));
		if (ks->__sk_common.skc_net.net->user_ns->level == 0)
			return ks->sk_uid.val;
	}
	return bpf_get_socket_uid(skb);
}

static __always_inline void count_in(void *map, __u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(map, &idx);
	if (c)
		*c += 1;
}

static __always_inline void count(__u32 idx)
{
	count_in(&ntf_counters, idx);
}

#define barrier() asm volatile("" ::: "memory")
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

// claim takes a cache entry for writing when nothing wrote it since its
// sequence count was read as seq (even). Readers skip an entry while its
// count is odd; a nested writer that got in first makes the claim fail.
static __always_inline bool claim(__u32 *seqp, __u32 seq)
{
	return !(seq & 1) && __sync_val_compare_and_swap(seqp, seq, seq + 1) == seq;
}

static __always_inline void release(__u32 *seqp, __u32 seq)
{
	barrier();
	WRITE_ONCE(*seqp, seq + 2);
}

struct verdict {
	__u32 rule;    // 0: no range matched, the interface default decided
	__u32 counter; // endpoint counter
	__u8 allowed;
};

// lookup_range finds the longest configured prefix containing addr in the
// table: what it means for owned and unowned packets, and the owner set to
// check when the uid matters.
static __always_inline void lookup_range(void *ranges, const struct ntf_iface *ifc, __u32 table,
					 const __u32 *addr, __u32 bits, struct ntf_verdict_entry *out)
{
	struct ntf_range_key key = {.prefixlen = 32 + bits, .table = table};
	__builtin_memcpy(key.addr, addr, 16);

	struct ntf_range *r = bpf_map_lookup_elem(ranges, &key);
	if (!r) {
		out->rule = 0;
		out->counter = 0;
		out->owners = 0;
		out->owned = ifc->default_allow;
		out->unowned = ifc->default_allow;
		return;
	}
	out->rule = r->rule;
	out->counter = r->counter;
	out->unowned = !!(r->flags & NTF_RANGE_UNOWNED);
	out->owned = !!(r->flags & NTF_RANGE_EVERYONE);
	out->owners = out->owned ? 0 : r->owners;
}

// v4mapped turns ::ffff:a.b.c.d into a.b.c.d in place.
static __always_inline bool v4mapped(__u32 *w)
{
	if (w[0] != 0 || w[1] != 0 || w[2] != bpf_htonl(0x0000ffff))
		return false;
	w[0] = w[3];
	w[1] = w[2] = w[3] = 0;
	return true;
}

struct pkt {
	// Addresses first and word-sized so they can be read as words.
	__u32 src[4];
	__u32 dst[4];
	__u32 final[4]; // IPv6 routing header's final destination
	__u16 sport, dport;
	__u8 family; // 4 or 6, after IPv4-mapped destinations are unmapped
	__u8 proto;
	bool has_final;
	bool final_v4;
};

enum parse_result {
	PARSE_OK,
	PARSE_NOT_IP,
	PARSE_MALFORMED,
};

static __always_inline void load_ports(struct __sk_buff *skb, struct pkt *p, __u32 off)
{
	__u16 ports[2];
	switch (p->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
		if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) == 0) {
			p->sport = bpf_ntohs(ports[0]);
			p->dport = bpf_ntohs(ports[1]);
		}
	}
}

#define SRCRT_FOUND (1ULL << 32)
#define SRCRT_MALFORMED (2ULL << 32)

struct srcrt {
	__u8 opts[64];
	__u32 at;
	__u32 len;
	__u64 result; // 0 (none), SRCRT_MALFORMED, or SRCRT_FOUND | address
};

// srcrt_step reads the option at s->at; bpf_loop has the verifier check it
// once instead of once per possible option layout.
static long srcrt_step(__u32 n, void *data)
{
	struct srcrt *s = data;
	__u32 i = s->at;
	if (i >= s->len)
		return 1;
	__u8 type = s->opts[i & 63];
	if (type == 0) // end of options
		return 1;
	if (type == 1) { // no-op
		s->at = i + 1;
		return 0;
	}
	__u32 len = s->opts[(i + 1) & 63];
	if (len < 2 || i + len > s->len) {
		s->result = SRCRT_MALFORMED;
		return 1;
	}
	if (type == 131 || type == 137) {
		if (len < 7 || s->result) {
			s->result = SRCRT_MALFORMED;
			return 1;
		}
		__u32 a = i + len - 4;
		s->result = SRCRT_FOUND | (__u32)s->opts[a & 63] | (__u32)s->opts[(a + 1) & 63] << 8 |
			    (__u32)s->opts[(a + 2) & 63] << 16 | (__u32)s->opts[(a + 3) & 63] << 24;
	}
	s->at = i + len;
	return 0;
}

// ipv4_source_route finds a loose or strict source route option (LSRR 131,
// SSRR 137). Like an IPv6 routing header, its last address is the final
// destination, which is judged as well as the first hop.
static __always_inline __u64 ipv4_source_route(struct __sk_buff *skb, __u32 off, __u32 optlen)
{
	struct srcrt s = {.len = optlen};
	if (optlen > 40 || optlen == 0)
		return SRCRT_MALFORMED;
	// Written so the verifier sees a size in [1, 64]; it is optlen exactly.
	if (bpf_skb_load_bytes(skb, off, s.opts, ((optlen - 1) & 63) + 1))
		return SRCRT_MALFORMED;
	bpf_loop(40, srcrt_step, &s, 0);
	return s.result;
}

static __always_inline enum parse_result parse_ipv4(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
	__u8 hdr[20] __attribute__((aligned(4)));
	if (bpf_skb_load_bytes(skb, off, hdr, sizeof(hdr)))
		return PARSE_MALFORMED;
	__u8 ihl = hdr[0] & 0xf;
	if ((hdr[0] >> 4) != 4 || ihl < 5)
		return PARSE_MALFORMED;
	p->family = 4;
	p->proto = hdr[9];
	__builtin_memcpy(p->src, &hdr[12], 4);
	__builtin_memcpy(p->dst, &hdr[16], 4);
	if (ihl > 5) {
		__u64 sr = ipv4_source_route(skb, off + 20, (ihl - 5) * 4);
		if (sr & SRCRT_MALFORMED)
			return PARSE_MALFORMED;
		if (sr & SRCRT_FOUND) {
			p->final[0] = (__u32)sr; // network order, as read
			p->has_final = true;
			p->final_v4 = true;
		}
	}
	// Only the first fragment carries the transport header.
	if (((hdr[6] & 0x1f) | hdr[7]) == 0)
		load_ports(skb, p, off + ihl * 4);
	return PARSE_OK;
}

// ipv6_routing reads a routing header. A packet that is source routed is
// judged by its final destination as well as by its first hop, so a waypoint
// cannot launder access to a protected range.
static __always_inline enum parse_result ipv6_routing(struct __sk_buff *skb, __u32 off, struct pkt *p,
						      __u8 hdrlen8)
{
	__u8 rh[4]; // next, hdr_ext_len, type, segments_left
	if (bpf_skb_load_bytes(skb, off, rh, sizeof(rh)))
		return PARSE_MALFORMED;
	if (rh[3] == 0)
		return PARSE_OK; // already at its final destination
	__u32 at;
	switch (rh[2]) {
	case 0: // RH0: addresses in order, the last is the final destination
		if (rh[1] < 2)
			return PARSE_MALFORMED;
		at = off + 8 + (__u32)(rh[1] / 2 - 1) * 16;
		break;
	case 2: // Mobile IPv6: one home address
	case 4: // Segment routing: segment list[0] is the final destination
		if (rh[1] < 2)
			return PARSE_MALFORMED;
		at = off + 8;
		break;
	default: // unknown source routing: its destination cannot be judged
		return PARSE_MALFORMED;
	}
	if (bpf_skb_load_bytes(skb, at, p->final, 16))
		return PARSE_MALFORMED;
	p->has_final = true;
	p->final_v4 = v4mapped(p->final);
	return PARSE_OK;
}

static __always_inline enum parse_result parse_ipv6(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
	__u8 hdr[40] __attribute__((aligned(4)));
	if (bpf_skb_load_bytes(skb, off, hdr, sizeof(hdr)))
		return PARSE_MALFORMED;
	if ((hdr[0] >> 4) != 6)
		return PARSE_MALFORMED;
	__builtin_memcpy(p->src, &hdr[8], 16);
	__builtin_memcpy(p->dst, &hdr[24], 16);
	p->family = v4mapped(p->dst) ? 4 : 6;

	__u8 next = hdr[6];
	off += 40;
#pragma unroll
	for (int i = 0; i < NTF_MAX_EXT_HDRS; i++) {
		__u8 eh[2];
		switch (next) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_DSTOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_AH:
		case IPPROTO_FRAGMENT:
			break;
		default:
			p->proto = next;
			load_ports(skb, p, off);
			return PARSE_OK;
		}
		if (bpf_skb_load_bytes(skb, off, eh, sizeof(eh)))
			return PARSE_MALFORMED;
		if (next == IPPROTO_ROUTING) {
			if (p->has_final)
				return PARSE_MALFORMED; // two routing headers
			enum parse_result r = ipv6_routing(skb, off, p, eh[1]);
			if (r != PARSE_OK)
				return r;
		}
		if (next == IPPROTO_FRAGMENT) {
			__u8 frag[4];
			if (bpf_skb_load_bytes(skb, off, frag, sizeof(frag)))
				return PARSE_MALFORMED;
			p->proto = eh[0];
			// Later fragments carry no transport header.
			if ((((__u16)frag[2] << 8) | frag[3]) & 0xfff8)
				return PARSE_OK;
			next = eh[0];
			off += 8;
			continue;
		}
		__u32 len = next == IPPROTO_AH ? ((__u32)eh[1] + 2) * 4 : ((__u32)eh[1] + 1) * 8;
		next = eh[0];
		off += len;
	}
	// More extension headers than we follow: a routing header could still
	// be hidden behind them, so the final destination is unknown.
	switch (next) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_DSTOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_AH:
	case IPPROTO_FRAGMENT:
		return PARSE_MALFORMED;
	}
	p->proto = next;
	return PARSE_OK;
}

static __always_inline enum parse_result parse(struct __sk_buff *skb, const struct ntf_iface *ifc, struct pkt *p)
{
	__u32 off = 0;
	__u16 proto;

	if (ifc->l2_len == 0) {
		// L3 device (wireguard, tun): no link-layer header, the IP version
		// nibble says what follows.
		__u8 v;
		if (bpf_skb_load_bytes(skb, 0, &v, 1))
			return PARSE_MALFORMED;
		switch (v >> 4) {
		case 4:
			return parse_ipv4(skb, 0, p);
		case 6:
			return parse_ipv6(skb, 0, p);
		}
		return PARSE_NOT_IP;
	}

	off = ETH_HLEN;
	if (bpf_skb_load_bytes(skb, off - 2, &proto, sizeof(proto)))
		return PARSE_MALFORMED;
	// Up to two tags in the frame (802.1ad outer, 802.1Q inner); tags held
	// in skb metadata by offload are not in the frame at all. A third tag
	// would hide what it carries: refuse it rather than pass it as non-IP.
#pragma unroll
	for (int i = 0; i < 3; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (i == 2)
			return PARSE_MALFORMED;
		off += 4;
		if (bpf_skb_load_bytes(skb, off - 2, &proto, sizeof(proto)))
			return PARSE_MALFORMED;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(skb, off, p);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(skb, off, p);
	return PARSE_NOT_IP;
}

// fast_ip parses the common shapes straight from the linear packet data:
// IPv4 without options, IPv6 without extension headers. Anything else, or
// headers beyond the linear part, is left to parse(), which understands every
// shape; both give the same result where both apply.
static __always_inline bool fast_ip(void *ip, void *end, struct pkt *p)
{
	__u8 *b = ip;
	__u32 l4;
	if (ip + 1 > end)
		return false;
	switch (b[0] >> 4) {
	case 4: {
		if (ip + 20 > end || b[0] != 0x45)
			return false;
		// Word loads: the header is only 2-byte aligned behind Ethernet,
		// which x86 and arm64 load fine, where a memcpy would go bytewise.
		const __u32 *w = ip;
		p->family = 4;
		p->proto = b[9];
		p->src[0] = w[3];
		p->dst[0] = w[4];
		if ((b[6] & 0x1f) | b[7])
			return true; // not the first fragment: no ports
		l4 = 20;
		break;
	}
	case 6:
		if (ip + 40 > end)
			return false;
		switch (b[6]) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_DSTOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_AH:
		case IPPROTO_FRAGMENT:
			return false;
		}
		const __u32 *w = ip;
		p->proto = b[6];
		p->src[0] = w[2];
		p->src[1] = w[3];
		p->src[2] = w[4];
		p->src[3] = w[5];
		p->dst[0] = w[6];
		p->dst[1] = w[7];
		p->dst[2] = w[8];
		p->dst[3] = w[9];
		p->family = v4mapped(p->dst) ? 4 : 6;
		l4 = 40;
		break;
	default:
		return false;
	}
	switch (p->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP: {
		__u16 *ports = ip + l4;
		if ((void *)(ports + 2) > end)
			return false;
		p->sport = bpf_ntohs(ports[0]);
		p->dport = bpf_ntohs(ports[1]);
	}
	}
	return true;
}

static __always_inline bool fast_parse(struct __sk_buff *skb, const struct ntf_iface *ifc, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (ifc->l2_len == 0)
		return fast_ip(data, end, p);
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return false;
	if (eth->h_proto != bpf_htons(ETH_P_IP) && eth->h_proto != bpf_htons(ETH_P_IPV6))
		return false;
	if (!fast_ip(eth + 1, end, p))
		return false;
	// The version must be what the Ethernet type says, as parse() insists.
	return (eth->h_proto == bpf_htons(ETH_P_IP)) == (((__u8 *)(eth + 1))[0] >> 4 == 4);
}

enum iface_result {
	IFACE_OK,
	IFACE_NO_POLICY,
	IFACE_UNFILTERED,
};

// find_iface copies the interface's settings of the policy in slot s,
// through the per-CPU cache when the slot has an epoch.
static __always_inline enum iface_result find_iface(__u32 ifindex, __u32 s, __u64 epoch, struct ntf_iface *out)
{
	__u32 idx = ifindex & (NTF_IFACE_CACHE - 1);
	struct ntf_iface_entry *e = NULL;
	if (epoch) {
		e = bpf_map_lookup_elem(&ntf_iface_cache, &idx);
		if (e) {
			__u32 seq = READ_ONCE(e->seq);
			if (!(seq & 1) && e->ifindex == ifindex && e->epoch == epoch) {
				barrier();
				*out = e->ifc;
				barrier();
				if (READ_ONCE(e->seq) == seq)
					return IFACE_OK;
			}
		}
	}
	void *ifaces = bpf_map_lookup_elem(&ntf_ifaces, &s);
	if (!ifaces)
		return IFACE_NO_POLICY; // attached before any policy was written
	const struct ntf_iface *ifc = bpf_map_lookup_elem(ifaces, &ifindex);
	if (!ifc)
		return IFACE_UNFILTERED;
	*out = *ifc;
	if (e) {
		__u32 seq = READ_ONCE(e->seq);
		if (claim(&e->seq, seq)) {
			e->ifindex = ifindex;
			e->epoch = epoch;
			e->ifc = *ifc;
			release(&e->seq, seq);
		}
	}
	return IFACE_OK;
}

static __always_inline __u32 verdict_slot(__u32 table, const __u32 *a)
{
	__u32 h = a[0] * 0x9e3779b1u ^ a[1] * 0x85ebca77u ^ a[2] * 0xc2b2ae3du ^ a[3] * 0x27d4eb2fu ^ table;
	h ^= h >> 15;
	h *= 0x2c1b3c6du;
	h ^= h >> 13;
	return h & (NTF_VERDICT_CACHE - 1);
}

// decide judges a destination for an owner. The range that decides comes
// from the per-CPU cache when it holds it for this policy epoch, else from
// the trie; the socket's uid is only asked for when the range's verdict
// depends on it, and the last uid's answer is cached with the range.
static __always_inline struct verdict decide(struct __sk_buff *skb, __u32 s, __u64 epoch,
					     const struct ntf_iface *ifc, __u32 table, const __u32 *addr,
					     __u32 bits, bool unowned, __u32 *uid, bool *no_policy)
{
	struct verdict v = {};
	struct ntf_verdict_entry r = {};
	struct ntf_verdict_entry *e = NULL;
	__u32 seq = 1;
	bool cached = false;
	if (epoch) {
		__u32 idx = verdict_slot(table, addr);
		e = bpf_map_lookup_elem(&ntf_verdict_cache, &idx);
		if (e) {
			seq = READ_ONCE(e->seq);
			barrier();
			if (!(seq & 1) && e->epoch == epoch && e->table == table && e->dst[0] == addr[0] &&
			    e->dst[1] == addr[1] && e->dst[2] == addr[2] && e->dst[3] == addr[3]) {
				r.rule = e->rule;
				r.counter = e->counter;
				r.owners = e->owners;
				r.uid = e->uid;
				r.owned = e->owned;
				r.unowned = e->unowned;
				r.uid_allowed = e->uid_allowed;
				barrier();
				cached = READ_ONCE(e->seq) == seq;
			}
		}
	}
	if (!cached) {
		void *ranges = bpf_map_lookup_elem(&ntf_ranges, &s);
		if (!ranges) {
			*no_policy = true;
			return v;
		}
		lookup_range(ranges, ifc, table, addr, bits, &r);
		r.uid = NTF_UID_UNOWNED;
		if (e && claim(&e->seq, seq)) {
			e->epoch = epoch;
			e->table = table;
			__builtin_memcpy(e->dst, addr, 16);
			e->rule = r.rule;
			e->counter = r.counter;
			e->owners = r.owners;
			e->owned = r.owned;
			e->unowned = r.unowned;
			e->uid = NTF_UID_UNOWNED;
			release(&e->seq, seq);
			seq += 2;
		} else {
			e = NULL;
		}
	}
	v.rule = r.rule;
	v.counter = r.counter;
	if (unowned) {
		v.allowed = r.unowned;
		return v;
	}
	if (!r.owners) {
		v.allowed = r.owned;
		return v;
	}
	if (*uid == NTF_UID_UNOWNED)
		*uid = socket_uid(skb);
	if (r.uid == *uid) {
		v.allowed = r.uid_allowed;
		return v;
	}
	void *owners = bpf_map_lookup_elem(&ntf_owners, &s);
	if (!owners) {
		*no_policy = true;
		return v;
	}
	struct ntf_owner_key ok = {.set = r.owners, .uid = *uid};
	v.allowed = bpf_map_lookup_elem(owners, &ok) != NULL;
	// Still the entry read above (the claim fails otherwise): remember
	// this uid's answer.
	if (e && claim(&e->seq, seq)) {
		e->uid = *uid;
		e->uid_allowed = v.allowed;
		release(&e->seq, seq);
	}
	return v;
}

static __always_inline void emit(struct __sk_buff *skb, const struct ntf_iface *ifc, const struct pkt *p,
				 const __u32 *dst, bool dst_v4, struct verdict v, __u32 uid, bool unowned)
{
	struct ntf_event *e = bpf_ringbuf_reserve(&ntf_events, sizeof(*e), 0);
	if (!e) {
		// The reader is behind: never wait, count what is lost.
		count(NTF_CNT_EVENTS_LOST);
		return;
	}
	e->ts = bpf_ktime_get_ns();
	e->cgroup = unowned ? 0 : bpf_skb_cgroup_id(skb);
	e->generation = ifc->generation;
	e->rule = v.rule;
	e->ifindex = skb->ifindex;
	e->uid = uid;
	e->allowed = v.allowed;
	e->unowned = unowned;
	e->family = dst_v4 ? 4 : 6;
	e->proto = p->proto;
	e->sport = p->sport;
	e->dport = p->dport;
	__builtin_memcpy(e->src, p->src, 16);
	__builtin_memcpy(e->dst, dst, 16);
	bpf_ringbuf_submit(e, 0);
}

SEC("tc")
int ntf_egress(struct __sk_buff *skb)
{
	__u32 zero = 0;
	__u32 *slot = bpf_map_lookup_elem(&ntf_active, &zero);
	if (!slot)
		return TC_ACT_SHOT;
	// Every part of the policy is taken from the same slot.
	__u32 s = *slot;
	__u64 *ep = bpf_map_lookup_elem(&ntf_epoch, &s);
	__u64 epoch = ep && !ntf_nocache ? *ep : 0;

	struct ntf_iface ifc;
	switch (find_iface(skb->ifindex, s, epoch, &ifc)) {
	case IFACE_NO_POLICY:
		// Attached before any policy was written: fail closed.
		count(NTF_CNT_NO_POLICY);
		return TC_ACT_SHOT;
	case IFACE_UNFILTERED:
		// Still attached to an interface the policy no longer filters;
		// user space detaches it next.
		count(NTF_CNT_UNFILTERED);
		return TC_ACT_UNSPEC;
	case IFACE_OK:
		break;
	}

	struct pkt p = {};
	if (!fast_parse(skb, &ifc, &p)) {
		p = (struct pkt){};
		switch (parse(skb, &ifc, &p)) {
		case PARSE_NOT_IP:
			count(NTF_CNT_NOT_IP);
			return TC_ACT_UNSPEC;
		case PARSE_MALFORMED:
			count(NTF_CNT_MALFORMED);
			return TC_ACT_SHOT;
		case PARSE_OK:
			break;
		}
	}

	// The uid is asked for only when a range's verdict depends on it: the
	// helper is the dearest step of the common path.
	bool unowned = false;
	__u32 uid = NTF_UID_UNOWNED;
	struct bpf_sock *sk = skb->sk;
	// No socket: forwarded, or made by the kernel without one. A TIME_WAIT
	// socket has no owner left; the uid helper would say "nobody", which
	// is a user like any other.
	if (!sk || sk->state == BPF_TCP_TIME_WAIT)
		unowned = true;

	bool no_policy = false;
	__u32 table = ifc.table * 2 + (p.family == 6);
	__u32 bits = p.family == 6 ? 128 : 32;
	struct verdict v = decide(skb, s, epoch, &ifc, table, p.dst, bits, unowned, &uid, &no_policy);
	const __u32 *judged = p.dst;
	bool judged_v4 = p.family == 4;
	if (v.allowed && p.has_final) {
		__u32 ftable = ifc.table * 2 + !p.final_v4;
		struct verdict fv = decide(skb, s, epoch, &ifc, ftable, p.final, p.final_v4 ? 32 : 128, unowned,
					   &uid, &no_policy);
		if (!fv.allowed) {
			v = fv;
			judged = p.final;
			judged_v4 = p.final_v4;
		}
	}
	if (no_policy) {
		count(NTF_CNT_NO_POLICY);
		return TC_ACT_SHOT;
	}
	count_in(&ntf_iface_counters, ((ifc.counter & (NTF_MAX_COUNTERS - 1)) << 1) | v.allowed);
	count_in(&ntf_endpoint_counters, ((v.counter & (NTF_MAX_COUNTERS - 1)) << 1) | v.allowed);
	if (ifc.log == NTF_LOG_ALL || (ifc.log == NTF_LOG_DENIED && !v.allowed)) {
		// Events name the owner even where the verdict did not need it.
		if (!unowned && uid == NTF_UID_UNOWNED)
			uid = socket_uid(skb);
		emit(skb, &ifc, &p, judged, judged_v4, v, uid, unowned);
	}
	return v.allowed ? TC_ACT_UNSPEC : TC_ACT_SHOT;
}
