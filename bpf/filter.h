/* SPDX-License-Identifier: GPL-2.0-only */
/* Layout shared by the kernel program and its Go encoder (bpf/encode.go). */
#ifndef NTF_FILTER_H
#define NTF_FILTER_H

#include <linux/types.h>

#define NTF_SLOTS 2
#define NTF_MAX_IFACES 4096
#define NTF_MAX_EXT_HDRS 8
#define NTF_RINGBUF_BYTES (1 << 22)

/* Owner uid reported for packets without a socket. Never a valid uid. */
#define NTF_UID_UNOWNED 0xffffffff

enum ntf_counter {
	NTF_CNT_ALLOWED,
	NTF_CNT_DENIED,
	NTF_CNT_NOT_IP,
	NTF_CNT_MALFORMED,
	NTF_CNT_UNFILTERED,
	NTF_CNT_NO_POLICY,
	NTF_CNT_EVENTS_LOST,
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
	__u8 pad;
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
};

struct ntf_range {
	__u32 rule;   /* 1-based id of (table, prefix), for the decision log */
	__u32 owners; /* owner set whose uids may pass */
	__u32 flags;  /* NTF_RANGE_* */
};

struct ntf_owner_key {
	__u32 set;
	__u32 uid;
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
};

#endif
