// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

//go:build ignore

// net-tc-filter: tc egress classifier that decides by the owner of the
// sending socket. The policy lives in map-in-map slots so that user space can
// build a whole new policy beside the live one and switch with one write to
// `active`: every packet is judged wholly by one slot.

// No header of the host (the build passes -nostdinc): the kernel's
// definitions are in uapi.h, libbpf's headers in headers/.
#include "uapi.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "bpf_endian.h"

#include "filter.h"

// GPL-compatible as the kernel counts it (license_is_gpl_compatible), which
// bpf_probe_read_kernel (a GPL-only helper) and the bpf_rdonly_cast kfunc
// need.
char __license[] SEC("license") = "Dual BSD/GPL";

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

// [0]: the slot in force, and the staged slot << NTF_STAGED_SLOT_SHIFT (0:
// nothing staged): a byte each, so that no write of the word can be seen
// half done, and nothing staged costs nothing more than the load every
// packet makes anyway. [1]: the live generation, for user space after a
// restart.
//
// [NTF_EPOCHS + s]: the epoch of slot s's policy, never reused: cache
// entries made from a slot's policy are valid while the slot's epoch is
// theirs. A slot's epoch is written with its policy, before the slot goes
// live. 0: no caching. In this map rather than one of their own: the slot
// word and the epochs share a cache line, which a packet loads once.
//
// [NTF_COUNT_BASE]: the first epoch of the run that reads ntf_traffic; a
// verdict cache entry of an earlier epoch holds counts under that earlier
// run's counter indexes, which are dropped.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NTF_COUNT_BASE + 1);
	__type(key, __u32);
	__type(value, __u64);
} ntf_active SEC(".maps");

// Direct-mapped caches, a section of each per CPU: most packets go to a
// few destinations from a few owners, so the policy's hash and trie lookups
// are paid once per (destination, owner) and CPU, not per packet. Plain
// arrays indexed by CPU rather than per-CPU arrays: a per-CPU array's
// element is found through a pointer loaded from the map (a cache line
// more per packet) and is only 8-byte aligned, so that a 64-byte verdict
// entry would mostly span two lines; a mmapable array's values start on a
// page, and its lookup is the map's address plus the index. User space
// sizes them for every possible CPU (NTF_*_CACHE entries each). The CPUs'
// sections are a cache line apart at least, so no line is shared.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NTF_IFACE_CACHE);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct ntf_iface_entry);
} ntf_iface_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NTF_VERDICT_CACHE);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct ntf_verdict_entry);
} ntf_verdict_cache SEC(".maps");

// The cgroup principals of the range of ntf_verdict_cache's entry of the
// same key (NTF_VERDICT_CGROUPS), written under the entry's sequence count:
// beside the entry rather than in it, which they would take past a line,
// since packets allowed by the entry alone never read them.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NTF_VERDICT_CACHE);
	__type(key, __u32);
	__type(value, __u64);
} ntf_verdict_cgroups SEC(".maps");

// cache_key is the key of this CPU's entry idx of a cache of n entries per
// CPU. tc programs run with migration off: the CPU stays this one.
static __always_inline __u32 cache_key(__u32 idx, __u32 n)
{
	return bpf_get_smp_processor_id() * n + (idx & (n - 1));
}

// The key of the per-CPU scratch entries (ntf_route_scratch,
// ntf_stage_scratch), in .rodata: a key on the stack would cost
// judge_staged the bytes that 6.1 counts against the 512 of its deepest
// call chain (ntf_egress, judge_staged, decide_at).
volatile const __u32 ntf_scratch_key = 0;

// Replies to denied packets, per CPU: one costs ntf_reject_cost_ns of
// credit, which refills with time up to ntf_reject_burst_ns: 100 replies a
// second, bursts of 20 (the kernel's own ICMP limit is 1000 a second,
// bursts of 50, for the host). Tests load others.
volatile const __u64 ntf_reject_cost_ns = 10000000;
volatile const __u64 ntf_reject_burst_ns = 200000000;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ntf_bucket);
} ntf_reject_bucket SEC(".maps");

// Where a reply is put together, per CPU: far more than the stack holds.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ntf_reject_buf);
} ntf_reject_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NTF_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ntf_counters SEC(".maps");

// Allowed and denied packets per interface and per endpoint: interface
// counter i at [i*2 + allowed], endpoint counter j at [NTF_TRAFFIC_ENDPOINTS
// + j*2 + allowed]; user space knows which counter is whose. They are kept
// in blocks because a per-CPU array holds a pointer per element: with an
// element per counter, the pointers of the two maps this replaces filled
// 64 KB each, in vmalloc'd pages, and every packet read two of those pages
// besides the counters' own. Where the TLB is flushed at every syscall
// (page-table isolation without PCID), each page read is a TLB miss: the
// blocks took 55-80 ns off a packet there (README: per packet).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NTF_TRAFFIC_BLOCKS);
	__type(key, __u32);
	__type(value, struct ntf_traffic_block);
} ntf_traffic SEC(".maps");

// Audited packets (mode: audit: not allowed, passed) per interface and per
// endpoint, at [counter]. They are counted here instead of in the columns
// above, so that allowed, denied and audited never overlap.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NTF_MAX_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} ntf_iface_audited SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NTF_MAX_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} ntf_endpoint_audited SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, NTF_RINGBUF_BYTES);
} ntf_events SEC(".maps");

// Packets a staged policy would decide otherwise, by (rules, owner, change):
// LRU, so that a flood of owners and destinations can never fill it for
// good; user space reads it every second while something is staged.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, NTF_STAGED_DIFFS);
	__type(key, struct ntf_diff_key);
	__type(value, __u64);
} ntf_staged_diffs SEC(".maps");

// Interfaces whose clsact qdisc this program's loader created (legacy attach),
// so that detaching never removes a qdisc somebody else owns. Unused here.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NTF_MAX_IFACES);
	__type(key, __u32);
	__type(value, __u8);
} ntf_clsact SEC(".maps");

// Cgroup principals (filter.h): what each tracked cgroup v2 directory is,
// by its id (the kernfs node id, which bpf_skb_cgroup_id answers and which
// is the directory's inode number), and the watched paths' steps. Global,
// not per slot: they state facts about cgroups; a slot's ranges say which
// bits pass. Preallocated, because the tracepoints update them with
// interrupts off under a spinlock (trace_cgroup_path_lock).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NTF_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct ntf_cg);
} ntf_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NTF_MAX_CG_NODES);
	__type(key, struct ntf_cg_step);
	__type(value, struct ntf_cg);
} ntf_cg_watch SEC(".maps");

// Make the shared structs visible in BTF so bpf2go emits their Go twins.
const struct ntf_event *unused_event __attribute__((unused));
const struct ntf_iface *unused_iface __attribute__((unused));
const struct ntf_range_key *unused_range_key __attribute__((unused));
const struct ntf_range *unused_range __attribute__((unused));
const struct ntf_owner_key *unused_owner_key __attribute__((unused));
const enum ntf_counter *unused_counter __attribute__((unused));
const enum ntf_range_flags *unused_range_flags __attribute__((unused));
const enum ntf_log *unused_log __attribute__((unused));
const enum ntf_iface_flags *unused_iface_flags __attribute__((unused));
const enum ntf_action *unused_action __attribute__((unused));
const struct ntf_diff_key *unused_diff_key __attribute__((unused));
const struct ntf_verdict_entry *unused_verdict_entry __attribute__((unused));
const struct ntf_cg_step *unused_cg_step __attribute__((unused));
const struct ntf_cg *unused_cg __attribute__((unused));
const struct ntf_bucket *unused_bucket __attribute__((unused));

#define barrier() asm volatile("" ::: "memory")
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

// The kernel's view of a socket's owner, as far as reading it needs (CO-RE:
// offsets come from the running kernel's BTF).
struct sock___ntf {
	struct {
		__u32 val;
	} sk_uid; // kuid_t: the uid in the initial user namespace
} __attribute__((preserve_access_index));

// A request socket's listener (rsk_listener) is its sock_common's.
struct sock_common___ntf {
	struct sock___ntf *skc_listener;
} __attribute__((preserve_access_index));

// Kernels from 6.2 on; on older ones the loader makes this NULL.
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

// Where kernels before 6.2 read a socket's address as a number: the
// verifier forbids arithmetic on a socket pointer, but lets a program with
// CAP_PERFMON store it in a map and load it back as a scalar.
struct sk_addr {
	__u64 seq; // bumped by every store: a nested run shows as a change
	__u64 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sk_addr);
} ntf_sk_addr SEC(".maps");

