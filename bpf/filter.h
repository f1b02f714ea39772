/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Layout shared by the kernel program and its Go encoder (bpf/encode.go). */
#ifndef NTF_FILTER_H
#define NTF_FILTER_H

#include "uapi.h"

/* Slots 0 and 1 hold the live policy and the one being written; 2 and 3 a
 * staged candidate (SPEC §8) and the one being written. */
#define NTF_SLOTS 4
#define NTF_STAGED_SLOT_SHIFT 8 /* ntf_active[0]: live slot | staged slot << 8 (0: none) */
#define NTF_SLOT_MASK 0xff
#define NTF_EPOCHS 2 /* ntf_active[NTF_EPOCHS + s]: the epoch of slot s */
/* ntf_active[NTF_COUNT_BASE]: the first epoch of the run whose counter
 * indexes ntf_traffic's counts are under (see struct ntf_verdict_entry). */
#define NTF_COUNT_BASE (NTF_EPOCHS + NTF_SLOTS)
#define NTF_STAGED_DIFFS 16384
#define NTF_MAX_IFACES 4096
#define NTF_MAX_EXT_HDRS 8
/* Addresses of an IPv6 routing header that are judged; a longer route is
 * malformed. An IPv4 source route holds at most 9. */
#define NTF_MAX_ROUTE 16
/* The decision events' ring buffer: ~11 900 events of 88 bytes, a tenth
 * of a second of a 110 000 packets/s flood of denials while the daemon is
 * not reading. Its reader maps it twice, which the daemon's RSS counts:
 * 2 MiB (4 MiB made it 8). */
#define NTF_RINGBUF_BYTES (1 << 20)
/* Per-interface and per-endpoint packet counters (ntf_traffic). */
#define NTF_MAX_COUNTERS 4096
#define NTF_TRAFFIC_BLOCK 1024 /* counters per element of ntf_traffic */
#define NTF_TRAFFIC_ENDPOINTS (NTF_MAX_COUNTERS * 2) /* ntf_traffic's first endpoint counter */
#define NTF_TRAFFIC_BLOCKS (NTF_MAX_COUNTERS * 4 / NTF_TRAFFIC_BLOCK)
_Static_assert(NTF_MAX_COUNTERS <= 0x10000, "a verdict cache entry holds counter indexes in 16 bits");
/* Caches in front of the policy maps: entries per CPU, powers of two. */
#define NTF_IFACE_CACHE 64
#define NTF_VERDICT_CACHE 1024

/* Owner uid reported for packets without a socket. Never a valid uid. */
#define NTF_UID_UNOWNED 0xffffffff
/* Owner uid of a socket whose owner could not be read: it matches no listed
 * uid (only "*"), so that a read that failed never lets a packet pass. */
#define NTF_UID_UNKNOWN 0xfffffffe

/* Packets the policy did not decide. Decided ones are counted per interface
 * and per endpoint only: one increment fewer per packet. */
enum ntf_counter {
	NTF_CNT_NOT_IP,
	NTF_CNT_MALFORMED,
	NTF_CNT_UNFILTERED,
	NTF_CNT_NO_POLICY,
	NTF_CNT_EVENTS_LOST,
	/* A new cgroup below a watched path found ntf_cgroups full: its
	 * sockets match no cgroup principal (fail closed). */
	NTF_CNT_CGROUPS_FULL,
	/* Denied packets of local sockets answered with ICMP "administratively
	 * prohibited" (SPEC §1 rule 4); not answered because the per-CPU
	 * budget was spent; not answered because the reply could not be made
	 * (an encapsulated or odd packet): those are dropped silently. */
	NTF_CNT_REJECTED,
	NTF_CNT_REJECT_LIMITED,
	NTF_CNT_REJECT_FAILED,
	NTF_CNT_MAX,
};

enum ntf_log {
	NTF_LOG_NONE,
	NTF_LOG_DENIED,
	NTF_LOG_ALL,
};

/* Value of the per-slot interface map, keyed by ifindex. */
struct ntf_iface {
	__u32 table;      /* range table: LPM tables table*2 (IPv4) and table*2+1 (IPv6) */
	__u32 generation; /* policy generation, carried into events */
	__u8 default_allow;
	__u8 l2_len; /* 14 (Ethernet) or 0 (L3 device) */
	__u8 log;    /* enum ntf_log */
	__u8 flags;  /* enum ntf_iface_flags */
	__u32 counter; /* interface counter: ntf_traffic and ntf_iface_audited */
};

