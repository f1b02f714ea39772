/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */

// The kernel definitions the tc program uses, and only those: what
// linux/types.h, linux/bpf.h, linux/if_ether.h, linux/in.h, linux/in6.h and
// linux/pkt_cls.h would give it, written out from the kernel's UAPI headers
// (GPL-2.0 WITH Linux-syscall-note) as cilium/ebpf's
// examples/headers/common.h does, so that the build reads no header of the
// host and is the same for every little-endian target. They are the
// kernel's user-space ABI, which only grows: numbers and layouts never
// change. struct __sk_buff and struct bpf_sock are the context the verifier
// checks accesses against by offset, so they are whole, as in kernel 6.1.

#ifndef NTF_UAPI_H
#define NTF_UAPI_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;

// stdbool.h, without the compiler's own include directory (-nostdinc).
typedef _Bool bool;
#define true 1
#define false 0

#ifndef NULL
#define NULL ((void *)0)
#endif

// linux/bpf.h

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_PERCPU_HASH = 10,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_F_NO_PREALLOC = (1U << 0),
	BPF_F_MMAPABLE = (1U << 10),
};

// Flags of bpf_map_update_elem.
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

// The context of a raw tracepoint program: the tracepoint's arguments.
struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

// Socket states as struct bpf_sock reports them.
enum {
	BPF_TCP_TIME_WAIT = 6,
	BPF_TCP_NEW_SYN_RECV = 12,
};

#define __bpf_md_ptr(type, name) \
	union {                  \
		type name;       \
		__u64 : 64;      \
	} __attribute__((aligned(8)))

struct bpf_flow_keys;

struct bpf_sock {
	__u32 bound_dev_if;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 mark;
	__u32 priority;
	__u32 src_ip4;
	__u32 src_ip6[4];
	__u32 src_port;
	__be16 dst_port;
	__u16 : 16;
	__u32 dst_ip4;
	__u32 dst_ip6[4];
	__u32 state;
	__s32 rx_queue_mapping;
};

struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
	__u32 napi_id;
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 data_meta;
	__bpf_md_ptr(struct bpf_flow_keys *, flow_keys);
	__u64 tstamp;
	__u32 wire_len;
	__u32 gso_segs;
	__bpf_md_ptr(struct bpf_sock *, sk);
	__u32 gso_size;
	__u8 tstamp_type;
	__u32 : 24;
	__u64 hwtstamp;
};

// linux/pkt_cls.h

#define TC_ACT_UNSPEC (-1) // tcx: TCX_NEXT, let later programs judge
#define TC_ACT_SHOT 2
#define TC_ACT_REDIRECT 7
// linux/bpf.h: bpf_redirect() flags
#define BPF_F_INGRESS (1ULL << 0)

// linux/if_ether.h

#define ETH_ALEN 6
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_8021Q 0x8100
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021AD 0x88A8

struct ethhdr {
	unsigned char h_dest[ETH_ALEN];
	unsigned char h_source[ETH_ALEN];
	__be16 h_proto;
} __attribute__((packed));

// linux/in.h and linux/in6.h

enum {
	IPPROTO_HOPOPTS = 0,
	IPPROTO_ICMP = 1,
	IPPROTO_TCP = 6,
	IPPROTO_UDP = 17,
	IPPROTO_ROUTING = 43,
	IPPROTO_FRAGMENT = 44,
	IPPROTO_AH = 51,
	IPPROTO_ICMPV6 = 58,
	IPPROTO_DSTOPTS = 60,
	IPPROTO_SCTP = 132,
	IPPROTO_UDPLITE = 136,
};

#endif