// socket_uid_probed is socket_uid for kernels without bpf_rdonly_cast (6.1):
// the same fields, read with bpf_probe_read_kernel. Returns false when the
// socket's address cannot be had.
static __always_inline bool socket_uid_probed(struct bpf_sock *sk, bool request, __u32 *uid)
{
	__u32 zero = 0;
	struct sk_addr *slot = bpf_map_lookup_elem(&ntf_sk_addr, &zero);
	if (!slot)
		return false;
	__u64 addr = 0;
	// A program run nested on this CPU (a packet sent from an interrupt)
	// may store its own socket between our store and load: try again
	// then. The address is never compared with sk, or the compiler would
	// use sk itself, on which the verifier refuses arithmetic.
	for (int i = 0; i < 3 && !addr; i++) {
		__u64 seq = READ_ONCE(slot->seq) + 1;
		WRITE_ONCE(slot->seq, seq);
		WRITE_ONCE(slot->addr, (__u64)sk);
		addr = READ_ONCE(slot->addr);
		if (READ_ONCE(slot->seq) != seq)
			addr = 0;
	}
	if (!addr)
		return false;
	if (request) {
		__u64 listener = 0;
		if (bpf_probe_read_kernel(&listener, sizeof(listener),
					  (void *)(addr + bpf_core_field_offset(struct sock_common___ntf, skc_listener))) ||
		    !listener)
			return false;
		addr = listener;
	}
	return bpf_probe_read_kernel(uid, sizeof(*uid), (void *)(addr + bpf_core_field_offset(struct sock___ntf, sk_uid))) == 0;
}

// socket_uid is the owner of the packet's socket as the host sees it: the
// kuid the socket was created with (sk_uid), never mapped into the user
// namespace that owns the socket's network namespace, which is what
// bpf_get_socket_uid() answers (a container's root would be uid 0). A
// request socket (SYN-ACK) answers for its listener, as the helper does;
// callers never ask for TIME_WAIT sockets, which have no owner left.
//
// The direct read is also the fast path: on a CPU whose returns are
// mitigated (SRSO) a helper call is the dearest step of a packet.
static __always_inline __u32 socket_uid(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return bpf_get_socket_uid(skb); // no socket: the helper's "nobody"
	bool request = sk->state == BPF_TCP_NEW_SYN_RECV;
	if (&bpf_rdonly_cast != NULL) {
		struct sock___ntf *ks;
		if (request) {
			struct sock_common___ntf *rs =
				bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct sock_common___ntf));
			// The listener shares a union with a number: the
			// verifier reads it as one, so cast it back.
			void *listener = rs->skc_listener;
			if (!listener)
				return NTF_UID_UNKNOWN;
			ks = bpf_rdonly_cast(listener, bpf_core_type_id_kernel(struct sock___ntf));
		} else {
			ks = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct sock___ntf));
		}
		return ks->sk_uid.val;
	}
	// The helper would answer, but with the uid mapped into the socket's
	// user namespace (a container's root as 0): unknown fails closed.
	__u32 uid;
	if (socket_uid_probed(sk, request, &uid))
		return uid;
	return NTF_UID_UNKNOWN;
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

// in_block is idx's place in its block of n, with the bound computed last:
// the compiler would otherwise fold the mask into how idx was made, in a
// form whose bounds 6.1's verifier cannot follow to the pointer.
static __always_inline __u32 in_block(__u32 idx, __u32 n)
{
	barrier_var(idx);
	return idx & (n - 1);
}

// count_traffic adds n packets at [idx] of ntf_traffic.
static __always_inline void count_traffic(__u32 idx, __u32 n)
{
	__u32 block = idx / NTF_TRAFFIC_BLOCK;
	struct ntf_traffic_block *b = bpf_map_lookup_elem(&ntf_traffic, &block);
	if (b)
		b->n[in_block(idx, NTF_TRAFFIC_BLOCK)] += n;
}

// count_verdicts counts n allowed or denied packets for their interface's
// counter and their endpoint's.
static __always_inline void count_verdicts(__u32 iface, __u32 endpoint, bool allowed, __u32 n)
{
	count_traffic(((iface & (NTF_MAX_COUNTERS - 1)) << 1) | allowed, n);
	count_traffic(NTF_TRAFFIC_ENDPOINTS + (((endpoint & (NTF_MAX_COUNTERS - 1)) << 1) | allowed), n);
}

static __always_inline void count_verdict(__u32 iface, __u32 endpoint, bool allowed)
{
	count_verdicts(iface, endpoint, allowed, 1);
}

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
	__u8 audit; // the rule is in mode: audit: if not allowed, it passes
	__u8 silent; // denied: drop without an answer (deny: drop)
};

// found is what decide() works with: a cache entry's verdict fields, and
// no more (the stack of ntf_egress and judge_route together is at its limit).
struct found {
	__u32 rule;
	__u32 counter;
	__u32 owners;
	__u32 uid;
	__u8 owned;
	__u8 unowned;
	__u8 uid_allowed;
	__u8 narrowed;
	__u8 audit;
	__u8 silent;
	__u64 cgroups;
};

// lookup_range finds the longest configured prefix containing addr in the
// table: what it means for owned and unowned packets, and the owner set to
// check when the uid matters. A narrowed prefix's verdict is its class's,
// found by the packet's transport tp (proto << 24 | fragment << 16 | port)
// in the same trie. Returns false when the policy is incomplete.
static __always_inline bool lookup_range(void *ranges, const struct ntf_iface *ifc, __u32 table,
					 const __u32 *addr, __u32 bits, __u32 tp, struct found *out)
{
	struct ntf_range_key key = {.prefixlen = 32 + bits, .table = table};
	__builtin_memcpy(key.addr, addr, 16);

	struct ntf_range *r = bpf_map_lookup_elem(ranges, &key);
	out->narrowed = 0;
	if (r && (r->flags & NTF_RANGE_NARROWED)) {
		// The address's key, reused: the stack of ntf_egress and
		// judge_route together is at its limit.
		key.prefixlen = 64;
		key.table = NTF_PORTS_TABLE | r->owners;
		// proto, fragment, port: the 32 bits behind the table that a
		// class key's prefix can cover.
		*(__u32 *)key.addr = bpf_htonl(tp);
		r = bpf_map_lookup_elem(ranges, &key);
		if (!r) // every class table has its /32: fail closed
			return false;
		if (r->flags & NTF_RANGE_DEFAULT)
			r = NULL;
		out->narrowed = 1;
	}
	if (!r) {
		out->rule = 0;
		out->counter = 0;
		out->owners = 0;
		out->cgroups = 0;
		out->owned = ifc->default_allow;
		out->unowned = ifc->default_allow;
		out->audit = !!(ifc->flags & NTF_IFACE_AUDIT);
		out->silent = !!(ifc->flags & NTF_IFACE_DROP);
		return true;
	}
	out->silent = !!(r->flags & NTF_RANGE_SILENT);
	out->rule = r->rule;
	out->counter = r->counter;
	out->unowned = !!(r->flags & NTF_RANGE_UNOWNED);
	out->owned = !!(r->flags & NTF_RANGE_EVERYONE);
	out->owners = out->owned ? 0 : r->owners;
	out->cgroups = out->owned ? 0 : r->cgroups;
	out->audit = !!(r->flags & NTF_RANGE_AUDIT);
	return true;
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
	__u32 route_off; // offset of the source route's first address
	__u16 sport, dport;
	__u16 l3off; // where the IP header starts
	__u16 l4off; // where the transport header starts (not for fragments)
	__u8 family; // 4 or 6, after IPv4-mapped destinations are unmapped
	__u8 proto;
	__u8 route_n;   // addresses of the source route; 0: not source routed
	__u8 route_len; // bytes per address: 4 (IPv4 option) or 16 (IPv6)
	__u8 frag;      // a non-first fragment: no transport header, no ports
};

enum parse_result {
	PARSE_OK,
	PARSE_NOT_IP,
	PARSE_MALFORMED,
};

// load_ports reads the ports of a protocol that has them. A packet that
// should hold them but does not (a truncated datagram, or a "tiny" first
// fragment, RFC 1858) is malformed: judged without a port it would decide
// as another class than the port it hides, and its later fragments match
// every ports list of their protocol (SPEC §1 rule 2).
static __always_inline bool load_ports(struct __sk_buff *skb, struct pkt *p, __u32 off)
{
	__u16 ports[2];
	p->l4off = off;
	switch (p->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
		if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)))
			return false;
		p->sport = bpf_ntohs(ports[0]);
		p->dport = bpf_ntohs(ports[1]);
	}
	return true;
}

