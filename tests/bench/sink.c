// SPDX-License-Identifier: GPL-3.0-or-later
/*
 * The far end of the relay benchmark: counts and drops the relayed stream (IPv4 UDP to port 5004)
 * as it arrives on the far end's veth, so the receiving host's stack costs the same (nothing) in
 * both runs and no receiver process competes for the two cores. Everything else (ARP, the SBC's
 * own datagrams) passes. Built by tests/bench/relay.py; never part of the product.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp = data + sizeof(*eth) + sizeof(*ip);
	__u32 zero = 0;
	__u64 *count;

	if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP || udp->dest != bpf_htons(5004))
		return XDP_PASS;
	count = bpf_map_lookup_elem(&sink_count, &zero);
	if (count)
		*count += 1;
	return XDP_DROP;
}
