// SPDX-License-Identifier: GPL-3.0-or-later
/*
 * sbc_relay: the XDP half of the SBC media relay.
 *
 * A packet to one of the SBC's anchors (local address, UDP port) that has a session
 * entry is rewritten in place (source = the SBC's anchor on the far side, destination
 * = the far end, DSCP, MACs), its checksums are patched incrementally (RFC 1624), and
 * it leaves by XDP_TX or XDP_REDIRECT. Anything the program is not sure about goes to
 * the stack unchanged (XDP_PASS): the userspace slow path owns every decision that
 * needs state the kernel does not have (latching, unknown ports, ICMP, fragments).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "sbc_dataplane.h"
#include "maps.h"
#include "parsing.h"
#include "csum.h"
#include "rtp.h"

char LICENSE[] SEC("license") = "GPL";  /* bpf_fib_lookup is GPL-only */

/* Where the rewritten frame leaves and with which MACs. */
struct egress {
	__u32 ifindex;
	__u8 smac[ETH_ALEN];
	__u8 dmac[ETH_ALEN];
};

/* Ties the ABI enums into the object's BTF (otherwise they are only constants), so
 * the ABI test can check the Python values against the compiled ones. A ".debug_"
 * section is skipped by libbpf without a warning and never reaches the kernel. */
struct sbc_abi_enums {
	enum sbc_session_flag flag;
	enum sbc_counter counter;
};
struct sbc_abi_enums *sbc_abi_enums_anchor __attribute__((unused, section(".debug_sbc_abi")));

static __always_inline int endpoint_eq(const struct sbc_endpoint *a, const struct sbc_endpoint *b)
{
	__u32 wa[5], wb[5];

	__builtin_memcpy(wa, a, sizeof(wa));
	__builtin_memcpy(wb, b, sizeof(wb));
	return ((wa[0] ^ wb[0]) | (wa[1] ^ wb[1]) | (wa[2] ^ wb[2]) | (wa[3] ^ wb[3]) |
		(wa[4] ^ wb[4])) == 0;
}

/* Bytes from `p` to the end of the frame. */
static __always_inline __u32 frame_left(const void *p, const void *end)
{
	return (__u32)((long)end - (long)p);
}

static __always_inline int macs_unset(const struct sbc_session *s)
{
	__u32 w[3];

	__builtin_memcpy(w, s->src_mac, sizeof(w));  /* src_mac and dst_mac are adjacent */
	return (w[0] | w[1] | w[2]) == 0;
}

/* Blocklist (checked before anything else): counts on the entry, honours expiry. */
static __always_inline int source_blocked(const struct sbc_block_key *key)
{
	struct sbc_block *b = bpf_map_lookup_elem(&sbc_blocklist, key);

	if (!b)
		return 0;
	if (b->expires_ns && bpf_ktime_get_ns() > b->expires_ns)
		return 0;
	__sync_fetch_and_add(&b->drops, 1);
	return 1;
}

/*
 * Is this source allowed to use the anchor? Returns an XDP verdict to stop with, or
 * -1 to go on relaying. Symmetric RTP (RFC 4961) latching is done by userspace: a
 * not yet latched entry that allows learning hands unexpected sources to the stack.
 */
static __always_inline int admit_source(struct sbc_counters *cnt, struct sbc_session *s,
					const struct sbc_endpoint *src)
{
	if (s->flags & SBC_F_DROP) {
		count(cnt, SBC_CNT_DROPPED_SESSION);
		return XDP_DROP;
	}
	if (endpoint_eq(&s->expected_src, src))
		return -1;
	if ((s->flags & (SBC_F_LATCH_ALLOWED | SBC_F_LATCHED)) == SBC_F_LATCH_ALLOWED) {
		count(cnt, SBC_CNT_PASSED_LEARNING);
		return XDP_PASS;
	}
	__sync_fetch_and_add(&s->stats.dropped, 1);
	count(cnt, SBC_CNT_DROPPED_SPOOFED);
	return XDP_DROP;
}

/* SBC_F_RTCP_UP: RTCP (the whole entry's traffic with SBC_F_RTCP, else what RFC 5761 classifies
 * as RTCP on a muxed port) is left to the userspace relay, which rewrites it. Decided before any
 * byte is changed. RTCP is a few packets a second: the kernel keeps the RTP. */
