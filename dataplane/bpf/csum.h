/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Incremental Internet checksum update, RFC 1624 equation 3:
 *     HC' = ~(~HC + ~m + m')
 * Words are summed exactly as they sit in memory: the ones' complement sum is
 * byte-order independent (RFC 1071 section 2(B)), so no byte swapping is needed
 * as long as the checksum field is read the same way.
 */
#ifndef SBC_BPF_CSUM_H
#define SBC_BPF_CSUM_H

#include <linux/types.h>

/* Accumulate the change of one 16-bit word: ~m + m'. */
static __always_inline __u32 csum_delta16(__u32 acc, __u16 old, __u16 new)
{
	return acc + (__u16)~old + new;
}

/* A 32-bit field is two 16-bit words; both halves of the loaded value are words. */
static __always_inline __u32 csum_delta32(__u32 acc, __u32 old, __u32 new)
{
	acc = csum_delta16(acc, old >> 16, new >> 16);
	return csum_delta16(acc, old & 0xffff, new & 0xffff);
}

/* Fold carries back in. Two rounds suffice for any sum below 2^32 - 2^16. */
static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Apply the accumulated delta to a stored checksum. */
static __always_inline __u16 csum_apply(__u16 check, __u32 delta)
{
	return (__u16)~csum_fold((__u32)(__u16)~check + delta);
}

/*
 * UDP flavour: a transmitted 0 means "no checksum" over IPv4 (RFC 768), so a
 * computed 0 is sent as 0xffff (both are zero in ones' complement).
 */
static __always_inline __u16 csum_apply_udp(__u16 check, __u32 delta)
{
	__u16 out = csum_apply(check, delta);

	return out ? out : 0xffff;
}

#endif /* SBC_BPF_CSUM_H */