struct srcrt {
	__u8 opts[64];
	__u32 at;
	__u32 len;
	__u32 first; // offset of the route's first address in the options
	__u8 n;      // addresses in the route; 0: none found
	bool malformed;
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
		s->malformed = true;
		return 1;
	}
	if (type == 131 || type == 137) {
		// type, length, pointer, then whole addresses; one route only.
		if (len < 7 || (len - 3) % 4 || s->n) {
			s->malformed = true;
			return 1;
		}
		s->first = i + 3;
		s->n = (len - 3) / 4;
	}
	s->at = i + len;
	return 0;
}

// ipv4_source_route finds a loose or strict source route option (LSRR 131,
// SSRR 137): every address of its route is judged, like the destination.
static __always_inline enum parse_result ipv4_source_route(struct __sk_buff *skb, __u32 off, __u32 optlen,
							   struct pkt *p)
{
	struct srcrt s = {.len = optlen};
	if (optlen > 40 || optlen == 0)
		return PARSE_MALFORMED;
	// Written so the verifier sees a size in [1, 64]; it is optlen exactly.
	if (bpf_skb_load_bytes(skb, off, s.opts, ((optlen - 1) & 63) + 1))
		return PARSE_MALFORMED;
	bpf_loop(40, srcrt_step, &s, 0);
	if (s.malformed)
		return PARSE_MALFORMED;
	if (s.n) {
		p->route_off = off + s.first;
		p->route_n = s.n;
		p->route_len = 4;
	}
	return PARSE_OK;
}

static __always_inline enum parse_result parse_ipv4(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
	__u8 hdr[20] __attribute__((aligned(4)));
	if (bpf_skb_load_bytes(skb, off, hdr, sizeof(hdr)))
		return PARSE_MALFORMED;
	p->l3off = off;
	__u8 ihl = hdr[0] & 0xf;
	if ((hdr[0] >> 4) != 4 || ihl < 5)
		return PARSE_MALFORMED;
	p->family = 4;
	p->proto = hdr[9];
	__builtin_memcpy(p->src, &hdr[12], 4);
	__builtin_memcpy(p->dst, &hdr[16], 4);
	if (ihl > 5 && ipv4_source_route(skb, off + 20, (ihl - 5) * 4, p) != PARSE_OK)
		return PARSE_MALFORMED;
	// Only the first fragment carries the transport header.
	if ((hdr[6] & 0x1f) | hdr[7])
		p->frag = 1;
	else if (!load_ports(skb, p, off + ihl * 4))
		return PARSE_MALFORMED;
	return PARSE_OK;
}

// ipv6_routing reads a routing header. A packet that is still source routed
// (segments left) is judged by every address of its route as well as by its
// first hop, so that no waypoint launders access to a protected range. The
// route must be wholly in the packet and hold at most NTF_MAX_ROUTE
// addresses, or the packet is malformed: what cannot be judged is dropped.
static __always_inline enum parse_result ipv6_routing(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
	__u8 rh[8]; // next, hdr_ext_len, type, segments_left, type-specific
	if (bpf_skb_load_bytes(skb, off, rh, sizeof(rh)))
		return PARSE_MALFORMED;
	if (rh[3] == 0)
		return PARSE_OK; // already at its final destination
	__u32 n;
	switch (rh[2]) {
	case 0: // RH0: the addresses to visit, the last is the final destination
		n = rh[1] / 2;
		if (rh[1] & 1 || rh[3] > n)
			return PARSE_MALFORMED;
		break;
	case 2: // Mobile IPv6: exactly one home address
		n = 1;
		if (rh[1] != 2 || rh[3] != 1)
			return PARSE_MALFORMED;
		break;
	case 4: // Segment routing: last_entry+1 segments, then TLVs
		n = (__u32)rh[4] + 1;
		if (n * 2 > rh[1] || rh[3] > rh[4] + 1)
			return PARSE_MALFORMED;
		break;
	default: // unknown source routing: its destinations cannot be judged
		return PARSE_MALFORMED;
	}
	if (n == 0 || n > NTF_MAX_ROUTE || off + 8 + n * 16 > skb->len)
		return PARSE_MALFORMED;
	p->route_off = off + 8;
	p->route_n = n;
	p->route_len = 16;
	return PARSE_OK;
}

static __always_inline enum parse_result parse_ipv6(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
	__u8 hdr[40] __attribute__((aligned(4)));
	if (bpf_skb_load_bytes(skb, off, hdr, sizeof(hdr)))
		return PARSE_MALFORMED;
	if ((hdr[0] >> 4) != 6)
		return PARSE_MALFORMED;
	p->l3off = off;
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
			return load_ports(skb, p, off) ? PARSE_OK : PARSE_MALFORMED;
		}
		if (bpf_skb_load_bytes(skb, off, eh, sizeof(eh)))
			return PARSE_MALFORMED;
		if (next == IPPROTO_ROUTING) {
			if (p->route_n)
				return PARSE_MALFORMED; // a second routing header
			enum parse_result r = ipv6_routing(skb, off, p);
			if (r != PARSE_OK)
				return r;
		}
		if (next == IPPROTO_FRAGMENT) {
			__u8 frag[4];
			if (bpf_skb_load_bytes(skb, off, frag, sizeof(frag)))
				return PARSE_MALFORMED;
			p->proto = eh[0];
			// Later fragments carry no transport header.
			if ((((__u16)frag[2] << 8) | frag[3]) & 0xfff8) {
				p->frag = 1;
				return PARSE_OK;
			}
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
	return load_ports(skb, p, off) ? PARSE_OK : PARSE_MALFORMED;
}