static __always_inline int rtcp_goes_up(const struct sbc_session *s, const struct cursor *payload, __u32 udp_len)
{
	const __u8 *head = payload->pos;

	if (!(s->flags & SBC_F_RTCP_UP))
		return 0;
	if (s->flags & SBC_F_RTCP)
		return 1;
	if (udp_len < sizeof(struct udphdr) + 2 || (void *)(head + 2) > payload->end)
		return 0;
	return rtp_classify(head[0], head[1]) == RTP_KIND_RTCP;
}

/* The egress must be the ingress (XDP_TX) or be present in the devmap. Checked before
 * any byte is rewritten, so a refusal can still pass the original packet on. */
static __always_inline int egress_usable(struct xdp_md *ctx, __u32 ifindex)
{
	return ifindex == ctx->ingress_ifindex || bpf_map_lookup_elem(&sbc_egress, &ifindex);
}

static __always_inline __u8 new_tos(const struct sbc_session *s, __u8 tos)
{
	if (s->dscp == SBC_DSCP_KEEP)
		return tos;
	return (__u8)((s->dscp << 2) | (tos & 0x3));  /* keep ECN (RFC 3168 section 5) */
}

/* Common tail: MACs, statistics, verdict. */
static __always_inline int relay_out(struct xdp_md *ctx, struct sbc_counters *cnt, struct sbc_session *s,
				     struct ethhdr *eth,
				     const struct egress *eg, struct cursor *payload, __u64 ip_bytes,
				     __u32 udp_len)
{
	__u64 now = 0;
	struct rtp_hdr *rtp;
	__u8 *head;
	enum rtp_kind kind = RTP_KIND_RTCP;

	__builtin_memcpy(eth->h_dest, eg->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eg->smac, ETH_ALEN);

	__sync_fetch_and_add(&s->stats.packets, 1);
	__sync_fetch_and_add(&s->stats.bytes, ip_bytes);

	if (!(s->flags & SBC_F_RTCP)) {
		/* What is read must be inside the datagram, not in the frame's padding. Two bytes tell
		 * RTCP (its smallest packet is 8 bytes) from RTP, which needs its 12-byte header. */
		kind = RTP_KIND_OTHER;
		head = payload->pos;
		if (udp_len >= sizeof(struct udphdr) + 2 && (void *)(head + 2) <= payload->end)
			kind = rtp_classify(head[0], head[1]);
		if (kind == RTP_KIND_RTP) {
			rtp = udp_len >= sizeof(struct udphdr) + sizeof(struct rtp_hdr) ?
				CURSOR_TAKE(payload, struct rtp_hdr) : NULL;
			if (rtp)
				now = rtp_update(&s->stats.rtp, rtp, s->clock_rate);
			else
				kind = RTP_KIND_OTHER;
		}
	}
	/* RTP reads the clock on sampled packets only (SBC_RTP_JITTER_SAMPLE); the rest is rare */
	if (kind != RTP_KIND_RTP)
		now = bpf_ktime_get_ns();
	if (now)
		s->stats.last_seen_ns = now;
	if (kind == RTP_KIND_RTCP) {
		__sync_fetch_and_add(&s->stats.rtcp_packets, 1);
		count(cnt, SBC_CNT_RTCP);
	}

	count(cnt, SBC_CNT_RELAYED);
	count_n(cnt, SBC_CNT_RELAYED_BYTES, udp_len - sizeof(struct udphdr));
	if (eg->ifindex == ctx->ingress_ifindex) {
		count(cnt, SBC_CNT_TX);
		return XDP_TX;
	}
	count(cnt, SBC_CNT_REDIRECTED);
	return bpf_redirect_map(&sbc_egress, eg->ifindex, 0);
}

static __always_inline int relay_ipv4(struct xdp_md *ctx, struct sbc_counters *cnt, int blocklist,
				      struct cursor *c, struct ethhdr *eth)
{
	struct sbc_session_key key = {};
	struct sbc_endpoint src = {};
	struct sbc_block_key bkey = {};
	struct egress eg = {};
	struct sbc_session *s;
	struct udphdr *udp;
	struct iphdr *iph;
	__be32 saddr, daddr;
	__u32 ip_len, udp_len;
	__u32 addr_delta = 0, ip_delta, l4_delta;
	__u16 old_word, new_word;
	__u8 tos;
	int verdict;

