/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * sbc_dataplane.h: the ONE ABI between the XDP relay (dataplane/bpf/) and the
 * Python control plane (dataplane/xdp/abi.py mirrors it with ctypes).
 *
 * Rules for changing this file:
 *   - every struct has explicit padding fields; padding must be written as zero
 *     (hash map keys are compared bytewise, garbage in padding = a missed lookup);
 *   - addresses and ports are in NETWORK byte order, everything else is in HOST
 *     byte order unless the comment says otherwise;
 *   - after a change, tests/dataplane/test_abi.py compares the ctypes mirrors with
 *     the BTF of the compiled object, so a forgotten Python edit fails the tests.
 */
#ifndef SBC_DATAPLANE_H
#define SBC_DATAPLANE_H

#include <linux/types.h>

/* bpffs directory holding the pinned program and maps; they outlive sbc.service restarts. */
#define SBC_PIN_DIR "/sys/fs/bpf/sbc"
#define SBC_PROG_PIN_NAME "prog"
#define SBC_PROG_NAME "sbc_relay"

/* Map names (at most 15 characters: BPF_OBJ_NAME_LEN). They are also the pin file names. */
#define SBC_MAP_SESSIONS "sbc_sessions"
#define SBC_MAP_BLOCKLIST "sbc_blocklist"
#define SBC_MAP_COUNTERS "sbc_counters"
#define SBC_MAP_EGRESS "sbc_egress"
#define SBC_MAP_CONFIG "sbc_config"

#define SBC_MAX_SESSIONS 65536
#define SBC_MAX_BLOCKED 16384
#define SBC_MAX_EGRESS 64

/* Address families: the Linux AF_* values, so Python's socket.AF_INET/AF_INET6 fit. */
#define SBC_AF_INET 2
#define SBC_AF_INET6 10

/* sbc_session.dscp value meaning "leave the DS field as it arrived". */
#define SBC_DSCP_KEEP 0xff
/* Used when sbc_session.clock_rate is 0 (G.711, G.729: RFC 3551 section 6). */
#define SBC_DEFAULT_CLOCK_RATE 8000

/*
 * Interarrival jitter (RFC 3550 A.8) needs a precise arrival time, and bpf_ktime_get_ns() is the
 * most expensive step of the relay path (about a quarter of it). So the jitter estimate is fed
 * with one consecutive pair out of every SBC_RTP_JITTER_SAMPLE packets (sequence numbers
 * k * N and k * N + 1): the same estimator of the same mean |D|, smoothed over N times more
 * packets. sbc_session_stats.last_seen_ns is taken from the same reads (and from every packet
 * that is not RTP): it lags the last RTP packet by at most N - 1 packets.
 */
#define SBC_RTP_JITTER_SAMPLE 8

/* RFC 3550 appendix A.1 sequence number validation constants. */
#define SBC_RTP_MAX_DROPOUT 3000
#define SBC_RTP_MAX_MISORDER 100

/* sbc_session.flags */
enum sbc_session_flag {
	/* expected_src is the latched remote: any other source is dropped as spoofed. */
	SBC_F_LATCHED = 1u << 0,
	/* NAT learning (symmetric RTP, RFC 4961): while not latched, a packet from an
	 * unexpected source goes to userspace (XDP_PASS), which may latch it. */
	SBC_F_LATCH_ALLOWED = 1u << 1,
	/* Entry carries RTCP: relay, never parse as RTP. */
	SBC_F_RTCP = 1u << 2,
	/* Drop everything sent to this anchor (e.g. leg being torn down). */
	SBC_F_DROP = 1u << 3,
	/* Decrement TTL / hop limit like a router; otherwise it is left as it arrived. */
	SBC_F_DEC_TTL = 1u << 4,
	/* RTCP to this anchor goes up to userspace (XDP_PASS), which rewrites it before relaying (SDES
	 * CNAMEs carry the sender's address, RFC 3550 6.5.1); with rtcp-mux RTP stays in the kernel. */
	SBC_F_RTCP_UP = 1u << 5,
};

/* Indexes into struct sbc_counters (SBC_MAP_COUNTERS: one per-CPU value, userspace sums the CPUs). */
enum sbc_counter {
	SBC_CNT_RX = 0,            /* every frame the program saw */
	SBC_CNT_RELAYED,           /* rewritten and sent (TX + REDIRECTED) */
	SBC_CNT_RELAYED_BYTES,     /* UDP payload bytes of relayed packets (what userspace counts) */
	SBC_CNT_TX,                /* XDP_TX: egress == ingress interface */
	SBC_CNT_REDIRECTED,        /* XDP_REDIRECT through SBC_MAP_EGRESS */
	SBC_CNT_PASSED_UNKNOWN,    /* UDP to a (local address, port) without a session */
	SBC_CNT_PASSED_LEARNING,   /* unexpected source on a not yet latched entry */
	SBC_CNT_NOT_IP,            /* neither IPv4 nor IPv6 (ARP, LLDP...) */
	SBC_CNT_NOT_UDP,
	SBC_CNT_VLAN,              /* tagged frame: left to the stack */
	SBC_CNT_IP_OPTIONS,        /* IPv4 header with options: left to the stack */
	SBC_CNT_FRAGMENT,          /* IPv4 fragment: left to the stack */
	SBC_CNT_FIB_FAILED,        /* no MACs in the entry and bpf_fib_lookup failed */
	SBC_CNT_NO_EGRESS,         /* egress interface not in SBC_MAP_EGRESS */
	SBC_CNT_FAMILY_MISMATCH,   /* IPv4 in, IPv6 destination (or the reverse) */
	SBC_CNT_TTL_EXPIRED,       /* SBC_F_DEC_TTL and TTL <= 1 */
	SBC_CNT_DROPPED_SPOOFED,   /* source is not the expected/latched one */
	SBC_CNT_DROPPED_BLOCKED,   /* source in SBC_MAP_BLOCKLIST */
	SBC_CNT_DROPPED_SESSION,   /* entry has SBC_F_DROP */
	SBC_CNT_MALFORMED,         /* truncated or inconsistent headers */
	SBC_CNT_RTCP,              /* relayed packets recognised as RTCP */
	SBC_CNT_MAX,
};