// parse understands every shape of packet that fast_parse leaves to it. It
// is a global function: the verifier checks it once, and its header buffers
// live in its own frame rather than in ntf_egress's, whose stack together
// with judge_route's is close to the kernel's 512 bytes.
__attribute__((noinline)) int parse(struct __sk_buff *skb, struct pkt *p, __u32 l2_len)
{
	__u32 off = 0;
	__u16 proto;

	if (!p)
		return PARSE_MALFORMED;
	if (l2_len == 0) {
		// L3 device (wireguard, tun): no link-layer header; the packet's
		// protocol says what it is, never its first byte (a frame of
		// another protocol may well start with 0x45).
		switch (skb->protocol) {
		case bpf_htons(ETH_P_IP):
			return parse_ipv4(skb, 0, p);
		case bpf_htons(ETH_P_IPV6):
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
// IPv4 without options, IPv6 without extension headers, of the version
// the packet's protocol says. Anything else, or headers beyond the linear
// part, is left to parse(), which understands every shape; both give the
// same result where both apply.
static __always_inline bool fast_ip(void *ip, void *end, struct pkt *p, bool v6)
{
	__u8 *b = ip;
	__u32 l4;
	if (ip + 1 > end)
		return false;
	// Written whatever the packet: fast_allow's pkt is not zeroed first.
	p->frag = 0;
	p->sport = p->dport = 0;
	if (!v6) {
		if (ip + 20 > end || b[0] != 0x45)
			return false;
		// Word loads: the header is only 2-byte aligned behind Ethernet,
		// which x86 and arm64 load fine, where a memcpy would go bytewise.
		const __u32 *w = ip;
		p->family = 4;
		p->proto = b[9];
		p->src[0] = w[3];
		p->dst[0] = w[4];
		p->dst[1] = p->dst[2] = p->dst[3] = 0;
		if ((b[6] & 0x1f) | b[7]) {
			p->frag = 1; // not the first fragment: no ports
			return true;
		}
		l4 = 20;
	} else {
		if (ip + 40 > end || b[0] >> 4 != 6)
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
	}
	p->l4off += l4; // fast_parse set it to the IP header's offset
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

static __always_inline bool fast_parse(struct __sk_buff *skb, __u8 l2_len, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u16 proto;
	if (l2_len == 0) {
		proto = skb->protocol;
		p->l3off = p->l4off = 0;
	} else {
		struct ethhdr *eth = data;
		if ((void *)(eth + 1) > end)
			return false;
		proto = eth->h_proto;
		data = eth + 1;
		p->l3off = p->l4off = ETH_HLEN;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return fast_ip(data, end, p, false);
	if (proto == bpf_htons(ETH_P_IPV6))
		return fast_ip(data, end, p, true);
	return false;
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
	struct ntf_iface_entry *e = NULL;
	if (epoch) {
		__u32 key = cache_key(ifindex, NTF_IFACE_CACHE);
		e = bpf_map_lookup_elem(&ntf_iface_cache, &key);
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

// verdict_key is the key of this CPU's verdict cache entry for a
// destination. Not of its table: fast_allow finds the entry before it
// knows the interface's table.
static __always_inline __u32 verdict_key(const __u32 *a, bool v6)
{
	__u32 h = a[0] * 0x9e3779b1u ^ a[1] * 0x85ebca77u ^ a[2] * 0xc2b2ae3du ^ a[3] * 0x27d4eb2fu ^ v6;
	h ^= h >> 15;
	h *= 0x2c1b3c6du;
	h ^= h >> 13;
	return cache_key(h, NTF_VERDICT_CACHE);
}

// uid_allowed reports whether the socket's uid is in the range's owner set,
// from the cache entry e (read at seq) when it holds this uid's answer, and
// remembers the answer there.
static __always_inline bool uid_allowed(struct __sk_buff *skb, __u32 s, const struct found *r,
					struct ntf_verdict_entry *e, __u32 seq, __u32 *uid, bool *no_policy)
{
	if (*uid == NTF_UID_UNOWNED)
		*uid = socket_uid(skb);
	if (*uid == NTF_UID_UNKNOWN) // never a listed uid's, never cached
		return false;
	if (r->uid == *uid)
		return r->uid_allowed;
	void *owners = bpf_map_lookup_elem(&ntf_owners, &s);
	if (!owners) {
		*no_policy = true;
		return false;
	}
	struct ntf_owner_key ok = {.set = r->owners, .uid = *uid};
	bool allowed = bpf_map_lookup_elem(owners, &ok) != NULL;
	// Still the entry read above (the claim fails otherwise): remember
	// this uid's answer.
	if (e && claim(&e->seq, seq)) {
		e->uid = *uid;
		e->flags = (e->flags & ~NTF_VERDICT_UID_ALLOWED) | (allowed ? NTF_VERDICT_UID_ALLOWED : 0);
		release(&e->seq, seq);
	}
	return allowed;
}

// cache_holds reports whether the cache entry e, read at seq, holds the
// destination for this policy epoch and transport: a narrowed verdict holds
// only for its transport, one port's never answers for another's.
static __always_inline bool cache_holds(const struct ntf_verdict_entry *e, __u32 seq, __u64 epoch, __u32 table,
					const __u32 *addr, __u32 tp)
{
	return !(seq & 1) && e->epoch == epoch && e->table == table && e->dst[0] == addr[0] &&
	       e->dst[1] == addr[1] && e->dst[2] == addr[2] && e->dst[3] == addr[3] && (!(e->flags & NTF_VERDICT_NARROWED) || e->tp == tp);
}

// cache_entry returns this CPU's verdict cache entry for the destination
// (whatever it holds), its key and the sequence count it is read at.
static __always_inline struct ntf_verdict_entry *cache_entry(__u32 table, const __u32 *addr, __u32 *keyp,
							     __u32 *seqp)
{
	*keyp = verdict_key(addr, table & 1);
	struct ntf_verdict_entry *e = bpf_map_lookup_elem(&ntf_verdict_cache, keyp);
	if (!e)
		return NULL;
	*seqp = READ_ONCE(e->seq);
	barrier();
	return e;
}

// entry_allows decides a packet by a cache entry that holds its
// destination (flags: the entry's), where the entry alone can: false when
// the owner is not the uid last checked, or a cgroup may change its answer.
static __always_inline bool entry_allows(struct __sk_buff *skb, const struct ntf_verdict_entry *e, __u16 flags,
					 bool unowned, __u32 *uid, bool *allowed)
{
	if (unowned) {
		*allowed = flags & NTF_VERDICT_UNOWNED;
		return true;
	}
	if (!e->owners && !(flags & NTF_VERDICT_CGROUPS)) {
		*allowed = flags & NTF_VERDICT_OWNED;
		return true;
	}
	if (!e->owners)
		return false; // cgroups alone: asked of the socket
	if (*uid == NTF_UID_UNOWNED)
		*uid = socket_uid(skb);
	// An unknown uid is never cached, so never e->uid.
	*allowed = flags & NTF_VERDICT_UID_ALLOWED;
	return e->uid == *uid && (*allowed || !(flags & NTF_VERDICT_CGROUPS));
}

// cache_read fills r from this CPU's verdict cache entry for the
// destination when it holds the destination for this policy epoch. *ep,
// *keyp and *seqp are the entry, its key and the sequence it was read at,
// for remembering a new answer in it (claim), found or not.
static __always_inline bool cache_read(__u64 epoch, __u32 table, const __u32 *addr, __u32 tp, struct found *r,
				       struct ntf_verdict_entry **ep, __u32 *keyp, __u32 *seqp)
{
	struct ntf_verdict_entry *e = cache_entry(table, addr, keyp, seqp);
	*ep = e;
	if (!e || !cache_holds(e, *seqp, epoch, table, addr, tp))
		return false;
	__u32 seq = *seqp;
	__u16 flags = e->flags;
	r->cgroups = 0;
	if (flags & NTF_VERDICT_CGROUPS) {
		__u64 *cg = bpf_map_lookup_elem(&ntf_verdict_cgroups, keyp);
		if (!cg)
			return false;
		r->cgroups = *cg;
	}
	r->rule = e->rule;
	r->counter = e->counter;
	r->owners = e->owners;
	r->uid = e->uid;
	r->owned = !!(flags & NTF_VERDICT_OWNED);
	r->unowned = !!(flags & NTF_VERDICT_UNOWNED);
	r->uid_allowed = !!(flags & NTF_VERDICT_UID_ALLOWED);
	r->audit = !!(flags & NTF_VERDICT_AUDIT);
	r->silent = !!(flags & NTF_VERDICT_SILENT);
	barrier();
	return READ_ONCE(e->seq) == seq;
}

// decide_cached is decide()'s common case, inline in ntf_egress: a cache
// hit whose verdict needs nothing beyond the entry (the range does not
// depend on the owner, or the owner is the uid last checked and no cgroup
// can change its answer). Anything else returns false for decide_at,
// which a call (and the query it takes through memory) makes ~7 ns
// dearer per packet.
//
// The verdict is written to v straight from the entry, with no copy of the
// entry on ntf_egress's stack, and counts only if the entry was not
// rewritten meanwhile.
static __always_inline bool decide_cached(struct __sk_buff *skb, __u64 epoch, __u32 table, const __u32 *addr,
					  __u32 tp, bool unowned, __u32 *uid, struct verdict *v)
{
	if (!epoch)
		return false;
	__u32 key, seq;
	struct ntf_verdict_entry *e = cache_entry(table, addr, &key, &seq);
	if (!e || !cache_holds(e, seq, epoch, table, addr, tp))
		return false;
	__u16 flags = e->flags;
	v->rule = e->rule;
	v->counter = e->counter;
	v->audit = !!(flags & NTF_VERDICT_AUDIT);
	v->silent = !!(flags & NTF_VERDICT_SILENT);
	bool allowed;
	if (!entry_allows(skb, e, flags, unowned, uid, &allowed))
		return false;
	v->allowed = allowed;
	barrier();
	return READ_ONCE(e->seq) == seq;
}

// flush_hits moves the packets an entry counted (fast_allow) to ntf_traffic
// before the entry, claimed, is given to another destination or epoch.
static __always_inline void flush_hits(struct ntf_verdict_entry *e)
{
	if (!e->hits)
		return;
	// A fetching atomic: a full barrier before the epoch and the adds that
	// follow, for user space (readTraffic).
	__u32 n = __sync_lock_test_and_set(&e->hits, 0);
	__u32 bk = NTF_COUNT_BASE;
	__u64 *base = bpf_map_lookup_elem(&ntf_active, &bk);
	if (!base || e->epoch < *base)
		return; // an earlier run's: its counter indexes meant others
	count_verdicts(e->icounter, e->counter, true, n);
}

// decide judges a destination for an owner. The range that decides comes
// from the per-CPU cache when it holds it for this policy epoch, else from
// the trie; the socket's uid is only asked for when the range's verdict
// depends on it, and the last uid's answer is cached with the range.
static __always_inline struct verdict decide(struct __sk_buff *skb, __u32 s, __u64 epoch,
					     const struct ntf_iface *ifc, __u32 table, const __u32 *addr,
					     __u32 bits, __u32 tp, bool unowned, __u32 *uid, bool *no_policy)
{
	struct verdict v = {};
	struct found r = {};
	struct ntf_verdict_entry *e = NULL;
	__u32 key = 0, seq = 1;
	bool cached = epoch && cache_read(epoch, table, addr, tp, &r, &e, &key, &seq);
	if (!cached) {
		void *ranges = bpf_map_lookup_elem(&ntf_ranges, &s);
		if (!ranges) {
			*no_policy = true;
			return v;
		}
		if (!lookup_range(ranges, ifc, table, addr, bits, tp, &r)) {
			*no_policy = true;
			return v;
		}
		r.uid = NTF_UID_UNOWNED;
		__u64 *cg = e ? bpf_map_lookup_elem(&ntf_verdict_cgroups, &key) : NULL;
		if (cg && claim(&e->seq, seq)) {
			flush_hits(e);
			e->epoch = epoch;
			e->ifindex = skb->ifindex;
			e->table = table;
			__builtin_memcpy(e->dst, addr, 16);
			e->rule = r.rule;
			e->counter = r.counter;
			e->icounter = ifc->counter;
			e->owners = r.owners;
			e->flags = (r.owned ? NTF_VERDICT_OWNED : 0) | (r.unowned ? NTF_VERDICT_UNOWNED : 0) |
				   (r.narrowed ? NTF_VERDICT_NARROWED : 0) | (r.audit ? NTF_VERDICT_AUDIT : 0) |
				   (r.silent ? NTF_VERDICT_SILENT : 0) | (r.cgroups ? NTF_VERDICT_CGROUPS : 0) |
				   (ifc->l2_len ? NTF_VERDICT_ETHER : 0) |
				   (ifc->log != NTF_LOG_ALL ? NTF_VERDICT_FAST : 0);
			e->tp = tp;
			*cg = r.cgroups;
			e->uid = NTF_UID_UNOWNED;
			release(&e->seq, seq);
			seq += 2;
		} else {
			e = NULL;
		}
	}
	v.rule = r.rule;
	v.counter = r.counter;
	v.audit = r.audit;
	v.silent = r.silent;
	if (unowned) {
		v.allowed = r.unowned;
		return v;
	}
	if (!r.owners && !r.cgroups) {
		v.allowed = r.owned;
		return v;
	}
	if (r.owners) {
		v.allowed = uid_allowed(skb, s, &r, e, seq, uid, no_policy);
		if (v.allowed || *no_policy)
			return v;
	}
	// The uid is not listed: one of the socket's cgroup ancestors may be.
	// Ranges without cgroup principals never get here.
	if (r.cgroups) {
		__u64 cgid = bpf_skb_cgroup_id(skb);
		struct ntf_cg *c = cgid ? bpf_map_lookup_elem(&ntf_cgroups, &cgid) : NULL;
		v.allowed = c && (READ_ONCE(c->bits) & r.cgroups);
	}
	return v;
}

// query is a decision asked of decide_at, and its answer. Scalars only: it
// is handed to a global function.
struct query {
	struct ntf_iface ifc;
	__u64 epoch; // 0: no verdict cache (a staged policy's)
	__u32 s;     // the policy's slot
	__u32 table; // IPv4 tables are even, IPv6 tables odd
	__u32 addr[4];
	__u32 tp;
	__u32 uid; // NTF_UID_UNOWNED until decide() asked the socket
	bool unowned;
	bool no_policy;   // out: the policy is incomplete, fail closed
	struct verdict v; // out
};

// decide_at is decide() as a global function. The verifier checks it once
// instead of once in every caller it would be inlined into (the packet's
// destination, a source route's addresses, a staged policy), and callers go
// on from one verdict of unknown value rather than from every path that
// made it. Inlined three times, decide() took the program past 6.1's limit
// of a million instructions processed.
__attribute__((noinline)) int decide_at(struct __sk_buff *skb, struct query *q)
{
	if (!q)
		return 0;
	q->no_policy = false;
	__u32 bits = q->table & 1 ? 128 : 32;
	q->v = decide(skb, q->s, q->epoch, &q->ifc, q->table, q->addr, bits, q->tp, q->unowned, &q->uid,
		      &q->no_policy);
	return 0;
}

// hops is what judge_route needs to judge a source route and what it found.
// Scalars only: it is handed to a global function.
struct hops {
	struct query q; // the policy, transport and owner; each address in turn
	__u32 off;      // the route's first address
	__u32 len;      // bytes per address: 4 or 16
	__u32 n;        // addresses, at most NTF_MAX_ROUTE
	struct verdict v;
	__u32 judged[4]; // the address that was denied
	__u8 judged_v4;
	__u8 denied;
	__u8 malformed;
	__u8 no_policy;
	__u8 busy; // in use on this CPU
};

// Source routes are rare: what judging one takes is kept per CPU, off
// ntf_egress's stack. tc programs do not nest on a CPU (they run with bottom
// halves off); should one ever find the entry busy, it drops the packet
// rather than judge it with state another run is changing.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hops);
} ntf_route_scratch SEC(".maps");

// judge_route judges the addresses of a source route in order; the first
// one denied decides for the packet. It is a global function so that the
// verifier checks it once, not once for every way the packet was parsed.
__attribute__((noinline)) int judge_route(struct __sk_buff *skb, struct hops *h)
{
	if (!h)
		return 0;
	struct query *q = &h->q;
	for (__u32 i = 0; i < NTF_MAX_ROUTE && i < h->n; i++) {
		__u32 off = h->off + i * h->len;
		bool v4 = h->len == 4;
		__builtin_memset(q->addr, 0, 16);
		if (v4 ? bpf_skb_load_bytes(skb, off, q->addr, 4) : bpf_skb_load_bytes(skb, off, q->addr, 16)) {
			h->malformed = true;
			return 0;
		}
		if (!v4)
			v4 = v4mapped(q->addr);
		q->table = q->ifc.table * 2 + !v4;
		decide_at(skb, q);
		if (q->no_policy) {
			h->no_policy = true;
			return 0;
		}
		struct verdict v = q->v;
		if (!v.allowed) {
			// An address that audit mode passes is reported unless a
			// later one is denied for good: only that one drops.
			if (!h->denied || !v.audit) {
				h->v = v;
				__builtin_memcpy(h->judged, q->addr, 16);
				h->judged_v4 = v4;
			}
			h->denied = true;
			if (!v.audit)
				return 0;
		}
	}
	return 0;
}

// stage is what judge_staged needs to judge a packet by a staged policy, and
// what it found. Scalars only: it is handed to a global function.
struct stage {
	struct query q; // the staged slot, the destination, transport and owner
	// The live verdict (live_rule, live_action) in, the staged one out:
	// the difference's key once both are known, off the stack.
	struct ntf_diff_key k;
	__u64 one; // a new count's first value, for bpf_map_update_elem
	__u8 v6;
	__u8 differs; // the staged policy decides otherwise
	__u8 emit;    // report it: the first time, then at every power of two
};

// Kept per CPU, like a source route's state, off ntf_egress's stack; only
// packets judged while something is staged use it.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stage);
} ntf_stage_scratch SEC(".maps");

static __always_inline __u8 action_of(struct verdict v)
{
	return v.allowed ? NTF_ALLOW : v.audit ? NTF_AUDIT : NTF_DENY;
}

// judge_staged judges a packet by the staged policy in a->slot, beside the
// live verdict, and counts it when the two differ. It has no way to change
// the live verdict: it reads the packet and writes only a and the counts.
// The staged policy is read without the per-CPU caches, which hold the live
// one's entries: staging costs lookups, never the live policy's hit rate.
// The destination is judged, not the addresses of a source route.
//
// It takes its state from this CPU's ntf_stage_scratch entry, which the
// caller filled, rather than as an argument: 6.1's helpers take a map's key
// and value from the stack or a map value, not from a global function's
// argument memory, and a copy on the stack would cost the deepest call
// chain (ntf_egress, judge_staged, decide_at) its last bytes of 512.
__attribute__((noinline)) int judge_staged(struct __sk_buff *skb)
{
	struct stage *a = bpf_map_lookup_elem(&ntf_stage_scratch, (const void *)&ntf_scratch_key);
	if (!a)
		return 0;
	struct query *q = &a->q;
	switch (find_iface(skb->ifindex, q->s, 0, &q->ifc)) {
	case IFACE_NO_POLICY:
		return 0; // being written: nothing to compare with
	case IFACE_UNFILTERED:
		// The candidate does not filter this interface.
		q->v = (struct verdict){.allowed = 1};
		break;
	case IFACE_OK:
		q->table = q->ifc.table * 2 + a->v6;
		decide_at(skb, q);
		if (q->no_policy)
			return 0;
	}
	struct ntf_diff_key *k = &a->k;
	k->staged_rule = q->v.rule;
	k->staged_action = action_of(q->v);
	if (k->staged_action == k->live_action)
		return 0;
	a->differs = 1;
	if (!q->unowned && q->uid == NTF_UID_UNOWNED)
		q->uid = socket_uid(skb);
	k->uid = q->unowned ? NTF_UID_UNOWNED : q->uid;
	k->cgroup = q->unowned ? 0 : bpf_skb_cgroup_id(skb);
	__u64 *n = bpf_map_lookup_elem(&ntf_staged_diffs, k);
	if (!n) {
		a->one = 1;
		if (!bpf_map_update_elem(&ntf_staged_diffs, k, &a->one, BPF_NOEXIST)) {
			a->emit = 1;
			return 0;
		}
		// Another CPU made the entry first: count in it.
		n = bpf_map_lookup_elem(&ntf_staged_diffs, k);
		if (!n)
			return 0;
	}
	// Per CPU: no other writer. Reported at 1, 2, 4, 8...: a flood of
	// one difference costs log2 of it in events, the count is exact.
	__u64 c = *n + 1;
	*n = c;
	a->emit = !(c & (c - 1));
	return 0;
}

static __always_inline void emit(struct __sk_buff *skb, const struct ntf_iface *ifc, const struct pkt *p,
				 const __u32 *dst, bool dst_v4, struct verdict v, __u32 uid, bool unowned,
				 const struct stage *st)
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
	e->audit = !v.allowed && v.audit;
	e->staged = st && st->differs;
	e->staged_action = st ? st->k.staged_action : 0;
	e->pad = 0;
	e->staged_rule = st ? st->k.staged_rule : 0;
	__builtin_memcpy(e->src, p->src, 16);
	__builtin_memcpy(e->dst, dst, 16);
	bpf_ringbuf_submit(e, 0);
}

// csum_fold folds a 32-bit one's complement sum into the 16-bit checksum.
static __always_inline __u16 csum_fold(__s64 sum)
{
	__u32 c = (__u32)sum;
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)~c;
}

// take_token spends one reply of this CPU's budget, if any is left.
static __always_inline bool take_token(void)
{
	__u32 zero = 0;
	struct ntf_bucket *b = bpf_map_lookup_elem(&ntf_reject_bucket, &zero);
	if (!b)
		return false;
	__u64 now = bpf_ktime_get_ns();
	__u64 credit = b->credit + (now - b->last);
	if (credit > ntf_reject_burst_ns || now < b->last)
		credit = ntf_reject_burst_ns;
	b->last = now;
	if (credit < ntf_reject_cost_ns) {
		b->credit = credit;
		return false;
	}
	b->credit = credit - ntf_reject_cost_ns;
	return true;
}

// icmp_error reports whether an ICMP (v6: ICMPv6) message of this type is
// itself an error, which is never answered (RFC 1122 §3.2.2, RFC 4443
// §2.4(e)).
static __always_inline bool icmp_error(__u8 type, bool v6)
{
	if (v6)
		return type < 128;
	return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

// v4_unicast: not 0.0.0.0, not multicast (224/4), not the limited
// broadcast. addr is in network order.
static __always_inline bool v4_unicast(__u32 addr)
{
	__u32 a = bpf_ntohl(addr);
	return a != 0 && (a >> 28) != 0xe && a != 0xffffffff;
}

enum reject_result {
	REJECT_SENT,    // the packet is now the reply: redirect it
	REJECT_NOT,     // nothing to answer (or not allowed to): drop
	REJECT_FAILED,  // the reply could not be made: drop
	REJECT_LIMITED, // this CPU's budget of replies is spent: drop
};

// make_reject turns the denied packet into its ICMP error in place (SPEC §1
// rule 4): the new IP and ICMP headers and the quoted start of the packet
// are written at its IP header, behind whatever link-layer header it has
// (Ethernet with any VLAN tags, or none on an L3 device), the packet is cut
// or grown to fit and, on Ethernet, its MAC addresses are swapped so that
// it arrives for this host. Cilium answers in the same way
// (bpf/lib/icmp6.h, nodeport.h). A global function, verified once rather than
// once per way of reaching the reply (a static one is verified at each: 6.1's
// verifier then passed its 1M-instruction limit); its buffers are a per-CPU
// map entry, off ntf_egress's stack.
__attribute__((noinline)) int make_reject(struct __sk_buff *skb, __u32 l2, __u32 l3, __u32 l4, __u32 meta)
{
	__u32 zero = 0;
	__u8 proto = meta & 0xff;
	bool frag = meta >> 8;
	struct ntf_reject_buf *b = bpf_map_lookup_elem(&ntf_reject_scratch, &zero);
	if (!b || l3 > 256 || l3 >= skb->len)
		return REJECT_FAILED;
	if (frag)
		return REJECT_NOT; // the first fragment was judged and answered
	__u8 ver = 0;
	if (bpf_skb_load_bytes(skb, l3, &ver, 1))
		return REJECT_FAILED;
	bool v6 = ver >> 4 == 6;
	if (!v6 && ver >> 4 != 4)
		return REJECT_FAILED;
	if (proto == (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP)) {
		__u8 type;
		if (bpf_skb_load_bytes(skb, l4, &type, 1) || icmp_error(type, v6))
			return REJECT_NOT;
	}
	__u32 len = skb->len - l3;
	__u32 q;
	if (v6) {
		q = len < NTF_REJECT_QUOTE6 ? len : NTF_REJECT_QUOTE6;
		if (q < 40)
			return REJECT_FAILED;
	} else {
		__u32 want = (ver & 0xf) * 4 + 8;
		q = len < want ? len : want;
		if (q < 20)
			return REJECT_FAILED;
	}
	// A bound the verifier can see: q is at most NTF_REJECT_QUOTE6.
	q &= 2047;
	if (q > NTF_REJECT_QUOTE6)
		return REJECT_FAILED;
	// Zero the word the quote ends in (the one holding byte q - 1), so
	// that the checksum can sum whole words; the load then writes the
	// quote's part of it. Masked rather than subtracted from a bound: the
	// compiler tests "pad == 0" for "pad < 4", from which 6.1's verifier
	// learns no lower bound, and pad - 4 was unbounded there.
	__u32 last = (q - 1) & 0x7fc;
	if (last > NTF_REJECT_QUOTE6 - 4)
		return REJECT_FAILED;
	*(__u32 *)&b->quote[last] = 0;
	__u32 pad = last + 4;
	// The length again, bounded on the register the call takes: 6.1's
	// verifier does not carry the bounds checked above to the compiler's
	// copy of q, nor a lower bound from them (the size must not be 0).
	__u32 n = ((q - 1) & 2047) + 1;
	barrier_var(n);
	if (n > NTF_REJECT_QUOTE6)
		return REJECT_FAILED;
	if (bpf_skb_load_bytes(skb, l3, b->quote, n))
		return REJECT_FAILED;

	__u32 hl;
	__s64 sum;
	if (v6) {
		__u8 *ip = b->hdr, *icmp = b->hdr + 40;
		if ((b->quote[24] == 0xff) || (b->quote[8] == 0xff)) // multicast destination or source
			return REJECT_NOT;
		__u32 *src = (__u32 *)&b->quote[8];
		if (!(src[0] | src[1] | src[2] | src[3])) // the unspecified source
			return REJECT_NOT;
		hl = 48;
		__builtin_memset(b->hdr, 0, sizeof(b->hdr));
		__builtin_memset(b->pseudo, 0, sizeof(b->pseudo));
		ip[0] = 0x60;
		*(__u16 *)&ip[4] = bpf_htons(8 + q);
		ip[6] = IPPROTO_ICMPV6;
		ip[7] = 64;
		__builtin_memcpy(&ip[8], &b->quote[24], 16); // from the denied destination
		__builtin_memcpy(&ip[24], &b->quote[8], 16); // to the sender
		icmp[0] = 1; // destination unreachable
		icmp[1] = 1; // communication administratively prohibited
		// RFC 8200 §8.1: addresses, upper-layer length, next header.
		__builtin_memcpy(b->pseudo, &ip[8], 32);
		*(__u32 *)&b->pseudo[32] = bpf_htonl(8 + q);
		b->pseudo[39] = IPPROTO_ICMPV6;
		sum = bpf_csum_diff(NULL, 0, (__be32 *)b->pseudo, 40, 0);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)icmp, 8, sum);
	} else {
		__u8 *ip = b->hdr, *icmp = b->hdr + 20;
		__u32 saddr = *(__u32 *)&b->quote[12], daddr = *(__u32 *)&b->quote[16];
		// Non-first fragments carry no header to quote; the first was
		// judged and answered.
		if ((b->quote[6] & 0x1f) | b->quote[7])
			return REJECT_NOT;
		if (!v4_unicast(saddr) || !v4_unicast(daddr))
			return REJECT_NOT;
		hl = 28;
		__builtin_memset(b->hdr, 0, 28);
		ip[0] = 0x45;
		ip[1] = b->quote[1] & 0xfc; // the sender's DSCP, no ECN
		*(__u16 *)&ip[2] = bpf_htons(28 + q);
		ip[6] = 0x40; // don't fragment
		ip[8] = 64;
		ip[9] = IPPROTO_ICMP;
		*(__u32 *)&ip[12] = daddr;
		*(__u32 *)&ip[16] = saddr;
		*(__u16 *)&ip[10] = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)ip, 20, 0));
		icmp[0] = 3;  // destination unreachable
		icmp[1] = 13; // communication administratively prohibited (RFC 1812)
		sum = bpf_csum_diff(NULL, 0, (__be32 *)icmp, 8, 0);
	}
	// Only answerable packets spend the budget; a flood of them gets
	// a trickle of answers, the rest are dropped like any other.
	if (!take_token())
		return REJECT_LIMITED;
	// The quote's sum, in pieces the helper takes (512 bytes at most).
	if (pad > 1024) {
		sum = bpf_csum_diff(NULL, 0, (__be32 *)b->quote, 512, sum);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&b->quote[512], 512, sum);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&b->quote[1024], (pad - 1024) & 0x1fc, sum);
	} else if (pad > 512) {
		sum = bpf_csum_diff(NULL, 0, (__be32 *)b->quote, 512, sum);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&b->quote[512], (pad - 512) & 0x3fc, sum);
	} else {
		sum = bpf_csum_diff(NULL, 0, (__be32 *)b->quote, pad & 0x3fc, sum);
	}
	*(__u16 *)&b->hdr[hl - 6] = csum_fold(sum);

	if (bpf_skb_change_tail(skb, l3 + hl + q, 0))
		return REJECT_FAILED;
	if (l2) {
		if (bpf_skb_load_bytes(skb, 0, b->mac, 12))
			return REJECT_FAILED;
		__u8 *m = b->mac;
		__u8 t[6];
		__builtin_memcpy(t, m, 6);
		__builtin_memcpy(m, m + 6, 6);
		__builtin_memcpy(m + 6, t, 6);
		if (bpf_skb_store_bytes(skb, 0, b->mac, 12, 0))
			return REJECT_FAILED;
	}
	long err = v6 ? bpf_skb_store_bytes(skb, l3, b->hdr, 48, 0) : bpf_skb_store_bytes(skb, l3, b->hdr, 28, 0);
	if (err || bpf_skb_store_bytes(skb, l3 + hl, b->quote, n, 0))
		return REJECT_FAILED;
	return REJECT_SENT;
}

