/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Bounds-checked cursor parsing: every header is taken through cursor_take(), which
 * checks it against data_end, the only way the verifier accepts packet reads.
 */
#ifndef SBC_BPF_PARSING_H
#define SBC_BPF_PARSING_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

struct cursor {
	void *pos;
	void *end;
};

/* Returns a pointer to the next `len` bytes and advances, or NULL if the packet is shorter. */
static __always_inline void *cursor_take(struct cursor *c, __u32 len)
{
	void *p = c->pos;

	if (p + len > c->end)
		return NULL;
	c->pos = p + len;
	return p;
}

#define CURSOR_TAKE(c, type) ((type *)cursor_take((c), sizeof(type)))

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

/* Longest VLAN stack parsed (802.1ad outer + 802.1Q inner); the loop bound for the verifier. */
#define SBC_MAX_VLAN_DEPTH 2

static __always_inline int proto_is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

/*
 * Ethernet plus up to SBC_MAX_VLAN_DEPTH tags. Returns the L3 EtherType (network
 * order), 0 if truncated; *tagged tells whether any tag was present.
 */
static __always_inline __be16 parse_ethernet(struct cursor *c, struct ethhdr **eth, int *tagged)
{
	struct vlan_hdr *vlan;
	__be16 proto;
	int i;

	*eth = CURSOR_TAKE(c, struct ethhdr);
	if (!*eth)
		return 0;
	proto = (*eth)->h_proto;
	*tagged = 0;
#pragma unroll
	for (i = 0; i < SBC_MAX_VLAN_DEPTH; i++) {
		if (!proto_is_vlan(proto))
			break;
		vlan = CURSOR_TAKE(c, struct vlan_hdr);
		if (!vlan)
			return 0;
		*tagged = 1;
		proto = vlan->encapsulated_proto;
	}
	return proto;
}

/* RTP fixed header, RFC 3550 section 5.1. */
struct rtp_hdr {
	__u8 vpxcc;    /* V:2 P:1 X:1 CC:4 */
	__u8 mpt;      /* M:1 PT:7 */
	__be16 seq;
	__be32 ts;
	__be32 ssrc;
};

#endif /* SBC_BPF_PARSING_H */
