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

/* Per-CPU so the hot path never contends on a shared cache line; userspace sums. One element
 * holding every counter: the program looks it up once per packet. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sbc_counters);
} sbc_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sbc_config);
} sbc_config SEC(".maps");

/* Keyed by ifindex (DEVMAP_HASH), so large ifindexes need no sparse array. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, SBC_MAX_EGRESS);
	__type(key, __u32);
	__type(value, __u32);
} sbc_egress SEC(".maps");

static __always_inline void count(struct sbc_counters *cnt, enum sbc_counter idx)
{
	cnt->count[idx] += 1;
}

static __always_inline void count_n(struct sbc_counters *cnt, enum sbc_counter idx, __u64 n)
{
	cnt->count[idx] += n;
}

#endif /* SBC_BPF_MAPS_H */