// reject answers a denied packet of a local socket, within this CPU's
// budget, and drops it otherwise.
static __always_inline int reject(struct __sk_buff *skb, const struct ntf_iface *ifc, const struct pkt *p)
{
	switch (make_reject(skb, ifc->l2_len, p->l3off, p->l4off, (__u32)p->proto | (__u32)p->frag << 8)) {
	case REJECT_SENT:
		count(NTF_CNT_REJECTED);
		// Back in through the device it was leaving by: the stack
		// delivers it to the sending socket.
		return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
	case REJECT_FAILED:
		count(NTF_CNT_REJECT_FAILED);
		break;
	case REJECT_LIMITED:
		count(NTF_CNT_REJECT_LIMITED);
		break;
	}
	return TC_ACT_SHOT;
}

// live_policy reads the slot in force, the staged one (0: none) and the
// live slot's epoch (0: no caching). False: no policy was ever written.
static __always_inline bool live_policy(__u32 *s, __u32 *staged, __u64 *epoch)
{
	__u32 zero = 0;
	__u64 *word = bpf_map_lookup_elem(&ntf_active, &zero);
	if (!word)
		return false;
	__u64 active = *word;
	*s = active & NTF_SLOT_MASK;
	*staged = (active >> NTF_STAGED_SLOT_SHIFT) & NTF_SLOT_MASK;
	__u32 ek = NTF_EPOCHS + *s;
	__u64 *ep = bpf_map_lookup_elem(&ntf_active, &ek);
	*epoch = ep ? *ep : 0;
	return true;
}

