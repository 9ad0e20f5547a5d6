/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_wire.c - the watchdog's datagram codec: every message type survives
 * seal and open between two peers; a heartbeat encodes to known bytes; a
 * frame built here independently from the specification in wire.h (its own
 * HKDF through EVP_PKEY, its own AEAD calls) opens, so the key derivation,
 * nonce and AAD are what the header says; every rejection reason is
 * produced, counted, and changes nothing else; the replay window and boot
 * handling accept and refuse what they must; the body decoder refuses
 * every malformed body; the key file is refused unless private and long
 * enough; the steady-state seal and open allocate nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "watchdog/wire.h"

#define CLUSTER "lab"
#define BOOT_1 ((uint64_t)7 << 24 | 0x123456)
#define BOOT_2 ((uint64_t)3 << 24 | 0xabcdef)
#define SECRET_LEN 40

static uint8_t secret[SECRET_LEN];
static uint8_t other_secret[SECRET_LEN];

/* OpenSSL's allocations, counted through CRYPTO_set_mem_functions. */
static unsigned long ossl_allocs;
static int ossl_counting;

static void *
count_malloc(size_t n, const char *file, int line)
{
	ossl_allocs++;
	return malloc(n);
}

static void *
count_realloc(void *p, size_t n, const char *file, int line)
{
	ossl_allocs++;
	return realloc(p, n);
}

static void
count_free(void *p, const char *file, int line)
{
	free(p);
}

/* ---- helpers ---- */

/* Which peer each test wire is, so seal() can address the other one. */
static struct {
	const struct wire *w;
	uint8_t self;
} ids[64];
static size_t nids;

static uint8_t
self_of(const struct wire *w)
{
	for (size_t i = nids; i-- > 0;)
		if (ids[i].w == w)
			return ids[i].self;
	return 0;
}

/* A wire for peer self of cluster with key sec, knowing peers 1..3. */
static struct wire *
mk(const char *cluster, const uint8_t *sec, uint8_t self, uint64_t boot)
{
	char err[256] = "";
	struct wire *w = wire_new(cluster, sec, SECRET_LEN, self, boot, err,
				  sizeof(err));

	if (!w)
		fail_msg("wire_new: %s", err);
	if (nids < sizeof(ids) / sizeof(ids[0])) {
		ids[nids].w = w;
		ids[nids++].self = self;
	}
	for (uint8_t id = 1; id <= 3; id++)
		assert_int_equal(wire_add_peer(w, id), 0);
	return w;
}

static void
sample(uint8_t type, struct wd_msg *m)
{
	static const uint8_t ext[] = { 0x00, 0x01, 0x00, 0x02, 0xab, 0xcd,
				       0x12, 0x34, 0x00, 0x00 };

	memset(m, 0, sizeof(*m));
	m->type = type;
	m->term = 0x0102030405060708ULL;
	switch (type) {
	case WD_MSG_HEARTBEAT:
		m->role = WD_LEADER;
		m->leader = 2;
		m->flags = WD_HB_TILT | WD_HB_FENCED_MODE;
		m->hb_seq = 0x1112131415161718ULL;
		m->echo_seq = 0x2122232425262728ULL;
		m->echo_delay_ms = 0x31323334;
		m->lease_left_ms = 0x41424344;
		m->ext_len = sizeof(ext);
		memcpy(m->ext, ext, sizeof(ext));
		break;
	case WD_MSG_VOTE_REQ:
		m->vote_flags = WD_VOTE_HANDOVER;
		break;
	case WD_MSG_PREVOTE_RESP:
	case WD_MSG_VOTE_RESP:
		m->granted = 1;
		break;
	default:
		break;
	}
}

/* Seals for the other end of the test: peer 2, or peer 1 when w is 2. */
static size_t
seal(struct wire *w, const struct wd_msg *m, uint8_t *out)
{
	ssize_t n = wire_seal(w, self_of(w) == 2 ? 1 : 2, m, out, WIRE_MAX_DGRAM);

	assert_true(n > 0);
	return (size_t)n;
}

static size_t
seal_sample(struct wire *w, uint8_t *out)
{
	struct wd_msg m;

	sample(WD_MSG_HEARTBEAT, &m);
	return seal(w, &m, out);
}

/*
 * Opens frame on w and expects reason want: only want's counter moved,
 * and on a rejection *from and *m are untouched.
 */
static void
expect_open(struct wire *w, const uint8_t *frame, size_t len,
	    enum wire_reject want)
{
	uint64_t before[WIRE_R_COUNT];
	struct wd_msg m, orig;
	uint8_t from = 0xee;
	enum wire_reject r;

	memcpy(before, wire_counters(w), sizeof(before));
	memset(&m, 0xa5, sizeof(m));
	orig = m;
	r = wire_open(w, frame, len, &from, &m);
	assert_string_equal(wire_reject_name(r), wire_reject_name(want));
	for (int i = 0; i < WIRE_R_COUNT; i++)
		assert_int_equal(wire_counters(w)[i], before[i] + (i == (int)want));
	if (want != WIRE_OK) {
		assert_int_equal(from, 0xee);
		assert_memory_equal(&m, &orig, sizeof(m));
	}
}

static void
assert_msg_equal(const struct wd_msg *a, const struct wd_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->term, b->term);
	assert_int_equal(a->role, b->role);
	assert_int_equal(a->leader, b->leader);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->hb_seq, b->hb_seq);
	assert_int_equal(a->echo_seq, b->echo_seq);
	assert_int_equal(a->echo_delay_ms, b->echo_delay_ms);
	assert_int_equal(a->lease_left_ms, b->lease_left_ms);
	assert_int_equal(a->granted, b->granted);
	assert_int_equal(a->vote_flags, b->vote_flags);
	assert_int_equal(a->ext_len, b->ext_len);
	assert_memory_equal(a->ext, b->ext, a->ext_len);
}

static void
be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* First 8 bytes of SHA-256("pgvigil cluster " + name), per wire.h. */
static void
cluster_id(const char *name, uint8_t id[8])
{
	char buf[128];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	int n = snprintf(buf, sizeof(buf), "pgvigil cluster %s", name);

	assert_int_equal(EVP_Digest(buf, (size_t)n, md, &mdlen, EVP_sha256(), NULL), 1);
	memcpy(id, md, 8);
}

/*
 * Builds a frame from wire.h's specification with APIs wire.c does not use
 * (EVP_PKEY HKDF, a fresh cipher context): reserved and the body are free,
 * so the test can seal what wire_seal never would.
 */