enum ntf_iface_flags {
	/* mode: audit: packets the deny default would drop pass, and are
	 * counted and reported as audited (SPEC §1 rule 5). */
	NTF_IFACE_AUDIT = 1,
	/* deny: drop: default-denied packets are dropped without an answer */
	NTF_IFACE_DROP = 2,
};

/* LPM key: prefixlen counts the 32 bits of table, then the address bits. */
struct ntf_range_key {
	__u32 prefixlen;
	__u32 table;
	__u8 addr[16]; /* IPv4 in the first 4 bytes */
};

enum ntf_range_flags {
	NTF_RANGE_EVERYONE = 1,
	NTF_RANGE_UNOWNED = 2,
	/* The verdict depends on the packet's protocol and port (endpoints
	 * narrowed by proto or ports): `owners` is the number n of the range's
	 * classes, in table NTF_PORTS_TABLE|n of the same trie. */
	NTF_RANGE_NARROWED = 4,
	/* A class that no endpoint decides: the interface default does. */
	NTF_RANGE_DEFAULT = 8,
	/* Every endpoint of the range (or class) is in mode: audit: an owner
	 * it does not allow passes, counted and reported as audited (SPEC §1
	 * rule 4). */
	NTF_RANGE_AUDIT = 16,
	/* Denied packets of local sockets are dropped without an answer
	 * (deny: drop, resolved with the interface's by user space). */
	NTF_RANGE_SILENT = 32,
};

/* The answer to a denied packet (SPEC §1 rule 4): an ICMPv4 error quotes
 * the original header and 8 bytes (RFC 792), an ICMPv6 error as much as
 * fits in the IPv6 minimum MTU (RFC 4443 §2.4(c): 1280 - 40 - 8). */
#define NTF_REJECT_QUOTE6 1232

struct ntf_reject_buf {
	__u8 hdr[48];                        /* new IP header + ICMP header */
	__u8 pseudo[40];                     /* IPv6 pseudo-header */
	/* The quote, zero-padded to a word; sized for three whole pieces
	 * of the 512 bytes bpf_csum_diff sums at a time, so that the
	 * verifier sees every piece inside it. */
	__u8 quote[1536];
	__u8 mac[12];
};

/* Per-CPU token bucket of replies, in nanoseconds of credit. */
struct ntf_bucket {
	__u64 last;
	__u64 credit;
};

/*
 * Tables of classes: key.table is NTF_PORTS_TABLE|n, then key.addr holds
 * the protocol (addr[0]), 1 for a non-first fragment (addr[1]) and the
 * destination port in network order (addr[2..3]). prefixlen 32 matches
 * every protocol (the class of protocols not listed), 40 one protocol
 * (its packets without a listed port), 48 with addr[1]=1 its fragments,
 * 48+k a block of ports. Range tables (table*2+v6) stay below it.
 */
#define NTF_PORTS_TABLE 0x80000000u

struct ntf_range {
	__u32 rule;   /* 1-based id of (table, prefix), for the decision log */
	__u32 owners; /* owner set whose uids may pass; NARROWED: class table */
	__u32 flags;  /* NTF_RANGE_* */
	__u32 counter; /* endpoint counter (ntf_traffic, ntf_endpoint_audited); 0: the interface default */
	/* Cgroup principals whose sockets may pass (bits of ntf_cg.bits);
	 * 0: the socket's cgroup is never asked for. */
	__u64 cgroups;
};

/*
 * Cgroup principals (unit:, cgroup:). Each distinct cgroup path of the
 * policy has a bit. ntf_cgroups records, for every live cgroup v2 directory
 * at or below a watched path (and those on the way to one), the bits of the
 * watched paths it is at or below. The cgroup_mkdir tracepoint fills it in
 * for a new directory before the directory can be entered (kernfs_activate
 * runs after the tracepoint), so a restarted unit's first socket is already
 * known; cgroup_release removes it. Watched paths are a trie of steps
 * (node, directory name) anchored at the cgroup2 root, NTF_CG_ROOT.
 */
#define NTF_CG_NAME 256 /* NAME_MAX + NUL */
#define NTF_CG_ROOT 1
#define NTF_MAX_CGROUPS 16384
#define NTF_MAX_CG_NODES 4096
#define NTF_CG_PRINCIPALS 64

struct ntf_cg_step {
	__u32 node;
	char name[NTF_CG_NAME]; /* NUL-padded */
};

/* Value of a step, and of a tracked cgroup. */
struct ntf_cg {
	__u64 bits; /* step: paths ending here; cgroup: paths it is at or below */
	__u32 node; /* the watch node of this path, whose steps go below it; 0: none */
	__u32 pad;
};