// fast_allow passes the common packet whole, with as few loads as can
// decide it: a live policy with nothing staged, a header fast_parse reads,
// a destination this CPU's verdict cache holds for the policy, filled by a
// packet of the same interface, and a verdict that allows the packet by the
// cache entry alone (and the socket's uid). Two lines of map memory: the
// slot word's, and the entry's, which holds what the interface contributes
// (its counter, its header length, whether it logs every packet), so that
// the interface cache is not read. It counts the packet where ntf_egress
// would, and returns true. Anything else returns false having counted and
// cached nothing, and ntf_egress judges the packet from the start: the
// second parse of a packet that is denied, logged or odd costs less than
// what the common one saves by not carrying ntf_egress's state (~250
// instructions, most of them moving that state between registers and the
// stack).
static __always_inline bool fast_allow(struct __sk_buff *skb, struct pkt *p)
{
	__u32 s, staged;
	__u64 epoch;
	if (!live_policy(&s, &staged, &epoch) || staged || !epoch)
		return false;

	// The header length is the interface's, which only the entry says:
	// an Ethernet header is taken for one where its type is the packet's
	// protocol, and the entry is a hit only if its interface has one
	// (NTF_VERDICT_ETHER) just when this packet was taken for having one,
	// so a wrong guess parses a wrong destination that no entry of this
	// interface can hold with this guess.
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	bool ether = (void *)(eth + 1) <= end && eth->h_proto == skb->protocol;
	// fast_parse writes every field read here.
	if (!fast_parse(skb, ether ? ETH_HLEN : 0, p))
		return false;
	struct bpf_sock *sk = skb->sk;
	bool unowned = !sk || sk->state == BPF_TCP_TIME_WAIT;
	__u32 tp = (__u32)p->proto << 24 | (__u32)p->frag << 16 | p->dport;
	bool v6 = p->family == 6;

	__u32 key = verdict_key(p->dst, v6);
	struct ntf_verdict_entry *e = bpf_map_lookup_elem(&ntf_verdict_cache, &key);
	if (!e)
		return false;
	__u32 seq = READ_ONCE(e->seq);
	barrier();
	__u16 flags = e->flags;
	__u16 want = NTF_VERDICT_FAST | (ether ? NTF_VERDICT_ETHER : 0);
	if ((seq & 1) || e->epoch != epoch || e->ifindex != skb->ifindex || (e->table & 1) != v6 ||
	    (flags & (NTF_VERDICT_FAST | NTF_VERDICT_ETHER)) != want || e->dst[0] != p->dst[0] ||
	    e->dst[1] != p->dst[1] || e->dst[2] != p->dst[2] || e->dst[3] != p->dst[3] ||
	    ((flags & NTF_VERDICT_NARROWED) && e->tp != tp))
		return false;
	__u32 uid = NTF_UID_UNOWNED;
	bool allowed;
	if (!entry_allows(skb, e, flags, unowned, &uid, &allowed) || !allowed)
		return false;
	__u32 hits = e->hits;
	barrier();
	if (READ_ONCE(e->seq) != seq)
		return false;
	// Counted in the entry rather than in ntf_traffic's two lines. Nothing
	// else writes this CPU's entry between the check above and the add:
	// tc programs do not nest on a CPU (they run with bottom halves off).
	if (hits < NTF_VERDICT_HITS_MAX)
		e->hits = hits + 1;
	else
		count_verdict(e->icounter, e->counter, true);
	return true;
}