	iph = CURSOR_TAKE(c, struct iphdr);
	if (!iph || iph->version != 4 || iph->ihl < 5) {
		count(cnt, SBC_CNT_MALFORMED);
		return XDP_PASS;
	}
	__builtin_memcpy(bkey.addr, &iph->saddr, 4);
	bkey.family = SBC_AF_INET;
	if (blocklist && source_blocked(&bkey)) {
		count(cnt, SBC_CNT_DROPPED_BLOCKED);
		return XDP_DROP;
	}
	if (iph->ihl != 5) {
		count(cnt, SBC_CNT_IP_OPTIONS);
		return XDP_PASS;
	}
	if (iph->protocol != IPPROTO_UDP) {
		count(cnt, SBC_CNT_NOT_UDP);
		return XDP_PASS;
	}
	if (iph->frag_off & bpf_htons(0x3fff)) {  /* MF or a fragment offset */
		count(cnt, SBC_CNT_FRAGMENT);
		return XDP_PASS;
	}
	udp = CURSOR_TAKE(c, struct udphdr);
	if (!udp) {
		count(cnt, SBC_CNT_MALFORMED);
		return XDP_PASS;
	}
	/* The lengths must agree: the datagram fits in the IP packet, the IP packet in the frame
	 * (Ethernet may pad beyond it). A truncated packet is left to the stack, which drops and
	 * counts it, instead of being relayed as a frame the far end would discard. */
	ip_len = bpf_ntohs(iph->tot_len);
	udp_len = bpf_ntohs(udp->len);
	if (ip_len < sizeof(*iph) + sizeof(*udp) || ip_len > frame_left(iph, c->end) ||
	    udp_len < sizeof(*udp) || udp_len > ip_len - sizeof(*iph)) {
		count(cnt, SBC_CNT_MALFORMED);
		return XDP_PASS;
	}

	__builtin_memcpy(key.local.addr, &iph->daddr, 4);
	key.local.port = udp->dest;
	key.local.family = SBC_AF_INET;
	s = bpf_map_lookup_elem(&sbc_sessions, &key);
	if (!s) {
		count(cnt, SBC_CNT_PASSED_UNKNOWN);
		return XDP_PASS;
	}
	__builtin_memcpy(src.addr, &iph->saddr, 4);
	src.port = udp->source;
	src.family = SBC_AF_INET;
	verdict = admit_source(cnt, s, &src);
	if (verdict >= 0)
		return verdict;
	if (rtcp_goes_up(s, c, udp_len))
		return XDP_PASS;

	if (s->dst.family != SBC_AF_INET || s->new_src.family != SBC_AF_INET) {
		count(cnt, SBC_CNT_FAMILY_MISMATCH);
		return XDP_PASS;
	}
	if ((s->flags & SBC_F_DEC_TTL) && iph->ttl <= 1) {
		count(cnt, SBC_CNT_TTL_EXPIRED);
		return XDP_PASS;
	}
	__builtin_memcpy(&saddr, s->new_src.addr, 4);
	__builtin_memcpy(&daddr, s->dst.addr, 4);
	tos = new_tos(s, iph->tos);

	if (macs_unset(s)) {
		struct bpf_fib_lookup fib = {};

		fib.family = SBC_AF_INET;
		fib.tos = tos;
		fib.l4_protocol = IPPROTO_UDP;
		fib.sport = s->new_src.port;
		fib.dport = s->dst.port;
		fib.tot_len = bpf_ntohs(iph->tot_len);
		fib.ifindex = ctx->ingress_ifindex;
		fib.ipv4_src = saddr;
		fib.ipv4_dst = daddr;
		if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS) {
			count(cnt, SBC_CNT_FIB_FAILED);
			return XDP_PASS;
		}
		eg.ifindex = fib.ifindex;
		__builtin_memcpy(eg.smac, fib.smac, ETH_ALEN);
		__builtin_memcpy(eg.dmac, fib.dmac, ETH_ALEN);
	} else {
		eg.ifindex = s->egress_ifindex;
		__builtin_memcpy(eg.smac, s->src_mac, ETH_ALEN);
		__builtin_memcpy(eg.dmac, s->dst_mac, ETH_ALEN);
	}
	if (!egress_usable(ctx, eg.ifindex)) {
		count(cnt, SBC_CNT_NO_EGRESS);
		return XDP_PASS;
	}

	/* From here on the packet is changed and will be relayed. */
	addr_delta = csum_delta32(addr_delta, iph->saddr, saddr);
	addr_delta = csum_delta32(addr_delta, iph->daddr, daddr);
	ip_delta = addr_delta;
	/* the UDP checksum covers the addresses through the pseudo-header (RFC 768) */
	l4_delta = csum_delta16(addr_delta, udp->source, s->new_src.port);
	l4_delta = csum_delta16(l4_delta, udp->dest, s->dst.port);

	/* version/IHL + TOS form one 16-bit header word, TTL + protocol another */
	__builtin_memcpy(&old_word, iph, 2);
	iph->tos = tos;
	__builtin_memcpy(&new_word, iph, 2);
	ip_delta = csum_delta16(ip_delta, old_word, new_word);
	if (s->flags & SBC_F_DEC_TTL) {
		__builtin_memcpy(&old_word, &iph->ttl, 2);
		iph->ttl -= 1;
		__builtin_memcpy(&new_word, &iph->ttl, 2);
		ip_delta = csum_delta16(ip_delta, old_word, new_word);
	}
	iph->saddr = saddr;
	iph->daddr = daddr;
	iph->check = csum_apply(iph->check, ip_delta);
	if (udp->check)  /* 0 = no checksum over IPv4 (RFC 768): stays 0 */
		udp->check = csum_apply_udp(udp->check, l4_delta);
	udp->source = s->new_src.port;
	udp->dest = s->dst.port;

	return relay_out(ctx, cnt, s, eth, &eg, c, ip_len, udp_len);
}

