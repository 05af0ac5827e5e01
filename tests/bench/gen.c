// SPDX-License-Identifier: GPL-3.0-or-later
/*
 * The relay benchmark's NIC-like traffic source. Run by BPF_PROG_TEST_RUN in live-frames mode
 * (BPF_F_TEST_XDP_LIVE_FRAMES) on the phone's veth: every run writes the template's headers into the
 * frame, stamps the next RTP sequence number and timestamp, mends the UDP checksum (RFC 1624) and
 * sends the frame out of that veth (XDP_TX). The headers are written every time because live mode
 * recycles a frame's page without resetting its contents, and the relay rewrote them on the way.
 * The frames reach the SBC's veth as XDP frames, the way a NIC driver hands packets to XDP, instead
 * of as socket buffers that a veth must first copy into an XDP buffer. Built by tests/bench/relay.py;
 * never part of the product.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_seq SEC(".maps");

#define HEAD_LEN (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr) + 12)

/* Ethernet, IPv4, UDP and RTP headers of the stream, RTP sequence and timestamp 0 (set by the driver). */
struct gen_head {
	__u8 bytes[HEAD_LEN];
	__u8 _pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_head);
} gen_template SEC(".maps");

struct rtp_head {
	__u8 flags;
	__u8 payload_type;
	__be16 seq;
	__be32 timestamp;
	__be32 ssrc;
};

/* RFC 1624 eqn. 3 for one 16-bit word; the sum is byte-order independent. */
static __always_inline __u16 csum_replace16(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u16)~old + (__u32)new;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct udphdr *udp = data + sizeof(struct ethhdr) + sizeof(struct iphdr);
	struct rtp_head *rtp = (void *)(udp + 1);
	__u32 zero = 0;
	struct gen_head *head;
	__u64 *next;
	__u32 seq, ts;
	__u16 check, new_seq, new_hi, new_lo;

	if ((void *)(rtp + 1) > end)
		return XDP_ABORTED;
	head = bpf_map_lookup_elem(&gen_template, &zero);
	next = bpf_map_lookup_elem(&gen_seq, &zero);
	if (!head || !next || data + HEAD_LEN > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, head->bytes, HEAD_LEN);
	seq = (__u32)__sync_fetch_and_add(next, 1);
	ts = seq * 160; /* 20 ms of 8 kHz audio per packet */
	new_seq = bpf_htons((__u16)seq);
	new_hi = bpf_htons((__u16)(ts >> 16));
	new_lo = bpf_htons((__u16)ts);
	check = udp->check;
	if (check) { /* a zero checksum means "none" and stays zero; the template's words are 0 */
		check = csum_replace16(check, 0, new_seq);
		check = csum_replace16(check, 0, new_hi);
		check = csum_replace16(check, 0, new_lo);
		udp->check = check ? check : 0xffff;
	}
	rtp->seq = new_seq;
	((__u16 *)&rtp->timestamp)[0] = new_hi;
	((__u16 *)&rtp->timestamp)[1] = new_lo;
	return XDP_TX;
}