SEC("tc")
int ntf_egress(struct __sk_buff *skb)
{
	// Also the packet ntf_egress parses again from the start where
	// fast_allow leaves it: one frame fewer on a stack at its limit.
	struct pkt p;
	if (fast_allow(skb, &p))
		return TC_ACT_UNSPEC;
	// Every part of the policy is taken from the same slot.
	__u32 s, staged;
	__u64 epoch;
	if (!live_policy(&s, &staged, &epoch))
		return TC_ACT_SHOT;

	struct query q = {.epoch = epoch, .s = s, .uid = NTF_UID_UNOWNED};
	struct ntf_iface *ifc = &q.ifc;
	bool live = true; // the live policy filters the interface
	switch (find_iface(skb->ifindex, s, epoch, ifc)) {
	case IFACE_NO_POLICY:
		// Attached before any policy was written: fail closed.
		count(NTF_CNT_NO_POLICY);
		return TC_ACT_SHOT;
	case IFACE_UNFILTERED:
		// Still attached to an interface the policy no longer filters
		// (user space detaches it next), or attached for a staged
		// candidate that filters it: the packet passes, and only the
		// candidate judges it, against the live policy's pass. ifc is
		// the candidate's from here on (its layout, its log setting).
		count(NTF_CNT_UNFILTERED);
		if (!staged || find_iface(skb->ifindex, staged, 0, ifc) != IFACE_OK)
			return TC_ACT_UNSPEC;
		live = false;
		break;
	case IFACE_OK:
		break;
	}

	p = (struct pkt){};
	if (!fast_parse(skb, ifc->l2_len, &p)) {
		p = (struct pkt){};
		switch (parse(skb, &p, ifc->l2_len)) {
		case PARSE_NOT_IP:
			if (live)
				count(NTF_CNT_NOT_IP);
			return TC_ACT_UNSPEC;
		case PARSE_MALFORMED:
			if (!live)
				return TC_ACT_UNSPEC; // not the candidate's to drop
			count(NTF_CNT_MALFORMED);
			return TC_ACT_SHOT;
		case PARSE_OK:
			break;
		}
	}

	// The uid is asked for only when a range's verdict depends on it: the
	// helper is the dearest step of the common path.
	bool unowned = false;
	struct bpf_sock *sk = skb->sk;
	// No socket: forwarded, or made by the kernel without one. A TIME_WAIT
	// socket has no owner left; the uid helper would say "nobody", which
	// is a user like any other.
	if (!sk || sk->state == BPF_TCP_TIME_WAIT)
		unowned = true;

	q.table = ifc->table * 2 + (p.family == 6);
	// Every address of a source route is judged for the same transport.
	q.tp = (__u32)p.proto << 24 | (__u32)p.frag << 16 | p.dport;
	q.unowned = unowned;
	if (!live) {
		q.v.allowed = 1;
	} else if (!decide_cached(skb, epoch, q.table, p.dst, q.tp, unowned, &q.uid, &q.v)) {
		__builtin_memcpy(q.addr, p.dst, 16);
		decide_at(skb, &q);
	}
	struct verdict v = q.v;
	bool no_policy = q.no_policy;
	__u32 uid = q.uid;
	const __u32 *judged = p.dst;
	bool judged_v4 = p.family == 4;
	struct hops *h = NULL;
	// An audited destination is judged on: a route address that is
	// denied for good still drops the packet (SPEC §1 rule 6).
	if (live && (v.allowed || v.audit) && p.route_n) {
		h = bpf_map_lookup_elem(&ntf_route_scratch, (const void *)&ntf_scratch_key);
		if (!h || h->busy) {
			count(NTF_CNT_MALFORMED);
			return TC_ACT_SHOT;
		}
		// Field by field: a compound literal is built on the stack
		// first, which the stack cannot spare (6.1 counts every frame
		// of the deepest call chain, rounded up to 32 bytes, in 512).
		__builtin_memset(h, 0, sizeof(*h));
		h->q = q;
		h->off = p.route_off;
		h->len = p.route_len;
		h->n = p.route_n;
		h->busy = 1;
		judge_route(skb, h);
		bool malformed = h->malformed;
		no_policy |= h->no_policy;
		uid = h->q.uid;
		if (h->denied && (v.allowed || !h->v.audit)) {
			v = h->v;
			judged = h->judged;
			judged_v4 = h->judged_v4;
		}
		if (malformed || no_policy) {
			h->busy = 0;
			count(malformed ? NTF_CNT_MALFORMED : NTF_CNT_NO_POLICY);
			return TC_ACT_SHOT;
		}
	}
	if (no_policy) {
		count(NTF_CNT_NO_POLICY);
		return TC_ACT_SHOT;
	}
	// Audit mode turns a deny into a pass, on the deny path only.
	bool audited = !v.allowed && v.audit;
	// A staged policy judges the packet too, after the live verdict is
	// final and without a way to change it.
	struct stage *st = NULL;
	if (staged) {
		st = bpf_map_lookup_elem(&ntf_stage_scratch, (const void *)&ntf_scratch_key);
		if (st) {
			__builtin_memset(st, 0, sizeof(*st)); // as h's above
			st->q = q;
			st->k.live_rule = v.rule;
			st->k.live_action = action_of(v);
			st->v6 = p.family == 6;
			st->q.s = staged;
			st->q.epoch = 0;
			st->q.uid = uid;
			__builtin_memcpy(st->q.addr, p.dst, 16);
			judge_staged(skb);
			uid = st->q.uid; // the owner is read once
		}
	}
	if (!live) {
		// Counted as unfiltered above: the live counters are not its.
	} else if (audited) {
		count_in(&ntf_iface_audited, ifc->counter & (NTF_MAX_COUNTERS - 1));
		count_in(&ntf_endpoint_audited, v.counter & (NTF_MAX_COUNTERS - 1));
	} else {
		count_verdict(ifc->counter, v.counter, v.allowed);
	}
	// An audited packet is logged where a denied one would be.
	if (ifc->log == NTF_LOG_ALL || (ifc->log == NTF_LOG_DENIED && !v.allowed) || (st && st->emit)) {
		// Events name the owner even where the verdict did not need it.
		if (!unowned && uid == NTF_UID_UNOWNED)
			uid = socket_uid(skb);
		emit(skb, ifc, &p, judged, judged_v4, v, uid, unowned, st);
	}
	if (h) // judged points into it until here
		h->busy = 0;
	if (v.allowed || audited)
		return TC_ACT_UNSPEC;
	// SPEC §1 rule 4: a local sender is told at once, unless the policy
	// says drop; forwarded packets never are.
	if (unowned || v.silent)
		return TC_ACT_SHOT;
	return reject(skb, ifc, &p);
}