static __always_inline int relay_ipv6(struct xdp_md *ctx, struct sbc_counters *cnt, int blocklist,
				      struct cursor *c, struct ethhdr *eth)
{
	struct sbc_session_key key = {};
	struct sbc_endpoint src = {};
	struct sbc_block_key bkey = {};
	struct egress eg = {};
	struct in6_addr saddr, daddr;
	struct sbc_session *s;
	struct ipv6hdr *ip6;
	struct udphdr *udp;
	__u32 l4_delta = 0, payload_len, udp_len;
	__u8 *first;
	__u8 tc;
	int verdict, i;

	ip6 = CURSOR_TAKE(c, struct ipv6hdr);
	if (!ip6 || ip6->version != 6) {
		count(cnt, SBC_CNT_MALFORMED);
		return XDP_PASS;
	}
	__builtin_memcpy(bkey.addr, &ip6->saddr, 16);
	bkey.family = SBC_AF_INET6;
	if (blocklist && source_blocked(&bkey)) {
		count(cnt, SBC_CNT_DROPPED_BLOCKED);
		return XDP_DROP;
	}
	/* extension headers (fragments included) are left to the stack */
	if (ip6->nexthdr != IPPROTO_UDP) {
		count(cnt, SBC_CNT_NOT_UDP);
		return XDP_PASS;
	}
	udp = CURSOR_TAKE(c, struct udphdr);
	if (!udp) {
		count(cnt, SBC_CNT_MALFORMED);
		return XDP_PASS;
	}
	/* lengths as for IPv4; a zero UDP checksum is invalid over IPv6 (RFC 8200 section 8.1): the
	 * stack drops it */
	payload_len = bpf_ntohs(ip6->payload_len);
	udp_len = bpf_ntohs(udp->len);
	if (payload_len < sizeof(*udp) || sizeof(*ip6) + payload_len > frame_left(ip6, c->end) ||
	    udp_len < sizeof(*udp) || udp_len > payload_len || udp->check == 0) {
		count(cnt, SBC_CNT_MALFORMED);
		return XDP_PASS;
	}

	__builtin_memcpy(key.local.addr, &ip6->daddr, 16);
	key.local.port = udp->dest;
	key.local.family = SBC_AF_INET6;
	s = bpf_map_lookup_elem(&sbc_sessions, &key);
	if (!s) {
		count(cnt, SBC_CNT_PASSED_UNKNOWN);
		return XDP_PASS;
	}
	__builtin_memcpy(src.addr, &ip6->saddr, 16);
	src.port = udp->source;
	src.family = SBC_AF_INET6;
	verdict = admit_source(cnt, s, &src);
	if (verdict >= 0)
		return verdict;
	if (rtcp_goes_up(s, c, udp_len))
		return XDP_PASS;

