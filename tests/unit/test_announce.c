/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_announce.c - the VIP's link-layer frames: the builders produce the
 * exact bytes written out by hand below from RFC 826, RFC 5227, RFC 4861,
 * RFC 4862 and RFC 2464 (the ICMPv6 checksums are also recomputed here by
 * a separate one's-complement sum); the parser reads them back and refuses
 * truncated or malformed frames; and on a veth pair in a private network
 * namespace the frames leave byte for byte, a peer's claim reaches the
 * callback, and neither our own frames nor VLAN-tagged ones do.
 *
 * The process pins itself to one CPU so that frames sent one after the
 * other from the peer are received in that order (veth hands them to the
 * per-CPU backlog of the sending CPU); "X was not reported" is then
 * proved by sending X first and waiting for a later frame Y, not by
 * sleeping. Addresses are documentation ranges only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "vip/announce.h"

#define DEADLINE_MS 3000

static const uint8_t mac_a[6] = { 0x02, 0x00, 0x5e, 0x00, 0x53, 0x01 };
static const uint8_t mac_b[6] = { 0x02, 0x00, 0x5e, 0x00, 0x53, 0x02 };

/* RFC 826 / RFC 5227 4: request announcement, 60 bytes with padding. */
static const uint8_t golden_garp_request[60] = {
	/* Ethernet: dst broadcast, src, type ARP */
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0x02, 0x00, 0x5e, 0x00, 0x53, 0x01,
	0x08, 0x06,
	/* htype 1, ptype 0x0800, hlen 6, plen 4, op 1 (request) */
	0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
	/* SHA, SPA 192.0.2.200 */
	0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, 0xc0, 0x00, 0x02, 0xc8,
	/* THA 0, TPA 192.0.2.200 */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x02, 0xc8,
	/* padding to 60 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* Reply form: op 2, THA = SHA. */
static const uint8_t golden_garp_reply[60] = {
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0x02, 0x00, 0x5e, 0x00, 0x53, 0x01,
	0x08, 0x06,
	0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02,
	0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, 0xc0, 0x00, 0x02, 0xc8,
	0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, 0xc0, 0x00, 0x02, 0xc8,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* RFC 5227 2.1.1 probe: op 1, SPA 0.0.0.0, THA 0, TPA = VIP. */
static const uint8_t golden_arp_probe[60] = {
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0x02, 0x00, 0x5e, 0x00, 0x53, 0x01,
	0x08, 0x06,
	0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
	0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x02, 0xc8,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

#define NA_ICMP_OFF 54
#define NA_LEN_ICMP 32
/* RFC 4861 4.4 / 7.2.6: unsolicited NA for 2001:db8::200 from fe80::1. */
static const uint8_t golden_na[86] = {
	/* Ethernet: dst 33:33:00:00:00:01 (RFC 2464 7, ff02::1), src, IPv6 */
	0x33, 0x33, 0x00, 0x00, 0x00, 0x01,
	0x02, 0x00, 0x5e, 0x00, 0x53, 0x01,
	0x86, 0xdd,
	/* version 6, class 0, flow 0; payload 32; next header 58; hop 255 */
	0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff,
	/* src fe80::1 */
	0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
	/* dst ff02::1 */
	0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
	/* type 136, code 0, checksum 0x7563 */
	0x88, 0x00, 0x75, 0x63,
	/* R=0 S=0 O=1, reserved */
	0x20, 0x00, 0x00, 0x00,
	/* target 2001:db8::200 */
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00,
	/* option: target link-layer address, length 1 (8 bytes), mac */
	0x02, 0x01, 0x02, 0x00, 0x5e, 0x00, 0x53, 0x01,
};

/* RFC 4862 5.4.2: DAD probe, NS from :: to ff02::1:ff00:200. */
static const uint8_t golden_ns[78] = {
	/* Ethernet: dst 33:33 + last 4 bytes of ff02::1:ff00:200, src, IPv6 */
	0x33, 0x33, 0xff, 0x00, 0x02, 0x00,
	0x02, 0x00, 0x5e, 0x00, 0x53, 0x01,
	0x86, 0xdd,
	/* version 6; payload 24; next header 58; hop 255 */
	0x60, 0x00, 0x00, 0x00, 0x00, 0x18, 0x3a, 0xff,
	/* src :: */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* dst ff02::1:ff00:200 */
	0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0x00, 0x02, 0x00,
	/* type 135, code 0, checksum 0x48ef, reserved */
	0x87, 0x00, 0x48, 0xef, 0x00, 0x00, 0x00, 0x00,
	/* target 2001:db8::200; no source link-layer option from :: */
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00,
};

static struct in_addr vip4;
static struct in6_addr vip6, ll_src;

static void
addrs_init(void)
{
	assert_int_equal(inet_pton(AF_INET, "192.0.2.200", &vip4), 1);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::200", &vip6), 1);
	assert_int_equal(inet_pton(AF_INET6, "fe80::1", &ll_src), 1);
}

/*
 * An independent ICMPv6 checksum (RFC 8200 8.1, RFC 1071): the pseudo-header
 * laid out in a buffer of its own, then the message, summed as 16-bit
 * words. Over a message with a correct checksum the result is 0.
 */
static uint16_t
ref_icmp6_csum(const uint8_t *frame, size_t frame_len)
{
	uint8_t buf[256];
	size_t plen = (size_t)frame[18] << 8 | frame[19];
	size_t n = 0;
	uint32_t sum = 0;

	assert_true(40 + plen <= sizeof(buf));
	assert_true(54 + plen <= frame_len);
	memcpy(buf, frame + 22, 16);		/* source */
	memcpy(buf + 16, frame + 38, 16);	/* destination */
	buf[32] = (uint8_t)(plen >> 24);
	buf[33] = (uint8_t)(plen >> 16);
	buf[34] = (uint8_t)(plen >> 8);
	buf[35] = (uint8_t)plen;
	buf[36] = buf[37] = buf[38] = 0;
	buf[39] = 58;
	memcpy(buf + 40, frame + 54, plen);
	n = 40 + plen;
	if (n % 2)
		buf[n++] = 0;
	for (size_t i = 0; i < n; i += 2)
		sum += (uint32_t)(buf[i] << 8 | buf[i + 1]);
	while (sum > 0xffff)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* Rewrites the checksum of an edited frame with the reference sum. */
static void
ref_reseal(uint8_t *frame, size_t len)
{
	uint16_t ck;

	frame[56] = frame[57] = 0;
	ck = ref_icmp6_csum(frame, len);
	frame[56] = (uint8_t)(ck >> 8);
	frame[57] = (uint8_t)ck;
}

/* ---- builders ---------------------------------------------------------- */

static void
test_garp_request_is_rfc5227_announcement_padded_to_60(void **s)
{
	uint8_t buf[VIP_FRAME_MAX];

	(void)s;
	addrs_init();
	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(vip_arp_build(buf, sizeof(buf),
				       VIP_ARP_GRATUITOUS_REQUEST, mac_a, &vip4),
			 sizeof(golden_garp_request));
	assert_memory_equal(buf, golden_garp_request,
			    sizeof(golden_garp_request));
}

static void
test_garp_reply_has_tha_equal_to_sha(void **s)
{
	uint8_t buf[VIP_FRAME_MAX];

	(void)s;
	addrs_init();
	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(vip_arp_build(buf, sizeof(buf),
				       VIP_ARP_GRATUITOUS_REPLY, mac_a, &vip4),
			 sizeof(golden_garp_reply));
	assert_memory_equal(buf, golden_garp_reply, sizeof(golden_garp_reply));
}

static void
test_arp_probe_has_zero_sender_address(void **s)
{
	uint8_t buf[VIP_FRAME_MAX];

	(void)s;
	addrs_init();
	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(vip_arp_build(buf, sizeof(buf), VIP_ARP_PROBE,
				       mac_a, &vip4),
			 sizeof(golden_arp_probe));
	assert_memory_equal(buf, golden_arp_probe, sizeof(golden_arp_probe));
}

static void
test_na_is_unsolicited_override_with_target_lladdr(void **s)
{
	uint8_t buf[VIP_FRAME_MAX];

	(void)s;
	addrs_init();
	assert_int_equal(ref_icmp6_csum(golden_na, sizeof(golden_na)), 0);
	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(vip_na_build(buf, sizeof(buf), mac_a, &ll_src, &vip6),
			 sizeof(golden_na));
	assert_memory_equal(buf, golden_na, sizeof(golden_na));
	assert_int_equal(ref_icmp6_csum(buf, sizeof(golden_na)), 0);
}

static void
test_ns_probe_is_from_unspecified_to_solicited_node_group(void **s)
{
	uint8_t buf[VIP_FRAME_MAX];

	(void)s;
	addrs_init();
	assert_int_equal(ref_icmp6_csum(golden_ns, sizeof(golden_ns)), 0);
	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(vip_ns_probe_build(buf, sizeof(buf), mac_a, &vip6),
			 sizeof(golden_ns));
	assert_memory_equal(buf, golden_ns, sizeof(golden_ns));
	assert_int_equal(ref_icmp6_csum(buf, sizeof(golden_ns)), 0);
}

static void
test_icmp6_checksum_follows_the_addresses(void **s)
{
	struct in6_addr other_src, other_vip;
	uint8_t buf[VIP_FRAME_MAX];
	size_t n;

	(void)s;
	addrs_init();
	assert_int_equal(inet_pton(AF_INET6, "fe80::5efe:c000:2c8", &other_src), 1);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::ffff:1", &other_vip), 1);
	n = vip_na_build(buf, sizeof(buf), mac_b, &other_src, &other_vip);
	assert_int_equal(n, 86);
	assert_int_equal(ref_icmp6_csum(buf, n), 0);
	n = vip_ns_probe_build(buf, sizeof(buf), mac_b, &other_vip);
	assert_int_equal(n, 78);
	assert_int_equal(ref_icmp6_csum(buf, n), 0);
	/* solicited-node group of ...:ffff:1 is ff02::1:ffff:1 */
	assert_int_equal(buf[2], 0xff);
	assert_int_equal(buf[3], 0xff);
	assert_int_equal(buf[4], 0x00);
	assert_int_equal(buf[5], 0x01);
}

static void
test_builders_return_zero_when_buffer_too_small(void **s)
{
	uint8_t buf[VIP_FRAME_MAX];

	(void)s;
	addrs_init();
	assert_int_equal(vip_arp_build(buf, 59, VIP_ARP_PROBE, mac_a, &vip4), 0);
	assert_int_equal(vip_arp_build(buf, 60, VIP_ARP_PROBE, mac_a, &vip4), 60);
	assert_int_equal(vip_na_build(buf, 85, mac_a, &ll_src, &vip6), 0);
	assert_int_equal(vip_na_build(buf, 86, mac_a, &ll_src, &vip6), 86);
	assert_int_equal(vip_ns_probe_build(buf, 77, mac_a, &vip6), 0);
	assert_int_equal(vip_ns_probe_build(buf, 78, mac_a, &vip6), 78);
	assert_int_equal(vip_arp_build(buf, 0, VIP_ARP_PROBE, mac_a, &vip4), 0);
}

static void
test_builders_refuse_unknown_kind_and_multicast_target(void **s)
{
	struct in6_addr mc;
	uint8_t buf[VIP_FRAME_MAX];

	(void)s;
	addrs_init();
	assert_int_equal(inet_pton(AF_INET6, "ff02::1", &mc), 1);
	assert_int_equal(vip_arp_build(buf, sizeof(buf), (enum vip_arp_kind)7,
				       mac_a, &vip4), 0);
	assert_int_equal(vip_na_build(buf, sizeof(buf), mac_a, &ll_src, &mc), 0);
	assert_int_equal(vip_ns_probe_build(buf, sizeof(buf), mac_a, &mc), 0);
}

/* ---- parser ------------------------------------------------------------ */

static void
test_parse_garp_request_claims_vip_for_sender(void **s)
{
	struct vip_claim c;

	(void)s;
	memset(&c, 0xaa, sizeof(c));
	assert_int_equal(vip_frame_parse(golden_garp_request,
					 sizeof(golden_garp_request), &c), 0);
	assert_int_equal(c.family, AF_INET);
	assert_memory_equal(c.addr, "\xc0\x00\x02\xc8", 4);
	for (int i = 4; i < 16; i++)
		assert_int_equal(c.addr[i], 0);
	assert_memory_equal(c.mac, mac_a, 6);
	assert_false(c.is_reply);
}

static void
test_parse_garp_reply_is_a_reply(void **s)
{
	struct vip_claim c;

	(void)s;
	assert_int_equal(vip_frame_parse(golden_garp_reply,
					 sizeof(golden_garp_reply), &c), 0);
	assert_int_equal(c.family, AF_INET);
	assert_memory_equal(c.addr, "\xc0\x00\x02\xc8", 4);
	assert_memory_equal(c.mac, mac_a, 6);
	assert_true(c.is_reply);
}

static void
test_parse_unpadded_arp_is_accepted(void **s)
{
	struct vip_claim c;

	(void)s;
	assert_int_equal(vip_frame_parse(golden_garp_request, 42, &c), 0);
	assert_int_equal(c.family, AF_INET);
}

static void
test_parse_arp_probe_claims_nothing(void **s)
{
	struct vip_claim c, before;

	(void)s;
	memset(&c, 0x5a, sizeof(c));
	before = c;
	assert_int_equal(vip_frame_parse(golden_arp_probe,
					 sizeof(golden_arp_probe), &c), -1);
	assert_memory_equal(&c, &before, sizeof(c));
}

static void
test_parse_na_claims_target_with_option_mac(void **s)
{
	struct vip_claim c;

	(void)s;
	addrs_init();
	assert_int_equal(vip_frame_parse(golden_na, sizeof(golden_na), &c), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_memory_equal(c.addr, vip6.s6_addr, 16);
	assert_memory_equal(c.mac, mac_a, 6);
	assert_false(c.is_reply);
}

static void
test_parse_na_option_mac_wins_over_ethernet_source(void **s)
{
	uint8_t f[sizeof(golden_na)];
	struct vip_claim c;

	(void)s;
	memcpy(f, golden_na, sizeof(f));
	memcpy(f + 6, mac_b, 6);	/* a bridge or proxy rewrote the source */
	assert_int_equal(vip_frame_parse(f, sizeof(f), &c), 0);
	assert_memory_equal(c.mac, mac_a, 6);
}

static void
test_parse_na_without_option_uses_ethernet_source(void **s)
{
	uint8_t f[sizeof(golden_na) - 8];
	struct vip_claim c;

	(void)s;
	addrs_init();
	memcpy(f, golden_na, sizeof(f));
	memcpy(f + 6, mac_b, 6);
	f[19] = 24;			/* payload length without the option */
	ref_reseal(f, sizeof(f));
	assert_int_equal(vip_frame_parse(f, sizeof(f), &c), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_memory_equal(c.addr, vip6.s6_addr, 16);
	assert_memory_equal(c.mac, mac_b, 6);
}

static void
test_parse_solicited_unicast_na_is_a_reply(void **s)
{
	uint8_t f[sizeof(golden_na)];
	struct vip_claim c;

	(void)s;
	memcpy(f, golden_na, sizeof(f));
	/* to fe80::2 (unicast), S and O set */
	memset(f + 38, 0, 16);
	f[38] = 0xfe;
	f[39] = 0x80;
	f[53] = 0x02;
	f[58] = 0x60;
	ref_reseal(f, sizeof(f));
	assert_int_equal(vip_frame_parse(f, sizeof(f), &c), 0);
	assert_true(c.is_reply);
}

static void
test_parse_solicited_na_to_multicast_is_refused(void **s)
{
	uint8_t f[sizeof(golden_na)];
	struct vip_claim c;

	(void)s;
	memcpy(f, golden_na, sizeof(f));
	f[58] = 0x60;
	ref_reseal(f, sizeof(f));
	assert_int_equal(vip_frame_parse(f, sizeof(f), &c), -1);
}

static void
test_parse_truncated_frames_fail_at_every_length(void **s)
{
	const struct {
		const uint8_t *f;
		size_t len, min_ok;
	} cases[] = {
		{ golden_garp_request, sizeof(golden_garp_request), 42 },
		{ golden_garp_reply, sizeof(golden_garp_reply), 42 },
		{ golden_na, sizeof(golden_na), sizeof(golden_na) },
	};
	struct vip_claim c;

	(void)s;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		for (size_t n = 0; n < cases[k].len; n++) {
			/* a copy of exactly n bytes, so ASan sees any overread */
			uint8_t *f = malloc(n ? n : 1);

			assert_non_null(f);
			memcpy(f, cases[k].f, n);
			assert_int_equal(vip_frame_parse(f, n, &c),
					 n < cases[k].min_ok ? -1 : 0);
			free(f);
		}
	}
}

/* Parses golden_garp_request with byte off set to v. */
static int
parse_arp_with(size_t off, uint8_t v)
{
	uint8_t f[sizeof(golden_garp_request)];
	struct vip_claim c;

	memcpy(f, golden_garp_request, sizeof(f));
	f[off] = v;
	return vip_frame_parse(f, sizeof(f), &c);
}

static void
test_parse_refuses_wrong_arp_header_fields(void **s)
{
	(void)s;
	assert_int_equal(parse_arp_with(13, 0x00), -1);	/* ethertype IPv4 */
	assert_int_equal(parse_arp_with(13, 0x08), -1);	/* ethertype 0x0808 */
	assert_int_equal(parse_arp_with(15, 0x06), -1);	/* htype 6 (IEEE 802) */
	assert_int_equal(parse_arp_with(16, 0x86), -1);	/* ptype 0x86dd */
	assert_int_equal(parse_arp_with(18, 0x08), -1);	/* hlen 8 */
	assert_int_equal(parse_arp_with(19, 0x10), -1);	/* plen 16 */
	assert_int_equal(parse_arp_with(21, 0x03), 0);	/* any op is a claim */
}

static void
test_parse_refuses_vlan_tagged_frame(void **s)
{
	uint8_t f[64];
	struct vip_claim c;

	(void)s;
	memcpy(f, golden_garp_request, 12);
	f[12] = 0x81;
	f[13] = 0x00;
	f[14] = 0x00;
	f[15] = 0x0a;
	memcpy(f + 16, golden_garp_request + 12, 48);
	assert_int_equal(vip_frame_parse(f, sizeof(f), &c), -1);
}

/* Parses golden_na with byte off set to v (checksum left as it is). */
static int
parse_na_with(size_t off, uint8_t v, bool reseal)
{
	uint8_t f[sizeof(golden_na)];
	struct vip_claim c;

	memcpy(f, golden_na, sizeof(f));
	f[off] = v;
	if (reseal)
		ref_reseal(f, sizeof(f));
	return vip_frame_parse(f, sizeof(f), &c);
}

static void
test_parse_na_with_hop_limit_254_is_refused(void **s)
{
	(void)s;
	/* the hop limit is not in the pseudo-header: checksum still valid */
	assert_int_equal(parse_na_with(21, 254, false), -1);
}

static void
test_parse_refuses_malformed_na(void **s)
{
	struct vip_claim c;

	(void)s;
	assert_int_equal(parse_na_with(57, 0x64, false), -1);	/* checksum */
	assert_int_equal(parse_na_with(14, 0x40, true), -1);	/* version 4 */
	assert_int_equal(parse_na_with(20, 0x00, true), -1);	/* hop-by-hop first */
	assert_int_equal(parse_na_with(54, 135, true), -1);	/* NS */
	assert_int_equal(parse_na_with(55, 1, true), -1);	/* code 1 */
	assert_int_equal(parse_na_with(62, 0xff, true), -1);	/* multicast target */
	assert_int_equal(parse_na_with(79, 0, true), -1);	/* option length 0 */
	assert_int_equal(parse_na_with(79, 2, true), -1);	/* TLLA not 8 bytes */
	assert_int_equal(parse_na_with(78, 14, true), 0);	/* unknown option: skipped */
	assert_int_equal(parse_na_with(19, 0x28, false), -1);	/* payload past the end */
	assert_int_equal(parse_na_with(19, 0x10, true), -1);	/* payload < 24 */
	/* a DAD probe is a solicitation, not a claim */
	assert_int_equal(vip_frame_parse(golden_ns, sizeof(golden_ns), &c), -1);
	assert_int_equal(vip_frame_parse(NULL, 60, &c), -1);
}

static void
test_parse_na_skips_other_options_before_tlla(void **s)
{
	uint8_t f[sizeof(golden_na) + 8];
	struct vip_claim c;

	(void)s;
	memcpy(f, golden_na, 78);
	/* a nonce option (type 14, length 1) first, then the TLLA */
	f[78] = 14;
	f[79] = 1;
	memset(f + 80, 0x77, 6);
	f[86] = 2;
	f[87] = 1;
	memcpy(f + 88, mac_b, 6);
	f[19] = NA_LEN_ICMP + 8;
	ref_reseal(f, sizeof(f));
	assert_int_equal(vip_frame_parse(f, sizeof(f), &c), 0);
	assert_memory_equal(c.mac, mac_b, 6);
}

/* ---- real sockets on a veth pair ----------------------------------------- */

static bool netns_ok;
static int ifindex_a, ifindex_b;

struct recorder {
	struct vip_claim claims[8];
	int n;
	struct vip_pkt **free_me;	/* borrowed: freed from the callback */
};

static void
on_claim(const struct vip_claim *c, void *arg)
{
	struct recorder *r = arg;

	if (r->n < 8)
		r->claims[r->n] = *c;
	r->n++;
	if (r->free_me) {
		vip_pkt_free(*r->free_me);
		*r->free_me = NULL;
	}
}

struct fix {
	struct loop *loop;
	struct vip_pkt *pkt;	/* on va */
	int peer_fd;		/* plain AF_PACKET socket on vb */
	struct recorder rec;
};

static int
open_peer(int ifindex)
{
	struct sockaddr_ll sll;
	int fd;

	fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    htons(ETH_P_ALL));
	if (fd < 0)
		return -1;
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = ifindex;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
setup(void **state)
{
	struct fix *f;
	char err[256];

	if (!netns_ok) {
		*state = NULL;
		return 0;
	}
	f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->loop = loop_new();
	assert_non_null(f->loop);
	f->pkt = vip_pkt_new(f->loop, ifindex_a, on_claim, &f->rec, err,
			     sizeof(err));
	if (!f->pkt)
		print_error("vip_pkt_new: %s\n", err);
	assert_non_null(f->pkt);
	f->peer_fd = open_peer(ifindex_b);
	assert_true(f->peer_fd >= 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fix *f = *state;

	if (!f)
		return 0;
	vip_pkt_free(f->pkt);
	loop_free(f->loop);
	close(f->peer_fd);
	free(f);
	return 0;
}

#define NEED_NETNS(state) do { \
	if (!*(state)) \
		skip(); \
} while (0)

/* Sends a raw frame from the peer side (vb). */
static void
peer_send(struct fix *f, const uint8_t *frame, size_t len)
{
	struct sockaddr_ll sll;

	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = ifindex_b;
	sll.sll_halen = 6;
	memcpy(sll.sll_addr, frame, 6);
	memcpy(&sll.sll_protocol, frame + 12, 2);
	assert_int_equal(sendto(f->peer_fd, frame, len, 0,
				(struct sockaddr *)&sll, sizeof(sll)),
			 (ssize_t)len);
}

/* Waits until the peer receives a frame equal to want (others are skipped). */
static void
peer_expect(struct fix *f, const uint8_t *want, size_t len)
{
	uint64_t end = clock_now_ms() + DEADLINE_MS;
	uint8_t buf[1600];

	while (clock_now_ms() < end) {
		struct pollfd pfd = { .fd = f->peer_fd, .events = POLLIN };
		struct sockaddr_ll sll;
		socklen_t slen = sizeof(sll);
		ssize_t n;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		n = recvfrom(f->peer_fd, buf, sizeof(buf), 0,
			     (struct sockaddr *)&sll, &slen);
		if (n < 0 || sll.sll_pkttype == PACKET_OUTGOING)
			continue;
		if ((size_t)n == len && memcmp(buf, want, len) == 0)
			return;
	}
	fail_msg("the peer never received the expected %zu-byte frame", len);
}

/* Runs the loop until the recorder holds n claims or the deadline passes. */
static void
run_until_claims(struct fix *f, int n)
{
	uint64_t end = clock_now_ms() + DEADLINE_MS;

	while (f->rec.n < n && clock_now_ms() < end)
		assert_int_equal(loop_run_once(f->loop, 50), 0);
	assert_int_equal(f->rec.n, n);
}

static void
get_mac(const char *ifname, uint8_t mac[6])
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	assert_int_equal(ioctl(fd, SIOCGIFHWADDR, &ifr), 0);
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	close(fd);
}

static void
test_sent_frames_arrive_byte_for_byte(void **state)
{
	struct fix *f;
	uint8_t mac[6], buf[VIP_FRAME_MAX];
	const enum vip_arp_kind kinds[] = {
		VIP_ARP_GRATUITOUS_REQUEST, VIP_ARP_GRATUITOUS_REPLY,
		VIP_ARP_PROBE,
	};
	size_t n;

	NEED_NETNS(state);
	f = *state;
	addrs_init();
	get_mac("va", mac);
	assert_memory_equal(mac, mac_a, 6);
	for (size_t k = 0; k < 3; k++) {
		n = vip_arp_build(buf, sizeof(buf), kinds[k], mac, &vip4);
		assert_int_equal(n, 60);
		assert_int_equal(vip_pkt_send(f->pkt, buf, n), 0);
		peer_expect(f, buf, n);
	}
	n = vip_na_build(buf, sizeof(buf), mac, &ll_src, &vip6);
	assert_int_equal(vip_pkt_send(f->pkt, buf, n), 0);
	peer_expect(f, golden_na, sizeof(golden_na));
	n = vip_ns_probe_build(buf, sizeof(buf), mac, &vip6);
	assert_int_equal(vip_pkt_send(f->pkt, buf, n), 0);
	peer_expect(f, golden_ns, sizeof(golden_ns));
	/* and the hand-written ones go out unchanged too */
	assert_int_equal(vip_pkt_send(f->pkt, golden_garp_request,
				      sizeof(golden_garp_request)), 0);
	peer_expect(f, golden_garp_request, sizeof(golden_garp_request));
}

static void
test_peer_garp_and_na_are_reported_as_claims(void **state)
{
	struct fix *f;
	uint8_t buf[VIP_FRAME_MAX];
	size_t n;

	NEED_NETNS(state);
	f = *state;
	addrs_init();
	n = vip_arp_build(buf, sizeof(buf), VIP_ARP_GRATUITOUS_REQUEST, mac_b,
			  &vip4);
	peer_send(f, buf, n);
	run_until_claims(f, 1);
	assert_int_equal(f->rec.claims[0].family, AF_INET);
	assert_memory_equal(f->rec.claims[0].addr, &vip4.s_addr, 4);
	assert_memory_equal(f->rec.claims[0].mac, mac_b, 6);
	assert_false(f->rec.claims[0].is_reply);

	n = vip_arp_build(buf, sizeof(buf), VIP_ARP_GRATUITOUS_REPLY, mac_b,
			  &vip4);
	peer_send(f, buf, n);
	run_until_claims(f, 2);
	assert_true(f->rec.claims[1].is_reply);

	/* a probe claims nothing: it must not show up before the NA */
	n = vip_arp_build(buf, sizeof(buf), VIP_ARP_PROBE, mac_b, &vip4);
	peer_send(f, buf, n);
	n = vip_na_build(buf, sizeof(buf), mac_b, &ll_src, &vip6);
	peer_send(f, buf, n);
	run_until_claims(f, 3);
	assert_int_equal(f->rec.claims[2].family, AF_INET6);
	assert_memory_equal(f->rec.claims[2].addr, vip6.s6_addr, 16);
	assert_memory_equal(f->rec.claims[2].mac, mac_b, 6);
}

static void
test_own_sends_are_not_reported(void **state)
{
	struct fix *f;
	struct in_addr other;
	uint8_t buf[VIP_FRAME_MAX];
	size_t n;

	NEED_NETNS(state);
	f = *state;
	addrs_init();
	n = vip_arp_build(buf, sizeof(buf), VIP_ARP_GRATUITOUS_REQUEST, mac_a,
			  &vip4);
	assert_int_equal(vip_pkt_send(f->pkt, buf, n), 0);
	n = vip_na_build(buf, sizeof(buf), mac_a, &ll_src, &vip6);
	assert_int_equal(vip_pkt_send(f->pkt, buf, n), 0);
	peer_expect(f, buf, n);
	/* our frames were tapped while we sent them, before this one arrives */
	assert_int_equal(inet_pton(AF_INET, "192.0.2.201", &other), 1);
	n = vip_arp_build(buf, sizeof(buf), VIP_ARP_GRATUITOUS_REQUEST, mac_b,
			  &other);
	peer_send(f, buf, n);
	run_until_claims(f, 1);
	assert_memory_equal(f->rec.claims[0].addr, &other.s_addr, 4);
	assert_memory_equal(f->rec.claims[0].mac, mac_b, 6);
}

static void
test_vlan_tagged_claim_is_not_reported(void **state)
{
	struct fix *f;
	struct in_addr other;
	uint8_t buf[VIP_FRAME_MAX], tagged[VIP_FRAME_MAX];
	size_t n;

	NEED_NETNS(state);
	f = *state;
	addrs_init();
	/* VLAN 10 says 192.0.2.201 is at mac_b: not our segment */
	assert_int_equal(inet_pton(AF_INET, "192.0.2.201", &other), 1);
	n = vip_arp_build(buf, sizeof(buf), VIP_ARP_GRATUITOUS_REQUEST, mac_b,
			  &other);
	memcpy(tagged, buf, 12);
	tagged[12] = 0x81;
	tagged[13] = 0x00;
	tagged[14] = 0x00;
	tagged[15] = 0x0a;
	memcpy(tagged + 16, buf + 12, n - 12);
	peer_send(f, tagged, n + 4);
	n = vip_arp_build(buf, sizeof(buf), VIP_ARP_GRATUITOUS_REQUEST, mac_b,
			  &vip4);
	peer_send(f, buf, n);
	run_until_claims(f, 1);
	assert_memory_equal(f->rec.claims[0].addr, &vip4.s_addr, 4);
}

static void
test_callback_may_free_its_handle(void **state)
{
	struct fix *f;
	uint8_t buf[VIP_FRAME_MAX];
	size_t n;

	NEED_NETNS(state);
	f = *state;
	addrs_init();
	f->rec.free_me = &f->pkt;
	n = vip_arp_build(buf, sizeof(buf), VIP_ARP_GRATUITOUS_REQUEST, mac_b,
			  &vip4);
	peer_send(f, buf, n);
	peer_send(f, buf, n);
	run_until_claims(f, 1);
	assert_null(f->pkt);
	/* the second frame is never delivered to a freed handle */
	assert_int_equal(loop_run_once(f->loop, 50), 0);
	assert_int_equal(f->rec.n, 1);
}

static void
test_new_fails_for_missing_interface(void **state)
{
	struct loop *l;
	char err[256] = "";

	(void)state;
	if (!netns_ok)
		skip();
	l = loop_new();
	assert_non_null(l);
	assert_null(vip_pkt_new(l, 99999, on_claim, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "could not"));
	assert_null(vip_pkt_new(l, 0, on_claim, NULL, err, sizeof(err)));
	loop_free(l);
}

static void
test_send_refuses_frame_shorter_than_ethernet_header(void **state)
{
	struct fix *f;

	NEED_NETNS(state);
	f = *state;
	errno = 0;
	assert_int_equal(vip_pkt_send(f->pkt, golden_garp_request, 13), -1);
	assert_int_equal(errno, EINVAL);
}

/*
 * A private network namespace with a veth pair va/vb (MACs fixed to the
 * test's), IPv6 disabled so the kernel sends no DAD or MLD of its own.
 * The namespace disappears with the process.
 */
static bool
make_netns(void)
{
	cpu_set_t one;
	int cpu = sched_getcpu();

	if (cpu >= 0) {
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (sched_setaffinity(0, sizeof(one), &one) < 0)
			return false;
	}
	if (unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "test_announce: no network namespace (%s): socket tests skipped\n",
			strerror(errno));
		return false;
	}
	if (system("for f in /proc/sys/net/ipv6/conf/default/disable_ipv6 "
		   "/proc/sys/net/ipv6/conf/all/disable_ipv6; do "
		   "[ -w $f ] && echo 1 > $f; done; "
		   "ip link add va address 02:00:5e:00:53:01 type veth "
		   "peer name vb address 02:00:5e:00:53:02 && "
		   "ip link set va up && ip link set vb up") != 0) {
		fprintf(stderr, "test_announce: could not create veth pair: socket tests skipped\n");
		return false;
	}
	ifindex_a = (int)if_nametoindex("va");
	ifindex_b = (int)if_nametoindex("vb");
	return ifindex_a > 0 && ifindex_b > 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_garp_request_is_rfc5227_announcement_padded_to_60),
		cmocka_unit_test(test_garp_reply_has_tha_equal_to_sha),
		cmocka_unit_test(test_arp_probe_has_zero_sender_address),
		cmocka_unit_test(test_na_is_unsolicited_override_with_target_lladdr),
		cmocka_unit_test(test_ns_probe_is_from_unspecified_to_solicited_node_group),
		cmocka_unit_test(test_icmp6_checksum_follows_the_addresses),
		cmocka_unit_test(test_builders_return_zero_when_buffer_too_small),
		cmocka_unit_test(test_builders_refuse_unknown_kind_and_multicast_target),
		cmocka_unit_test(test_parse_garp_request_claims_vip_for_sender),
		cmocka_unit_test(test_parse_garp_reply_is_a_reply),
		cmocka_unit_test(test_parse_unpadded_arp_is_accepted),
		cmocka_unit_test(test_parse_arp_probe_claims_nothing),
		cmocka_unit_test(test_parse_na_claims_target_with_option_mac),
		cmocka_unit_test(test_parse_na_option_mac_wins_over_ethernet_source),
		cmocka_unit_test(test_parse_na_without_option_uses_ethernet_source),
		cmocka_unit_test(test_parse_solicited_unicast_na_is_a_reply),
		cmocka_unit_test(test_parse_solicited_na_to_multicast_is_refused),
		cmocka_unit_test(test_parse_truncated_frames_fail_at_every_length),
		cmocka_unit_test(test_parse_refuses_wrong_arp_header_fields),
		cmocka_unit_test(test_parse_refuses_vlan_tagged_frame),
		cmocka_unit_test(test_parse_na_with_hop_limit_254_is_refused),
		cmocka_unit_test(test_parse_refuses_malformed_na),
		cmocka_unit_test(test_parse_na_skips_other_options_before_tlla),
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_sent_frames_arrive_byte_for_byte),
		T(test_peer_garp_and_na_are_reported_as_claims),
		T(test_own_sends_are_not_reported),
		T(test_vlan_tagged_claim_is_not_reported),
		T(test_callback_may_free_its_handle),
		cmocka_unit_test(test_new_fails_for_missing_interface),
		T(test_send_refuses_frame_shorter_than_ethernet_header),
#undef T
	};

	log_open("test_announce", LOG_DEST_STDERR, LOG_LVL_ERROR);
	netns_ok = make_netns();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