// The kernel's cgroup and kernfs structures, as far as the tracepoints read
// them (CO-RE). The parent is taken through the cgroup's own css, whose path
// is the same from 6.1 to 6.18 (kernfs_node's parent was renamed in 6.15).
struct kernfs_node___ntf {
	const char *name;
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup_root___ntf {
	int hierarchy_id;
} __attribute__((preserve_access_index));

struct cgroup___ntf;

struct cgroup_subsys_state___ntf {
	struct cgroup___ntf *cgroup;
	struct cgroup_subsys_state___ntf *parent;
} __attribute__((preserve_access_index));

struct cgroup___ntf {
	struct cgroup_subsys_state___ntf self;
	struct kernfs_node___ntf *kn;
	struct cgroup_root___ntf *root;
} __attribute__((preserve_access_index));

// The cgroup v2 hierarchy is the default root, the first hierarchy the
// kernel sets up: id 0. cgroup v1 hierarchies (hybrid hosts) number their
// directories in id spaces of their own, which must never reach the map.
static __always_inline bool cgroup_v2(struct cgroup___ntf *cg)
{
	return BPF_CORE_READ(cg, root, hierarchy_id) == 0;
}

// ntf_cgroup_mkdir decides what a new cgroup is from its parent's entry
// and its name. It runs under cgroup_mutex before the directory is made
// visible (kernfs_activate), so the entry exists before any process can be
// in the cgroup, with or without the daemon running. Directories outside
// every watched path and its ancestors cost one lookup.
SEC("raw_tracepoint/cgroup_mkdir")
int ntf_cgroup_mkdir(struct bpf_raw_tracepoint_args *ctx)
{
	struct cgroup___ntf *cg = (void *)ctx->args[0];
	if (!cgroup_v2(cg))
		return 0;
	__u64 parent = BPF_CORE_READ(cg, self.parent, cgroup, kn, id);
	struct ntf_cg *pc = bpf_map_lookup_elem(&ntf_cgroups, &parent);
	if (!pc)
		return 0;
	struct ntf_cg c = {.bits = READ_ONCE(pc->bits)};
	__u32 node = READ_ONCE(pc->node);
	if (node) {
		struct ntf_cg_step k = {.node = node}; // zeroed: the name is NUL-padded
		const char *name = BPF_CORE_READ(cg, kn, name);
		if (bpf_probe_read_kernel_str(k.name, sizeof(k.name), name) > 0) {
			struct ntf_cg *n = bpf_map_lookup_elem(&ntf_cg_watch, &k);
			if (n) {
				c.bits |= n->bits;
				c.node = n->node;
			}
		}
	}
	if (!c.bits && !c.node)
		return 0;
	__u64 id = BPF_CORE_READ(cg, kn, id);
	if (bpf_map_update_elem(&ntf_cgroups, &id, &c, BPF_ANY))
		count(NTF_CNT_CGROUPS_FULL); // its sockets match no cgroup principal
	return 0;
}

// ntf_cgroup_release forgets a cgroup once its last reference is gone: a
// socket holds one, so a removed cgroup's remaining sockets keep their
// identity until they close.
SEC("raw_tracepoint/cgroup_release")
int ntf_cgroup_release(struct bpf_raw_tracepoint_args *ctx)
{
	struct cgroup___ntf *cg = (void *)ctx->args[0];
	if (!cgroup_v2(cg))
		return 0;
	__u64 id = BPF_CORE_READ(cg, kn, id);
	bpf_map_delete_elem(&ntf_cgroups, &id);
	return 0;
}