/* The value of SBC_MAP_COUNTERS (a per-CPU array of one element): one lookup per packet. */
struct sbc_counters {
	__u64 count[SBC_CNT_MAX];
};

/* SBC_MAP_CONFIG (an array of one element): settings userspace writes, the program reads. */
struct sbc_config {
	__u32 blocklist_in_use;    /* 1 while SBC_MAP_BLOCKLIST has entries; 0 skips its lookup */
	__u32 pad;                 /* zero */
};

/*
 * A transport address. IPv4: addr[0..3] holds the address, addr[4..15] are zero.
 * addr and port: network byte order. family: SBC_AF_INET / SBC_AF_INET6, 0 = unset.
 */
struct sbc_endpoint {
	__u8 addr[16];
	__be16 port;
	__u8 family;
	__u8 pad;          /* zero */
};                         /* 20 bytes */

/* SBC_MAP_SESSIONS key: the SBC's own anchor (local address, local UDP port). */
struct sbc_session_key {
	struct sbc_endpoint local;
};                         /* 20 bytes */

/* RTP receiver state for the stream arriving on the anchor (RFC 3550 appendix A). */
struct sbc_rtp_state {
	__u32 ssrc;                /* host byte order */
	__u32 base_seq;            /* first sequence number of this SSRC */
	__u32 max_seq_ext;         /* extended highest sequence: cycles << 16 | max_seq */
	__u32 received;            /* RTP packets counted (A.3: lost = expected - received) */
	__u32 jitter;              /* A.8 interarrival jitter * 16, in timestamp units */
	__u32 last_transit;        /* A.8 transit time of the last sampled packet (SBC_RTP_JITTER_SAMPLE) */
	__u16 last_seq;            /* sequence number of the last packet */
	__u8 payload_type;         /* RTP payload type of the last packet */
	__u8 pad;                  /* zero */
	__u32 bad_seq;             /* A.1 probation after a large jump: expected next seq + 1 */
};                                 /* 32 bytes */

/*
 * Kernel-maintained statistics. packets, bytes, rtcp_packets and dropped are updated
 * with atomic adds (several CPUs may receive the same 5-tuple when RSS is off). The
 * RTP state is plain read-modify-write: one stream arrives on one RX queue, and a rare
 * race only perturbs statistics, never forwarding.
 */
struct sbc_session_stats {
	__u64 packets;             /* relayed packets */
	__u64 bytes;               /* relayed IP bytes (IP header to end of frame) */
	__u64 last_seen_ns;        /* CLOCK_MONOTONIC of a recent relayed packet (SBC_RTP_JITTER_SAMPLE) */
	__u64 rtcp_packets;        /* relayed packets recognised as RTCP */
	__u64 dropped;             /* dropped as spoofed */
	struct sbc_rtp_state rtp;
};                                 /* 72 bytes */

/* SBC_MAP_SESSIONS value: how to relay what arrives on the key's anchor. */
struct sbc_session {
	__u32 flags;                       /* enum sbc_session_flag */
	__u32 egress_ifindex;              /* where the rewritten packet leaves */
	struct sbc_endpoint expected_src;  /* remote we accept packets from (latched or from SDP) */
	struct sbc_endpoint dst;           /* where the packet is sent */
	struct sbc_endpoint new_src;       /* the SBC's anchor on the egress side */
	__u8 src_mac[6];                   /* egress interface MAC; all-zero src+dst: bpf_fib_lookup */
	__u8 dst_mac[6];                   /* next hop MAC */
	__u8 dscp;                         /* 0..63, or SBC_DSCP_KEEP; ECN bits always kept (RFC 3168) */
	__u8 pad[3];                       /* zero */
	__u32 clock_rate;                  /* RTP clock in Hz for jitter, 0 = SBC_DEFAULT_CLOCK_RATE */
	struct sbc_session_stats stats;    /* written by the kernel; write zeros when installing */
};                                         /* 160 bytes */

/* SBC_MAP_BLOCKLIST key: a source address (port ignored). Checked before anything else whenever
 * sbc_config.blocklist_in_use is set (an empty blocklist costs nothing per packet). */
struct sbc_block_key {
	__u8 addr[16];             /* network byte order, IPv4 in addr[0..3] */
	__u8 family;               /* SBC_AF_INET / SBC_AF_INET6 */
	__u8 pad[3];               /* zero */
};                                 /* 20 bytes */

struct sbc_block {
	__u64 expires_ns;          /* bpf_ktime_get_ns() deadline, 0 = never expires */
	__u64 drops;               /* packets dropped (atomic) */
};                                 /* 16 bytes */

/* SBC_MAP_EGRESS: DEVMAP_HASH, key __u32 ifindex, value __u32 ifindex (the same). */

#endif /* SBC_DATAPLANE_H */