	if (s->dst.family != SBC_AF_INET6 || s->new_src.family != SBC_AF_INET6) {
		count(cnt, SBC_CNT_FAMILY_MISMATCH);
		return XDP_PASS;
	}
	if ((s->flags & SBC_F_DEC_TTL) && ip6->hop_limit <= 1) {
		count(cnt, SBC_CNT_TTL_EXPIRED);
		return XDP_PASS;
	}
	__builtin_memcpy(&saddr, s->new_src.addr, 16);
	__builtin_memcpy(&daddr, s->dst.addr, 16);
	first = (__u8 *)ip6;
	/* traffic class straddles bytes 0 and 1: version:4 tc:8 flow label:20 */
	tc = new_tos(s, (__u8)((first[0] << 4) | (first[1] >> 4)));

	if (macs_unset(s)) {
		struct bpf_fib_lookup fib = {};

		fib.family = SBC_AF_INET6;
		fib.l4_protocol = IPPROTO_UDP;
		fib.sport = s->new_src.port;
		fib.dport = s->dst.port;
		fib.tot_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
		fib.ifindex = ctx->ingress_ifindex;
		__builtin_memcpy(fib.ipv6_src, &saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, &daddr, 16);
		if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS) {
			count(cnt, SBC_CNT_FIB_FAILED);
			return XDP_PASS;
		}
		eg.ifindex = fib.ifindex;
		__builtin_memcpy(eg.smac, fib.smac, ETH_ALEN);
		__builtin_memcpy(eg.dmac, fib.dmac, ETH_ALEN);
	} else {
		eg.ifindex = s->egress_ifindex;
		__builtin_memcpy(eg.smac, s->src_mac, ETH_ALEN);
		__builtin_memcpy(eg.dmac, s->dst_mac, ETH_ALEN);
	}
	if (!egress_usable(ctx, eg.ifindex)) {
		count(cnt, SBC_CNT_NO_EGRESS);
		return XDP_PASS;
	}

	/* IPv6 has no header checksum; UDP's pseudo-header has both addresses (RFC 8200 8.1) */
#pragma unroll
	for (i = 0; i < 8; i++) {
		l4_delta = csum_delta16(l4_delta, ip6->saddr.in6_u.u6_addr16[i], saddr.in6_u.u6_addr16[i]);
		l4_delta = csum_delta16(l4_delta, ip6->daddr.in6_u.u6_addr16[i], daddr.in6_u.u6_addr16[i]);
	}
	l4_delta = csum_delta16(l4_delta, udp->source, s->new_src.port);
	l4_delta = csum_delta16(l4_delta, udp->dest, s->dst.port);

	first[0] = (__u8)((first[0] & 0xf0) | (tc >> 4));
	first[1] = (__u8)((first[1] & 0x0f) | (tc << 4));
	if (s->flags & SBC_F_DEC_TTL)
		ip6->hop_limit -= 1;
	ip6->saddr = saddr;
	ip6->daddr = daddr;
	udp->check = csum_apply_udp(udp->check, l4_delta);
	udp->source = s->new_src.port;
	udp->dest = s->dst.port;

	return relay_out(ctx, cnt, s, eth, &eg, c, sizeof(*ip6) + payload_len, udp_len);
}

SEC("xdp")
int sbc_relay(struct xdp_md *ctx)
{
	struct cursor c = {
		.pos = (void *)(long)ctx->data,
		.end = (void *)(long)ctx->data_end,
	};
	struct sbc_counters *cnt;
	struct sbc_config *cfg;
	struct ethhdr *eth;
	__u32 zero = 0;
	__be16 proto;
	int tagged, blocklist;

	cnt = bpf_map_lookup_elem(&sbc_counters, &zero);
	cfg = bpf_map_lookup_elem(&sbc_config, &zero);
	if (!cnt || !cfg)  /* never: arrays of one element always have it */
		return XDP_PASS;
	blocklist = cfg->blocklist_in_use;
	count(cnt, SBC_CNT_RX);
	proto = parse_ethernet(&c, &eth, &tagged);
	if (!proto) {
		count(cnt, SBC_CNT_MALFORMED);
		return XDP_PASS;
	}
	if (proto != bpf_htons(ETH_P_IP) && proto != bpf_htons(ETH_P_IPV6)) {
		count(cnt, SBC_CNT_NOT_IP);
		return XDP_PASS;
	}
	/* Relaying would need the tag rewritten for the egress VLAN: leave tagged frames to
	 * the stack (VLAN sub-interfaces get the untagged frame there). */
	if (tagged) {
		count(cnt, SBC_CNT_VLAN);
		return XDP_PASS;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return relay_ipv4(ctx, cnt, blocklist, &c, eth);
	return relay_ipv6(ctx, cnt, blocklist, &c, eth);
}
