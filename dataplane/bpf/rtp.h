/* SPDX-License-Identifier: GPL-3.0-or-later */
/* RTP/RTCP recognition and receiver statistics (RFC 3550 appendix A, RFC 5761). */
#ifndef SBC_BPF_RTP_H
#define SBC_BPF_RTP_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>
#include "sbc_dataplane.h"
#include "parsing.h"

enum rtp_kind {
	RTP_KIND_OTHER = 0,
	RTP_KIND_RTP,
	RTP_KIND_RTCP,
};

/*
 * RFC 5761 section 4: with RTP and RTCP on one port, the second byte tells them
 * apart; RTCP packet types 200..204 are what RTP marker=1 + PT 72..76 would look
 * like, which is why those RTP payload types are never used.
 */
static __always_inline enum rtp_kind rtp_classify(__u8 first, __u8 second)
{
	if ((first & 0xc0) != 0x80)     /* version 2: first byte 0x80..0xbf */
		return RTP_KIND_OTHER;
	if (second >= 200 && second <= 204)
		return RTP_KIND_RTCP;
	return RTP_KIND_RTP;
}

/* RFC 3550 A.1 init_seq: a new source (or a confirmed restart after a jump). */
static __always_inline void rtp_init_seq(struct sbc_rtp_state *r, const struct rtp_hdr *h)
{
	__u16 seq = bpf_ntohs(h->seq);

	r->ssrc = bpf_ntohl(h->ssrc);
	r->base_seq = seq;
	r->max_seq_ext = seq;
	r->last_seq = seq;
	r->payload_type = h->mpt & 0x7f;
	r->bad_seq = 0;
	r->received = 1;
	r->jitter = 0;
	r->last_transit = 0;
}

/*
 * Multiplier m = rate * 2^32 / 10^9 such that ((ns >> 10) * m) >> 22 is the time in
 * RTP timestamp units. Only the low 32 bits of that are used (bits 22..53 of the
 * product), and those stay exact even when the 64-bit product wraps, so there is no
 * uptime limit. The common rates skip the 64-bit division (BPF has no cheap one).
 */
static __always_inline __u64 rtp_tick_mult(__u32 rate)
{
	_Static_assert(SBC_DEFAULT_CLOCK_RATE == 8000, "rtp_tick_mult: case 0 assumes 8 kHz");
	switch (rate) {
	case 0:
	case 8000:
		return 34360;
	case 16000:
		return 68719;
	case 48000:
		return 206158;
	case 90000:
		return 386547;
	default:
		return ((__u64)rate << 32) / 1000000000;
	}
}

/* A.8 transit time of a packet that arrived at now_ns, in RTP timestamp units. */
static __always_inline __u32 rtp_transit(const struct rtp_hdr *h, __u64 now_ns, __u32 clock_rate)
{
	__u32 arrival = (__u32)(((now_ns >> 10) * rtp_tick_mult(clock_rate)) >> 22);

	return arrival - bpf_ntohl(h->ts);
}

/*
 * RFC 3550 A.1 update_seq (without the initial probation) and A.8 jitter, the latter on
 * sampled pairs (see SBC_RTP_JITTER_SAMPLE): packet k*N stores its transit time, packet
 * k*N + 1 arriving right after it (in order, nothing lost between) updates J with their D.
 * Returns the precise clock when it was read for this packet (always for a new source), else 0.
 */
static __always_inline __u64 rtp_update(struct sbc_rtp_state *r, const struct rtp_hdr *h, __u32 clock_rate)
{
	_Static_assert((SBC_RTP_JITTER_SAMPLE & (SBC_RTP_JITTER_SAMPLE - 1)) == 0, "a power of two");
	__u16 seq = bpf_ntohs(h->seq);
	__u32 ssrc = bpf_ntohl(h->ssrc);
	__u16 max_seq = (__u16)r->max_seq_ext;
	__u16 udelta = seq - max_seq;
	__u16 phase = seq & (SBC_RTP_JITTER_SAMPLE - 1);
	__u16 prev = r->last_seq;
	__u64 now = 0;
	__s32 d;

	if (r->received == 0 || r->ssrc != ssrc) {
		now = bpf_ktime_get_ns();
		rtp_init_seq(r, h);
		if (phase == 0)
			r->last_transit = rtp_transit(h, now, clock_rate);
		return now;
	}
	if (udelta < SBC_RTP_MAX_DROPOUT) {
		/* in order, with a permissible gap; a smaller number means a wrap */
		if (seq < max_seq)
			r->max_seq_ext += 0x10000;
		r->max_seq_ext = (r->max_seq_ext & 0xffff0000u) | seq;
	} else if (udelta <= 65536 - SBC_RTP_MAX_MISORDER) {
		/* a very large jump: believe it only if the next packet follows it */
		if (r->bad_seq && seq == (__u16)r->bad_seq) {
			now = bpf_ktime_get_ns();
			rtp_init_seq(r, h);
			if (phase == 0)
				r->last_transit = rtp_transit(h, now, clock_rate);
			return now;
		}
		r->bad_seq = (__u32)seq + 1;  /* 1..65536, so 0 keeps meaning "none" */
		return 0;
	}
	/* in order, duplicate or slightly reordered (max_seq kept): all count as received */
	r->received += 1;
	r->last_seq = seq;
	r->payload_type = h->mpt & 0x7f;

	if (phase == 0) {
		now = bpf_ktime_get_ns();
		r->last_transit = rtp_transit(h, now, clock_rate);
	} else if (phase == 1 && prev == (__u16)(seq - 1)) {
		/* A.8: J += (|D| - J) / 16, with J kept scaled by 16 */
		now = bpf_ktime_get_ns();
		d = (__s32)(rtp_transit(h, now, clock_rate) - r->last_transit);
		if (d < 0)
			d = -d;
		r->jitter += (__u32)d - ((r->jitter + 8) >> 4);
	}
	return now;
}

#endif /* SBC_BPF_RTP_H */