static size_t
build_frame(const uint8_t *sec, uint8_t sender, uint64_t boot, uint64_t seq,
	    uint8_t reserved, const uint8_t *body, size_t blen, uint8_t *out)
{
	uint8_t key[32], info[15 + 1 + 8], nonce[12] = { 0 }, salt[8];
	size_t keylen = sizeof(key);
	EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0;

	assert_non_null(kctx);
	assert_non_null(c);
	cluster_id(CLUSTER, salt);
	memcpy(info, "pgvigil wire v1", 15);
	info[15] = sender;
	be64(info + 16, boot);
	assert_int_equal(EVP_PKEY_derive_init(kctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_hkdf_md(kctx, EVP_sha256()), 1);
	assert_int_equal(EVP_PKEY_CTX_set1_hkdf_salt(kctx, salt, 8), 1);
	assert_int_equal(EVP_PKEY_CTX_set1_hkdf_key(kctx, sec, SECRET_LEN), 1);
	assert_int_equal(EVP_PKEY_CTX_add1_hkdf_info(kctx, info, sizeof(info)), 1);
	assert_int_equal(EVP_PKEY_derive(kctx, key, &keylen), 1);
	EVP_PKEY_CTX_free(kctx);

	memcpy(out, "PGVW", 4);
	out[4] = WIRE_VERSION;
	out[5] = sender;
	out[6] = 2;	/* the recipient: these frames are opened by peer 2 */
	out[7] = reserved;
	memcpy(out + 8, salt, 8);
	be64(out + 16, boot);
	be64(out + 24, seq);
	be64(nonce + 4, seq);
	assert_int_equal(EVP_EncryptInit_ex(c, EVP_chacha20_poly1305(), NULL, key, nonce), 1);
	assert_int_equal(EVP_EncryptUpdate(c, NULL, &n, out, 32), 1);
	assert_int_equal(EVP_EncryptUpdate(c, out + 32, &n, body, (int)blen), 1);
	assert_int_equal(EVP_EncryptFinal_ex(c, out + 32 + n, &n), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16,
					     out + 32 + blen), 1);
	EVP_CIPHER_CTX_free(c);
	OPENSSL_cleanse(key, sizeof(key));
	return 32 + blen + 16;
}

static size_t
build_sample(uint8_t sender, uint64_t boot, uint64_t seq, uint8_t *out)
{
	uint8_t body[WIRE_MAX_DGRAM];
	struct wd_msg m;
	ssize_t blen;

	sample(WD_MSG_HEARTBEAT, &m);
	blen = wire_encode_body(&m, body, sizeof(body));
	assert_true(blen > 0);
	return build_frame(secret, sender, boot, seq, 0, body, (size_t)blen, out);
}

/* ---- round trips and golden bytes ---- */

static void
test_wire_every_message_type_round_trips_between_two_peers(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t frame[WIRE_MAX_DGRAM];

	for (uint8_t t = 1; t <= WD_MSG_TYPE_MAX; t++) {
		struct wd_msg m, got;
		uint8_t from = 0;
		size_t n;

		sample(t, &m);
		n = seal(a, &m, frame);
		assert_int_equal(wire_open(b, frame, n, &from, &got), WIRE_OK);
		assert_int_equal(from, 1);
		assert_msg_equal(&got, &m);

		n = seal(b, &m, frame);
		assert_int_equal(wire_open(a, frame, n, &from, &got), WIRE_OK);
		assert_int_equal(from, 2);
		assert_msg_equal(&got, &m);
	}
	assert_int_equal(wire_counters(b)[WIRE_OK], WD_MSG_TYPE_MAX);
	assert_int_equal(wire_counters(a)[WIRE_OK], WD_MSG_TYPE_MAX);
	assert_int_equal(wire_peer_boot(b, 1), BOOT_1);
	assert_int_equal(wire_peer_boot(a, 2), BOOT_2);
	assert_int_equal(wire_peer_boot(a, 3), 0);
	assert_int_equal(wire_boot_id(a), BOOT_1);
	wire_free(a);
	wire_free(b);
}

