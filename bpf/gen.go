// SPDX-License-Identifier: Apache-2.0

// Package bpf is the kernel side of net-tc-filter: the tc egress program, the
// encoding of a compiled policy into its maps, attaching (tcx or clsact),
// pinning, the atomic policy swap and the decision event reader.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -mcpu=v3 -g -Wall -Werror -nostdinc -Iheaders" -target bpfel -type ntf_event -type ntf_iface -type ntf_range_key -type ntf_range -type ntf_owner_key -type ntf_counter -type ntf_range_flags -type ntf_log -type ntf_iface_flags -type ntf_action -type ntf_diff_key -type ntf_verdict_entry -type ntf_cg_step -type ntf_cg -type ntf_bucket -type ntf_traffic_block filter filter.c