struct ntf_owner_key {
	__u32 set;
	__u32 uid;
};

/*
 * Cache entries are written and read under a sequence count (odd while being
 * written), so a reader never takes a half-written entry for a whole one,
 * and carry the epoch of the policy they were computed from: a swap gives
 * the new policy a new epoch, which invalidates every entry at once.
 */
struct ntf_iface_entry {
	__u32 seq;
	__u32 ifindex;
	__u64 epoch;
	struct ntf_iface ifc;
};


/* What decides for a destination: its range (or the default), with the last
 * owner checked against the range's owner set. */
enum ntf_verdict_flags {
	NTF_VERDICT_OWNED = 1,       /* allowed for every owner */
	NTF_VERDICT_UNOWNED = 2,     /* allowed without a socket */
	NTF_VERDICT_UID_ALLOWED = 4, /* uid is in the owner set */
	NTF_VERDICT_NARROWED = 8,    /* the verdict holds only for packets of transport tp */
	NTF_VERDICT_AUDIT = 16,      /* who is not allowed passes as audited */
	NTF_VERDICT_SILENT = 32,     /* denied packets are not answered (deny: drop) */
	NTF_VERDICT_CGROUPS = 64,    /* the range has cgroup principals: ntf_verdict_cgroups */
	/* Of the interface whose packet filled the entry (ifindex), for
	 * fast_allow: it has an Ethernet header, its packets are not all
	 * logged. */
	NTF_VERDICT_ETHER = 128,
	NTF_VERDICT_FAST = 256,
};

/* Allowed packets an entry counts before they go to ntf_traffic. */
#define NTF_VERDICT_HITS_MAX 0x7fffffff

/* 64 bytes, one cache line: the cache's values start on a page. */
struct ntf_verdict_entry {
	__u32 seq;
	__u32 ifindex; /* the interface whose packet filled the entry */
	__u64 epoch;
	__u32 dst[4];
	__u32 rule;
	__u32 tp;     /* proto << 24 | fragment << 16 | destination port */
	__u32 owners; /* owner set to check; 0: owned packets get `owned` */
	__u32 uid;    /* last uid checked against owners; NTF_UID_UNOWNED: none */
	__u16 table;  /* table*2 + (IPv6); a larger one is never a hit */
	__u16 flags;  /* enum ntf_verdict_flags */
	__u32 pad;
	/*
	 * The packets fast_allow allowed by this entry and counted here rather
	 * than in ntf_traffic (a line fewer per packet): `hits` of them, for
	 * the endpoint counter `counter` and the interface counter `icounter`.
	 * They go to ntf_traffic when the entry is given to another
	 * destination or epoch, unless the entry is an earlier run's (epoch
	 * below ntf_active's NTF_COUNT_BASE: its counter indexes meant other
	 * names). One 8-byte word, which user space reads whole (and after
	 * the epoch) to add it to what it reads of ntf_traffic.
	 */
	__u16 counter;
	__u16 icounter;
	__u32 hits;
};

struct ntf_traffic_block {
	__u64 n[NTF_TRAFFIC_BLOCK];
};

struct ntf_event {
	__u64 ts;
	__u64 cgroup;
	__u32 generation;
	__u32 rule;
	__u32 ifindex;
	__u32 uid;
	__u8 allowed;
	__u8 unowned;
	__u8 family;
	__u8 proto;
	__u16 sport;
	__u16 dport;
	__u8 src[16];
	__u8 dst[16];
	/* Not allowed, and passed: mode: audit (allowed is 0). */
	__u8 audit;
	/* A staged policy decides this packet otherwise (SPEC §8): it would
	 * staged_action it, by its rule staged_rule (0: its default). */
	__u8 staged;
	__u8 staged_action; /* enum ntf_action */
	__u8 pad;
	__u32 staged_rule;
};

enum ntf_action {
	NTF_DENY,
	NTF_ALLOW,
	NTF_AUDIT, /* not allowed, passed by mode: audit */
};

/* Packets a staged policy decides otherwise than the live one, per CPU. */
struct ntf_diff_key {
	__u32 staged_rule; /* 0: the candidate's interface default */
	__u32 live_rule;   /* 0: the live interface default */
	__u32 uid;         /* NTF_UID_UNOWNED: no socket */
	__u8 live_action;  /* enum ntf_action */
	__u8 staged_action;
	__u8 pad[2];
	__u64 cgroup; /* cgroup v2 id of the socket; 0: none */
};

#endif