static void
test_wire_heartbeat_body_encodes_to_golden_bytes(void **s)
{
	static const uint8_t want[] = {
		0x01,					/* type */
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,	/* term */
		0x03,					/* role */
		0x02,					/* leader */
		0x05,					/* flags */
		0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,	/* hb_seq */
		0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,	/* echo_seq */
		0x31, 0x32, 0x33, 0x34,			/* echo_delay_ms */
		0x41, 0x42, 0x43, 0x44,			/* lease_left_ms */
		0x00, 0x0a,				/* ext_len */
		0x00, 0x01, 0x00, 0x02, 0xab, 0xcd,	/* TLV 1, 2 bytes */
		0x12, 0x34, 0x00, 0x00,			/* TLV 0x1234, empty */
	};
	uint8_t out[WIRE_MAX_DGRAM];
	struct wd_msg m;

	sample(WD_MSG_HEARTBEAT, &m);
	assert_int_equal(wire_encode_body(&m, out, sizeof(out)), sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
	/* Exactly enough room works, one byte less does not. */
	assert_int_equal(wire_encode_body(&m, out, sizeof(want)), sizeof(want));
	assert_int_equal(wire_encode_body(&m, out, sizeof(want) - 1), -1);
}

static void
test_wire_seal_matches_frame_built_from_the_specification(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t got[WIRE_MAX_DGRAM], want[WIRE_MAX_DGRAM];
	size_t n, wn;

	n = seal_sample(a, got);
	n = seal_sample(a, got);	/* seq 2 */
	wn = build_sample(1, BOOT_1, 2, want);
	assert_int_equal(n, wn);
	assert_memory_equal(got, want, n);
	/* and the other way: a frame built here opens */
	wn = build_sample(1, BOOT_1, 3, want);
	expect_open(b, want, wn, WIRE_OK);
	wire_free(a);
	wire_free(b);
}

/* ---- structural rejections ---- */

static void
test_wire_short_and_oversized_datagrams_are_rejected(void **s)
{
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t frame[WIRE_MAX_DGRAM + 1] = { 0 };
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	size_t n = seal_sample(a, frame);

	expect_open(b, frame, 0, WIRE_R_SHORT);
	expect_open(b, frame, WIRE_HEADER_LEN + WIRE_TAG_LEN, WIRE_R_SHORT);
	expect_open(b, frame, WIRE_MAX_DGRAM + 1, WIRE_R_SHORT);
	/* a sealed frame cut short is structurally fine but fails the tag */
	expect_open(b, frame, n - 1, WIRE_R_AUTH);
	expect_open(b, frame, n, WIRE_OK);
	wire_free(a);
	wire_free(b);
}

static void
test_wire_bad_magic_and_other_version_are_rejected(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t frame[WIRE_MAX_DGRAM];
	size_t n = seal_sample(a, frame);

	frame[0] ^= 0x01;
	expect_open(b, frame, n, WIRE_R_MAGIC);
	frame[0] ^= 0x01;
	frame[4] = WIRE_VERSION + 1;
	expect_open(b, frame, n, WIRE_R_VERSION);
	frame[4] = WIRE_VERSION;
	expect_open(b, frame, n, WIRE_OK);
	wire_free(a);
	wire_free(b);
}

static void
test_wire_other_cluster_with_same_secret_is_rejected(void **s)
{
	struct wire *a = mk("other", secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t frame[WIRE_MAX_DGRAM];
	size_t n = seal_sample(a, frame);

	expect_open(b, frame, n, WIRE_R_CLUSTER);
	assert_int_equal(wire_peer_boot(b, 1), 0);
	wire_free(a);
	wire_free(b);
}

static void
test_wire_unknown_sender_is_rejected(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 9, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t frame[WIRE_MAX_DGRAM];
	size_t n = seal_sample(a, frame);

	expect_open(b, frame, n, WIRE_R_UNKNOWN_SENDER);
	assert_int_equal(wire_add_peer(b, 9), 0);
	expect_open(b, frame, n, WIRE_OK);
	wire_free(a);
	wire_free(b);
}

static void
test_wire_own_frames_are_rejected_as_self(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	uint8_t frame[WIRE_MAX_DGRAM];
	size_t n = seal_sample(a, frame);

	/* mk added peer 1 to wire 1: self is never a peer */
	expect_open(a, frame, n, WIRE_R_SELF);
	wire_free(a);
}

/* ---- authentication ---- */

static void
test_wire_flipped_header_byte_fails_authentication(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t frame[WIRE_MAX_DGRAM];
	size_t n = seal_sample(a, frame);

	/* The header is the AAD: any byte past the structural checks, in
	 * boot (another key) or seq (another nonce), or reserved. */
	for (size_t i = 7; i < WIRE_HEADER_LEN; i++) {
		if (i >= 8 && i < 16)
			continue;	/* cluster id: checked structurally */
		frame[i] ^= 0x40;
		expect_open(b, frame, n, WIRE_R_AUTH);
		frame[i] ^= 0x40;
	}
	assert_int_equal(wire_peer_boot(b, 1), 0);
	expect_open(b, frame, n, WIRE_OK);
	wire_free(a);
	wire_free(b);
}

/*
 * A vote peer 1 granted to candidate 2, copied by someone on the network
 * to candidate 3: peer 3 must not count it. As sent it is not for peer 3;
 * with its recipient rewritten it no longer authenticates.
 */
static void
test_wire_frame_for_another_peer_is_not_accepted(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	struct wire *c = mk(CLUSTER, secret, 3, BOOT_2);
	uint8_t frame[WIRE_MAX_DGRAM];
	struct wd_msg m;
	ssize_t n;

	(void)s;
	sample(WD_MSG_VOTE_RESP, &m);
	n = wire_seal(a, 2, &m, frame, sizeof(frame));
	assert_true(n > 0);
	expect_open(c, frame, (size_t)n, WIRE_R_NOT_FOR_US);
	frame[6] = 3;
	expect_open(c, frame, (size_t)n, WIRE_R_AUTH);
	frame[6] = 2;
	expect_open(b, frame, (size_t)n, WIRE_OK);
	assert_int_equal(wire_counters(c)[WIRE_R_NOT_FOR_US], 1);
	assert_int_equal(wire_counters(c)[WIRE_OK], 0);
	wire_free(a);
	wire_free(b);
	wire_free(c);
}

static void
test_wire_flipped_ciphertext_or_tag_fails_authentication(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t frame[WIRE_MAX_DGRAM];
	size_t n = seal_sample(a, frame);

	for (size_t i = WIRE_HEADER_LEN; i < n; i++) {
		frame[i] ^= 0x01;
		expect_open(b, frame, n, WIRE_R_AUTH);
		frame[i] ^= 0x01;
	}
	expect_open(b, frame, n, WIRE_OK);
	wire_free(a);
	wire_free(b);
}

static void
test_wire_wrong_secret_fails_authentication(void **s)
{
	struct wire *a = mk(CLUSTER, other_secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t frame[WIRE_MAX_DGRAM];
	size_t n = seal_sample(a, frame);

	expect_open(b, frame, n, WIRE_R_AUTH);
	assert_int_equal(wire_peer_boot(b, 1), 0);
	wire_free(a);
	wire_free(b);
}

/* ---- replay window and boots ---- */

static void
test_wire_replayed_frame_is_rejected_and_changes_nothing(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t f1[WIRE_MAX_DGRAM], f2[WIRE_MAX_DGRAM];
	size_t n1 = seal_sample(a, f1), n2 = seal_sample(a, f2);

	expect_open(b, f1, n1, WIRE_OK);
	expect_open(b, f1, n1, WIRE_R_REPLAY);
	expect_open(b, f1, n1, WIRE_R_REPLAY);
	expect_open(b, f2, n2, WIRE_OK);
	expect_open(b, f2, n2, WIRE_R_REPLAY);
	wire_free(a);
	wire_free(b);
}

static void
test_wire_out_of_order_within_window_is_accepted_once(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t f[5][WIRE_MAX_DGRAM];
	size_t n[5];

	for (int i = 0; i < 5; i++)
		n[i] = seal_sample(a, f[i]);
	expect_open(b, f[4], n[4], WIRE_OK);
	expect_open(b, f[1], n[1], WIRE_OK);
	expect_open(b, f[1], n[1], WIRE_R_REPLAY);
	expect_open(b, f[0], n[0], WIRE_OK);
	expect_open(b, f[3], n[3], WIRE_OK);
	expect_open(b, f[2], n[2], WIRE_OK);
	for (int i = 0; i < 5; i++)
		expect_open(b, f[i], n[i], WIRE_R_REPLAY);
	wire_free(a);
	wire_free(b);
}

static void
test_wire_frame_older_than_window_is_rejected(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	enum { N = WIRE_REPLAY_WINDOW + 6 };
	static uint8_t f[N + 1][WIRE_MAX_DGRAM];
	size_t n[N + 1];

	for (int seq = 1; seq <= N; seq++)
		n[seq] = seal_sample(a, f[seq]);
	expect_open(b, f[N], n[N], WIRE_OK);
	/* N - 64 is one step outside the window, N - 63 the oldest inside */
	expect_open(b, f[N - WIRE_REPLAY_WINDOW], n[N - WIRE_REPLAY_WINDOW],
		    WIRE_R_REPLAY);
	expect_open(b, f[1], n[1], WIRE_R_REPLAY);
	expect_open(b, f[N - WIRE_REPLAY_WINDOW + 1],
		    n[N - WIRE_REPLAY_WINDOW + 1], WIRE_OK);
	wire_free(a);
	wire_free(b);
}

static void
test_wire_jump_beyond_window_forgets_older_frames(void **s)
{
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t f[WIRE_MAX_DGRAM];
	size_t n;

	n = build_sample(1, BOOT_1, 10, f);
	expect_open(b, f, n, WIRE_OK);
	n = build_sample(1, BOOT_1, 10 + 1000, f);
	expect_open(b, f, n, WIRE_OK);
	n = build_sample(1, BOOT_1, 10, f);
	expect_open(b, f, n, WIRE_R_REPLAY);
	n = build_sample(1, BOOT_1, 1000, f);
	expect_open(b, f, n, WIRE_OK);
	/* a jump of exactly the window size: 2000 and 1999 seen, then 2064 */
	n = build_sample(1, BOOT_1, 1999, f);
	expect_open(b, f, n, WIRE_OK);
	n = build_sample(1, BOOT_1, 2000, f);
	expect_open(b, f, n, WIRE_OK);
	n = build_sample(1, BOOT_1, 2000 + WIRE_REPLAY_WINDOW, f);
	expect_open(b, f, n, WIRE_OK);
	n = build_sample(1, BOOT_1, 2000 + WIRE_REPLAY_WINDOW - 1, f);
	expect_open(b, f, n, WIRE_OK);
	n = build_sample(1, BOOT_1, 2000, f);
	expect_open(b, f, n, WIRE_R_REPLAY);
	wire_free(b);
}

static void
test_wire_sequence_zero_is_rejected_as_replay(void **s)
{
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t f[WIRE_MAX_DGRAM];
	size_t n = build_sample(1, BOOT_1, 0, f);

	expect_open(b, f, n, WIRE_R_REPLAY);
	assert_int_equal(wire_peer_boot(b, 1), 0);
	wire_free(b);
}

static void
test_wire_older_boot_is_rejected_after_newer_boot(void **s)
{
	struct wire *old = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *cur = mk(CLUSTER, secret, 1, BOOT_1 + (1 << 24));
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t fo[WIRE_MAX_DGRAM], fc[WIRE_MAX_DGRAM];
	size_t no = seal_sample(old, fo), nc = seal_sample(cur, fc);

	expect_open(b, fc, nc, WIRE_OK);
	expect_open(b, fo, no, WIRE_R_STALE_BOOT);
	assert_int_equal(wire_peer_boot(b, 1), BOOT_1 + (1 << 24));
	/* a forged frame of the old boot is an AUTH failure, not STALE */
	fo[no - 1] ^= 1;
	expect_open(b, fo, no, WIRE_R_AUTH);
	nc = seal_sample(cur, fc);
	expect_open(b, fc, nc, WIRE_OK);
	wire_free(old);
	wire_free(cur);
	wire_free(b);
}

static void
test_wire_boot_zero_is_rejected_as_stale(void **s)
{
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t f[WIRE_MAX_DGRAM];
	size_t n = build_sample(1, 0, 1, f);

	expect_open(b, f, n, WIRE_R_STALE_BOOT);
	assert_int_equal(wire_peer_boot(b, 1), 0);
	wire_free(b);
}

static void
test_wire_new_boot_is_accepted_and_resets_window(void **s)
{
	struct wire *old = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t f[WIRE_MAX_DGRAM], later[WIRE_MAX_DGRAM];
	struct wire *cur;
	size_t n, nl;

	for (int i = 0; i < 10; i++) {
		n = seal_sample(old, f);
		expect_open(b, f, n, WIRE_OK);
	}
	nl = seal_sample(old, later);	/* seq 11 of the old boot, held back */
	assert_int_equal(wire_peer_boot(b, 1), BOOT_1);

	cur = mk(CLUSTER, secret, 1, BOOT_1 + (1 << 24));
	n = seal_sample(cur, f);	/* seq 1: a replay in the old window */
	expect_open(b, f, n, WIRE_OK);
	assert_int_equal(wire_peer_boot(b, 1), BOOT_1 + (1 << 24));
	expect_open(b, f, n, WIRE_R_REPLAY);
	expect_open(b, later, nl, WIRE_R_STALE_BOOT);
	wire_free(old);
	wire_free(cur);
	wire_free(b);
}

static void
test_wire_forged_future_seq_does_not_move_window(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t f[WIRE_MAX_DGRAM], next[WIRE_MAX_DGRAM];
	size_t n = seal_sample(a, f), nn;

	expect_open(b, f, n, WIRE_OK);
	nn = seal_sample(a, next);	/* seq 2, held back */
	/* The captured frame with seq pushed far ahead (and a bad tag). */
	be64(f + 24, 1000000);
	expect_open(b, f, n, WIRE_R_AUTH);
	expect_open(b, next, nn, WIRE_OK);
	wire_free(a);
	wire_free(b);
}

static void
test_wire_forged_new_boot_does_not_disturb_state(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t f[WIRE_MAX_DGRAM], next[WIRE_MAX_DGRAM];
	size_t n = seal_sample(a, f), nn;

	expect_open(b, f, n, WIRE_OK);
	nn = seal_sample(a, next);
	be64(f + 16, BOOT_1 + (5 << 24));
	expect_open(b, f, n, WIRE_R_AUTH);
	assert_int_equal(wire_peer_boot(b, 1), BOOT_1);
	expect_open(b, next, nn, WIRE_OK);
	wire_free(a);
	wire_free(b);
}

static void
test_wire_authentic_malformed_frame_is_counted_and_changes_nothing(void **s)
{
	static const uint8_t bad_type[] = { 0x07, 0, 0, 0, 0, 0, 0, 0, 1 };
	static const uint8_t granted2[] = { WD_MSG_VOTE_RESP, 0, 0, 0, 0, 0, 0, 0, 1, 2 };
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t body[WIRE_MAX_DGRAM], f[WIRE_MAX_DGRAM];
	struct wd_msg m;
	ssize_t blen;
	size_t n;

	n = build_frame(secret, 1, BOOT_1, 5, 0, bad_type, sizeof(bad_type), f);
	expect_open(b, f, n, WIRE_R_MALFORMED);
	n = build_frame(secret, 1, BOOT_1, 5, 0, granted2, sizeof(granted2), f);
	expect_open(b, f, n, WIRE_R_MALFORMED);
	/* a good body with nonzero reserved bytes, under a valid tag */
	sample(WD_MSG_HANDOVER, &m);
	blen = wire_encode_body(&m, body, sizeof(body));
	assert_true(blen > 0);
	n = build_frame(secret, 1, BOOT_1, 5, 0x01, body, (size_t)blen, f);
	expect_open(b, f, n, WIRE_R_MALFORMED);
	/* none of them was committed: no boot adopted, seq 5 still fresh */
	assert_int_equal(wire_peer_boot(b, 1), 0);
	n = build_frame(secret, 1, BOOT_1, 5, 0, body, (size_t)blen, f);
	expect_open(b, f, n, WIRE_OK);
	assert_int_equal(wire_peer_boot(b, 1), BOOT_1);
	wire_free(b);
}

/* ---- body decoder ---- */

static void
expect_decode_fails(const uint8_t *in, size_t len)
{
	struct wd_msg m;

	memset(&m, 0x5a, sizeof(m));
	assert_int_equal(wire_decode_body(in, len, &m), -1);
}

static void
test_wire_decode_rejects_unknown_types(void **s)
{
	uint8_t body[16] = { 0 };

	for (unsigned t = 0; t < 256; t++) {
		if (t >= 1 && t <= WD_MSG_TYPE_MAX)
			continue;
		body[0] = (uint8_t)t;
		for (size_t len = 9; len <= sizeof(body); len++)
			expect_decode_fails(body, len);
	}
}

static void
test_wire_decode_rejects_every_truncation_and_a_trailing_byte(void **s)
{
	for (uint8_t t = 1; t <= WD_MSG_TYPE_MAX; t++) {
		uint8_t body[WIRE_MAX_DGRAM];
		struct wd_msg m, got;
		ssize_t n;

		sample(t, &m);
		n = wire_encode_body(&m, body, sizeof(body) - 1);
		assert_true(n > 0);
		for (ssize_t len = 0; len < n; len++)
			expect_decode_fails(body, (size_t)len);
		body[n] = 0;
		expect_decode_fails(body, (size_t)n + 1);
		assert_int_equal(wire_decode_body(body, (size_t)n, &got), 0);
		assert_msg_equal(&got, &m);
	}
}

static void
test_wire_decode_zeroes_fields_of_other_types(void **s)
{
	static const uint8_t body[] = { WD_MSG_PREVOTE_REQ, 0, 0, 0, 0, 0, 0, 0, 9 };
	struct wd_msg m;

	memset(&m, 0x5a, sizeof(m));
	assert_int_equal(wire_decode_body(body, sizeof(body), &m), 0);
	assert_int_equal(m.type, WD_MSG_PREVOTE_REQ);
	assert_int_equal(m.term, 9);
	assert_int_equal(m.role, 0);
	assert_int_equal(m.hb_seq, 0);
	assert_int_equal(m.granted, 0);
	assert_int_equal(m.ext_len, 0);
	assert_int_equal(m.ext[WD_EXT_MAX - 1], 0);
}

/* A heartbeat body whose ext is the given bytes under the given ext_len. */
static size_t
heartbeat_with_ext(uint16_t ext_len, const uint8_t *ext, size_t n,
		   uint8_t *out)
{
	static const uint8_t head[] = {
		0x01, 0, 0, 0, 0, 0, 0, 0, 1,	/* type, term */
		0, 0, 0,			/* role, leader, flags */
		0, 0, 0, 0, 0, 0, 0, 1,		/* hb_seq */
		0, 0, 0, 0, 0, 0, 0, 0,		/* echo_seq */
		0, 0, 0, 0, 0, 0, 0, 0,		/* echo_delay, lease_left */
	};

	memcpy(out, head, sizeof(head));
	out[sizeof(head)] = (uint8_t)(ext_len >> 8);
	out[sizeof(head) + 1] = (uint8_t)ext_len;
	memcpy(out + sizeof(head) + 2, ext, n);
	return sizeof(head) + 2 + n;
}

static void
test_wire_decode_rejects_bad_extension_tlvs(void **s)
{
	static const uint8_t half_header[] = { 0x00, 0x01, 0x00 };
	static const uint8_t overrun[] = { 0x00, 0x01, 0x00, 0x03, 0xaa, 0xbb };
	static const uint8_t overrun2[] = { 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0xff, 0xff, 0x00 };
	static const uint8_t good[] = { 0x00, 0x01, 0x00, 0x02, 0xaa, 0xbb, 0x00, 0x02, 0x00, 0x00 };
	static uint8_t big[WD_EXT_MAX + 1];
	uint8_t body[WIRE_MAX_DGRAM];
	struct wd_msg m;
	size_t n;

	n = heartbeat_with_ext(sizeof(half_header), half_header, sizeof(half_header), body);
	expect_decode_fails(body, n);
	n = heartbeat_with_ext(sizeof(overrun), overrun, sizeof(overrun), body);
	expect_decode_fails(body, n);
	n = heartbeat_with_ext(sizeof(overrun2), overrun2, sizeof(overrun2), body);
	expect_decode_fails(body, n);
	/* ext_len claims less than the TLVs take: a cut TLV, then trailing */
	n = heartbeat_with_ext(sizeof(good) - 1, good, sizeof(good), body);
	expect_decode_fails(body, n);
	/* ext_len claims more than there is */
	n = heartbeat_with_ext(sizeof(good) + 1, good, sizeof(good), body);
	expect_decode_fails(body, n);
	/* ext_len above WD_EXT_MAX, even with well-formed TLVs behind it */
	big[0] = 0;
	big[1] = 1;
	big[2] = (uint8_t)((WD_EXT_MAX + 1 - 4) >> 8);
	big[3] = (uint8_t)(WD_EXT_MAX + 1 - 4);
	n = heartbeat_with_ext(WD_EXT_MAX + 1, big, sizeof(big), body);
	expect_decode_fails(body, n);
	/* the same at exactly WD_EXT_MAX is fine */
	big[2] = (uint8_t)((WD_EXT_MAX - 4) >> 8);
	big[3] = (uint8_t)(WD_EXT_MAX - 4);
	n = heartbeat_with_ext(WD_EXT_MAX, big, WD_EXT_MAX, body);
	assert_int_equal(wire_decode_body(body, n, &m), 0);
	assert_int_equal(m.ext_len, WD_EXT_MAX);
	n = heartbeat_with_ext(sizeof(good), good, sizeof(good), body);
	assert_int_equal(wire_decode_body(body, n, &m), 0);
	n = heartbeat_with_ext(0, good, 0, body);
	assert_int_equal(wire_decode_body(body, n, &m), 0);
}

/*
 * The largest heartbeat: an extension of WD_EXT_MAX bytes (three TLVs, the
 * last one filling it) and the yielding flag. Its body is exactly
 * WIRE_HEARTBEAT_FIXED + WD_EXT_MAX bytes, the sealed frame
 * WIRE_HEARTBEAT_MAX, within one datagram, and it opens as sent.
 */
static void
test_wire_heartbeat_with_full_extension_fits_one_datagram(void **s)
{
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);
	struct wire *b = mk(CLUSTER, secret, 2, BOOT_2);
	uint8_t body[WIRE_MAX_DGRAM], frame[WIRE_MAX_DGRAM];
	struct wd_msg m, got;
	uint8_t from = 0;
	size_t n, off = 0;
	uint16_t tlv[3] = { 100, 0, WD_EXT_MAX - 100 - 4 - 4 - 4 };

	sample(WD_MSG_HEARTBEAT, &m);
	m.flags = WD_HB_YIELDING;
	for (int k = 0; k < 3; k++) {
		m.ext[off++] = 0;
		m.ext[off++] = (uint8_t)(k + 1);
		m.ext[off++] = (uint8_t)(tlv[k] >> 8);
		m.ext[off++] = (uint8_t)tlv[k];
		for (uint16_t i = 0; i < tlv[k]; i++)
			m.ext[off++] = (uint8_t)(i * 13 + k);
	}
	assert_int_equal(off, WD_EXT_MAX);
	m.ext_len = WD_EXT_MAX;
	assert_true(wire_ext_valid(m.ext, m.ext_len));
	assert_false(wire_ext_valid(m.ext, m.ext_len - 1));
	assert_int_equal(wire_encode_body(&m, body, sizeof(body)),
			 WIRE_HEARTBEAT_FIXED + WD_EXT_MAX);
	n = seal(a, &m, frame);
	assert_int_equal(n, WIRE_HEARTBEAT_MAX);
	assert_true(n <= WIRE_MAX_DGRAM);
	assert_int_equal(wire_open(b, frame, n, &from, &got), WIRE_OK);
	assert_msg_equal(&got, &m);
	/* The fixed part is what wire.h says: an empty extension. */
	m.ext_len = 0;
	assert_int_equal(wire_encode_body(&m, body, sizeof(body)), WIRE_HEARTBEAT_FIXED);
	assert_true(wire_ext_valid(m.ext, 0));
	wire_free(a);
	wire_free(b);
}

static void
test_wire_decode_rejects_out_of_range_values(void **s)
{
	uint8_t body[WIRE_MAX_DGRAM];
	struct wd_msg m;
	ssize_t n;

	for (uint8_t t = WD_MSG_PREVOTE_RESP; t <= WD_MSG_VOTE_RESP; t += 2) {
		sample(t, &m);
		n = wire_encode_body(&m, body, sizeof(body));
		assert_true(n > 0);
		body[n - 1] = 2;	/* granted */
		expect_decode_fails(body, (size_t)n);
		body[n - 1] = 0xff;
		expect_decode_fails(body, (size_t)n);
	}
	sample(WD_MSG_HEARTBEAT, &m);
	n = wire_encode_body(&m, body, sizeof(body));
	assert_true(n > 0);
	body[9] = WD_ROLE_MAX + 1;	/* role */
	expect_decode_fails(body, (size_t)n);
}

static void
test_wire_encode_refuses_what_decode_would_refuse(void **s)
{
	uint8_t out[WIRE_MAX_DGRAM];
	struct wd_msg m;
	struct wire *a = mk(CLUSTER, secret, 1, BOOT_1);

	sample(WD_MSG_HEARTBEAT, &m);
	m.type = 0;
	assert_int_equal(wire_encode_body(&m, out, sizeof(out)), -1);
	m.type = WD_MSG_TYPE_MAX + 1;
	assert_int_equal(wire_encode_body(&m, out, sizeof(out)), -1);
	sample(WD_MSG_HEARTBEAT, &m);
	m.role = WD_ROLE_MAX + 1;
	assert_int_equal(wire_encode_body(&m, out, sizeof(out)), -1);
	assert_int_equal(wire_seal(a, 2, &m, out, sizeof(out)), -1);
	sample(WD_MSG_HEARTBEAT, &m);
	m.ext_len = WD_EXT_MAX + 1;
	assert_int_equal(wire_encode_body(&m, out, sizeof(out)), -1);
	sample(WD_MSG_HEARTBEAT, &m);
	m.ext_len = 3;		/* cuts the first TLV */
	assert_int_equal(wire_encode_body(&m, out, sizeof(out)), -1);
	sample(WD_MSG_VOTE_RESP, &m);
	m.granted = 2;
	assert_int_equal(wire_encode_body(&m, out, sizeof(out)), -1);
	/* fields of other types do not matter */
	sample(WD_MSG_VOTE_REQ, &m);
	m.role = 200;
	m.granted = 200;
	assert_true(wire_encode_body(&m, out, sizeof(out)) > 0);
	/* seal wants room for the whole datagram */
	sample(WD_MSG_HANDOVER, &m);
	assert_int_equal(wire_seal(a, 2, &m, out, WIRE_HEADER_LEN + 9 + WIRE_TAG_LEN - 1), -1);
	assert_int_equal(wire_seal(a, 2, &m, out, WIRE_HEADER_LEN + 9 + WIRE_TAG_LEN),
			 WIRE_HEADER_LEN + 9 + WIRE_TAG_LEN);
	wire_free(a);
}

/* ---- set-up ---- */

static void
test_wire_new_refuses_bad_arguments(void **s)
{
	char err[256];

	assert_null(wire_new(CLUSTER, secret, WIRE_KEY_MIN - 1, 1, BOOT_1, err, sizeof(err)));
	assert_non_null(strstr(err, "too short"));
	assert_null(wire_new("", secret, SECRET_LEN, 1, BOOT_1, err, sizeof(err)));
	assert_non_null(strstr(err, "cluster name"));
	assert_null(wire_new(CLUSTER, secret, SECRET_LEN, 0, BOOT_1, err, sizeof(err)));
	assert_non_null(strstr(err, "peer id"));
	assert_null(wire_new(CLUSTER, secret, SECRET_LEN, 1, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "boot id"));
	wire_free(NULL);
}

static void
test_wire_peer_table_holds_max_peers_and_skips_self(void **s)
{
	char err[256];
	struct wire *w = wire_new(CLUSTER, secret, SECRET_LEN, 1, BOOT_1, err,
				  sizeof(err));
	unsigned added = 0;

	assert_non_null(w);
	assert_int_equal(wire_add_peer(w, 0), -1);
	assert_int_equal(wire_add_peer(w, 1), 0);	/* self: no slot */
	for (unsigned id = 2; added < WD_MAX_PEERS; id++, added++)
		assert_int_equal(wire_add_peer(w, (uint8_t)id), 0);
	assert_int_equal(wire_add_peer(w, 2), 0);	/* already there */
	assert_int_equal(wire_add_peer(w, 200), -1);	/* full */
	wire_free(w);
}

static void
test_wire_reject_names_are_distinct(void **s)
{
	for (int i = 0; i < WIRE_R_COUNT; i++) {
		assert_string_not_equal(wire_reject_name((enum wire_reject)i), "?");
		for (int j = 0; j < i; j++)
			assert_string_not_equal(wire_reject_name((enum wire_reject)i),
						wire_reject_name((enum wire_reject)j));
	}
	assert_string_equal(wire_reject_name(WIRE_R_COUNT), "?");
	assert_string_equal(wire_reject_name(WIRE_R_STALE_BOOT), "stale-boot");
}

/* ---- key file ---- */

static char dir[64];

static int
keydir_setup(void **s)
{
	snprintf(dir, sizeof(dir), "/tmp/pgvigil-test-wire-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int
keydir_teardown(void **s)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
write_key(const char *name, const char *content, size_t len, mode_t mode,
	  char *path, size_t pathlen)
{
	int fd;

	snprintf(path, pathlen, "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void
expect_key_refused(const char *path, size_t cap, const char *want)
{
	uint8_t out[256];
	size_t len = 12345;
	char err[512] = "";

	assert_true(cap <= sizeof(out));
	assert_int_equal(wire_load_key(path, out, cap, &len, err, sizeof(err)), -1);
	assert_int_equal(len, 12345);
	if (!strstr(err, want))
		fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

#define KEY32 "0123456789abcdef0123456789abcdef"

static void
test_wire_key_file_is_read_without_one_trailing_newline(void **s)
{
	char path[128];
	uint8_t out[256];
	size_t len = 0;
	char err[256] = "";

	write_key("k1", KEY32, 32, 0600, path, sizeof(path));
	assert_int_equal(wire_load_key(path, out, sizeof(out), &len, err, sizeof(err)), 0);
	assert_int_equal(len, 32);
	assert_memory_equal(out, KEY32, 32);

	write_key("k2", KEY32 "\n", 33, 0400, path, sizeof(path));
	assert_int_equal(wire_load_key(path, out, sizeof(out), &len, err, sizeof(err)), 0);
	assert_int_equal(len, 32);

	write_key("k3", KEY32 "\r\n", 34, 0600, path, sizeof(path));
	assert_int_equal(wire_load_key(path, out, 32, &len, err, sizeof(err)), 0);
	assert_int_equal(len, 32);

	/* only one newline goes */
	write_key("k4", KEY32 "\n\n", 34, 0600, path, sizeof(path));
	assert_int_equal(wire_load_key(path, out, sizeof(out), &len, err, sizeof(err)), 0);
	assert_int_equal(len, 33);
	assert_int_equal(out[32], '\n');
}

static void
test_wire_key_file_readable_by_others_is_refused(void **s)
{
	char path[128], want[256];

	write_key("k", KEY32, 32, 0644, path, sizeof(path));
	snprintf(want, sizeof(want),
		 "key file \"%s\" is readable or writable by group or others; chmod 0600 it",
		 path);
	expect_key_refused(path, 256, want);
	write_key("k", KEY32, 32, 0620, path, sizeof(path));
	expect_key_refused(path, 256, want);
}

static void
test_wire_key_file_too_short_or_too_long_is_refused(void **s)
{
	char path[128];

	write_key("k", "0123456789abcdef0123456789abcde\n", 32, 0600, path,
		  sizeof(path));
	expect_key_refused(path, 256, "is too short: 31 bytes, at least 32 are needed");
	write_key("k", "", 0, 0600, path, sizeof(path));
	expect_key_refused(path, 256, "is too short: 0 bytes");
	write_key("k", KEY32 "x", 33, 0600, path, sizeof(path));
	expect_key_refused(path, 32, "is too long: at most 32 bytes are allowed");
	/* two bytes over the cap that are not one newline */
	write_key("k", KEY32 "\n\n", 34, 0600, path, sizeof(path));
	expect_key_refused(path, 32, "is too long");
	write_key("k", KEY32 "\r\n\n", 35, 0600, path, sizeof(path));
	expect_key_refused(path, 32, "is too long");
}

static void
test_wire_key_file_symlink_and_non_regular_are_refused(void **s)
{
	char path[128], link[128], want[256];

	write_key("k", KEY32, 32, 0600, path, sizeof(path));
	snprintf(link, sizeof(link), "%s/link", dir);
	assert_int_equal(symlink(path, link), 0);
	snprintf(want, sizeof(want),
		 "could not open key file \"%s\": it is a symbolic link", link);
	expect_key_refused(link, 256, want);

	snprintf(path, sizeof(path), "%s/sub", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(want, sizeof(want), "key file \"%s\" is not a regular file", path);
	expect_key_refused(path, 256, want);

	/* a FIFO neither blocks nor is read */
	snprintf(path, sizeof(path), "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	snprintf(want, sizeof(want), "key file \"%s\" is not a regular file", path);
	expect_key_refused(path, 256, want);
}

static void
test_wire_missing_key_file_names_the_file(void **s)
{
	char path[128], want[256];

	snprintf(path, sizeof(path), "%s/absent", dir);
	snprintf(want, sizeof(want),
		 "could not open key file \"%s\": No such file or directory", path);
	expect_key_refused(path, 256, want);
}

/* ---- allocation ---- */

static void
test_wire_steady_state_seal_and_open_allocate_nothing(void **s)
{
	struct wire *a, *b;
	uint8_t f[WIRE_MAX_DGRAM];
	struct wd_msg m, got;
	uint8_t from;
	unsigned long before;
	size_t n;

	if (!ossl_counting)
		fail_msg("CRYPTO_set_mem_functions did not take effect");
	before = ossl_allocs;
	a = mk(CLUSTER, secret, 1, BOOT_1);
	b = mk(CLUSTER, secret, 2, BOOT_2);
	assert_true(ossl_allocs > before);	/* the counter does count */
	sample(WD_MSG_HEARTBEAT, &m);
	/* Warm up: the first frame of each peer derives and caches its key;
	 * the first failure creates OpenSSL's per-thread error state. */
	n = seal(a, &m, f);
	assert_int_equal(wire_open(b, f, n, &from, &got), WIRE_OK);
	n = seal(b, &m, f);
	assert_int_equal(wire_open(a, f, n, &from, &got), WIRE_OK);
	f[n - 1] ^= 1;
	assert_int_equal(wire_open(a, f, n, &from, &got), WIRE_R_AUTH);

	before = ossl_allocs;
	for (int i = 0; i < 1000; i++) {
		n = seal(a, &m, f);
		assert_int_equal(wire_open(b, f, n, &from, &got), WIRE_OK);
		n = seal(b, &m, f);
		assert_int_equal(wire_open(a, f, n, &from, &got), WIRE_OK);
		/* a forged frame of a known boot costs no allocation either */
		f[n - 1] ^= 1;
		assert_int_equal(wire_open(a, f, n, &from, &got), WIRE_R_AUTH);
	}
	assert_int_equal(ossl_allocs - before, 0);
	wire_free(a);
	wire_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wire_every_message_type_round_trips_between_two_peers),
		cmocka_unit_test(test_wire_heartbeat_body_encodes_to_golden_bytes),
		cmocka_unit_test(test_wire_seal_matches_frame_built_from_the_specification),
		cmocka_unit_test(test_wire_short_and_oversized_datagrams_are_rejected),
		cmocka_unit_test(test_wire_bad_magic_and_other_version_are_rejected),
		cmocka_unit_test(test_wire_other_cluster_with_same_secret_is_rejected),
		cmocka_unit_test(test_wire_unknown_sender_is_rejected),
		cmocka_unit_test(test_wire_own_frames_are_rejected_as_self),
		cmocka_unit_test(test_wire_flipped_header_byte_fails_authentication),
		cmocka_unit_test(test_wire_frame_for_another_peer_is_not_accepted),
		cmocka_unit_test(test_wire_flipped_ciphertext_or_tag_fails_authentication),
		cmocka_unit_test(test_wire_wrong_secret_fails_authentication),
		cmocka_unit_test(test_wire_replayed_frame_is_rejected_and_changes_nothing),
		cmocka_unit_test(test_wire_out_of_order_within_window_is_accepted_once),
		cmocka_unit_test(test_wire_frame_older_than_window_is_rejected),
		cmocka_unit_test(test_wire_jump_beyond_window_forgets_older_frames),
		cmocka_unit_test(test_wire_sequence_zero_is_rejected_as_replay),
		cmocka_unit_test(test_wire_older_boot_is_rejected_after_newer_boot),
		cmocka_unit_test(test_wire_boot_zero_is_rejected_as_stale),
		cmocka_unit_test(test_wire_new_boot_is_accepted_and_resets_window),
		cmocka_unit_test(test_wire_forged_future_seq_does_not_move_window),
		cmocka_unit_test(test_wire_forged_new_boot_does_not_disturb_state),
		cmocka_unit_test(test_wire_authentic_malformed_frame_is_counted_and_changes_nothing),
		cmocka_unit_test(test_wire_decode_rejects_unknown_types),
		cmocka_unit_test(test_wire_decode_rejects_every_truncation_and_a_trailing_byte),
		cmocka_unit_test(test_wire_decode_zeroes_fields_of_other_types),
		cmocka_unit_test(test_wire_decode_rejects_bad_extension_tlvs),
		cmocka_unit_test(test_wire_heartbeat_with_full_extension_fits_one_datagram),
		cmocka_unit_test(test_wire_decode_rejects_out_of_range_values),
		cmocka_unit_test(test_wire_encode_refuses_what_decode_would_refuse),
		cmocka_unit_test(test_wire_new_refuses_bad_arguments),
		cmocka_unit_test(test_wire_peer_table_holds_max_peers_and_skips_self),
		cmocka_unit_test(test_wire_reject_names_are_distinct),
		cmocka_unit_test_setup_teardown(test_wire_key_file_is_read_without_one_trailing_newline,
						keydir_setup, keydir_teardown),
		cmocka_unit_test_setup_teardown(test_wire_key_file_readable_by_others_is_refused,
						keydir_setup, keydir_teardown),
		cmocka_unit_test_setup_teardown(test_wire_key_file_too_short_or_too_long_is_refused,
						keydir_setup, keydir_teardown),
		cmocka_unit_test_setup_teardown(test_wire_key_file_symlink_and_non_regular_are_refused,
						keydir_setup, keydir_teardown),
		cmocka_unit_test_setup_teardown(test_wire_missing_key_file_names_the_file,
						keydir_setup, keydir_teardown),
		cmocka_unit_test(test_wire_steady_state_seal_and_open_allocate_nothing),
	};

	/* Before OpenSSL allocates anything, or it refuses the hooks. */
	ossl_counting = CRYPTO_set_mem_functions(count_malloc, count_realloc,
						 count_free);
	for (size_t i = 0; i < SECRET_LEN; i++) {
		secret[i] = (uint8_t)(0x30 + i);
		other_secret[i] = (uint8_t)(0x30 + i);
	}
	other_secret[SECRET_LEN - 1] ^= 1;
	log_open("test_wire", LOG_DEST_STDERR, LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
