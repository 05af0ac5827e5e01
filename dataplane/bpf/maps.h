/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Map definitions (libbpf BTF style). Names, sizes and types come from the ABI header. */
#ifndef SBC_BPF_MAPS_H
#define SBC_BPF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "sbc_dataplane.h"

/* A plain HASH, not LRU: LRU evicts live calls' entries before it is full. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SBC_MAX_SESSIONS);
	__type(key, struct sbc_session_key);
	__type(value, struct sbc_session);
} sbc_sessions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SBC_MAX_BLOCKED);
	__type(key, struct sbc_block_key);
	__type(value, struct sbc_block);
} sbc_blocklist SEC(".maps");

/* Per-CPU so the hot path never contends on a shared cache line; userspace sums. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SBC_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sbc_counters SEC(".maps");

/* Keyed by ifindex (DEVMAP_HASH), so large ifindexes need no sparse array. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, SBC_MAX_EGRESS);
	__type(key, __u32);
	__type(value, __u32);
} sbc_egress SEC(".maps");

static __always_inline void count(enum sbc_counter idx)
{
	__u32 key = idx;
	__u64 *slot = bpf_map_lookup_elem(&sbc_counters, &key);

	if (slot)
		*slot += 1;
}

static __always_inline void count_n(enum sbc_counter idx, __u64 n)
{
	__u32 key = idx;
	__u64 *slot = bpf_map_lookup_elem(&sbc_counters, &key);

	if (slot)
		*slot += n;
}

#endif /* SBC_BPF_MAPS_H */
