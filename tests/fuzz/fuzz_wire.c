/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_wire.c - libFuzzer target for the watchdog's datagram codec.
 *
 * Every input is
 *   1. decoded as a plain body; when it decodes, it must re-encode to the
 *      very same bytes (the encoding is canonical) and decode again to
 *      the same message, field by field;
 * and then, by its first byte,
 *   2. (first byte below 0xe0) opened as a datagram by a fresh wire of
 *      peer 4 that knows peers 1..3, which exercises every structural
 *      rejection; the sealed seed frames reach the accept path;
 *   3. (first byte 0xf0 and above) the rest, if it decodes as a body, is
 *      sealed by peer 1 + (first byte % 3) and must open on that fresh
 *      wire to the same message;
 *   4. (first byte 0xe0 to 0xef) the rest is a delivery schedule: each
 *      byte picks one of SCHED_FRAMES frames sealed by peer 1 in an older
 *      or a newer boot (high bit), delivered to that fresh wire, whose
 *      verdict (ok, replay, stale boot) must match a plain model of the
 *      replay window: a set of accepted sequence numbers, not a bitmap.
 * A fresh receiving wire per input keeps a run deterministic: the outcome
 * of an input never depends on the inputs before it.
 *
 * Built with -DFUZZ_WIRE_WRITE_SEEDS and without -fsanitize=fuzzer, the
 * file is a program that writes the seed corpus into the directory named
 * by its argument (see tests/fuzz/README.md).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "watchdog/wire.h"

#define FUZZ_CLUSTER "fuzz"
/* Senders of the seed frames are older boots than those sealing in mode 3,
 * so neither can make the other a replay or a stale boot. */
#define SEED_BOOT(id) ((uint64_t)1 << 24 | (id))
#define SEAL_BOOT(id) ((uint64_t)2 << 24 | (id))
/* Peer 1's boots in mode 4: older (0) and newer (1). */
#define SCHED_BOOT(b) ((uint64_t)(3 + (b)) << 24 | 1)
#define FUZZ_SEAL_MODE 0xf0
#define FUZZ_SCHED_MODE 0xe0
/* More than two windows' worth, so frames can fall out of the window. */
#define SCHED_FRAMES (2 * WIRE_REPLAY_WINDOW + 8)
#define SCHED_FRAME_LEN (WIRE_HEADER_LEN + 9 + WIRE_TAG_LEN)
/* Enough deliveries to cross the window several times, few enough to keep
 * the executions per second up. */
#define SCHED_MAX 160

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t fuzz_secret[WIRE_KEY_MIN];
static struct wire *senders[4];	/* owned, [1..3]; live for the process */
/* Frames of peer 1, seq 1..SCHED_FRAMES, in SCHED_BOOT(0) and (1). */
static uint8_t sched_frames[2][SCHED_FRAMES][SCHED_FRAME_LEN];
static bool sched_ready;

static void
fuzz_fail(const char *what)
{
	fprintf(stderr, "fuzz_wire: %s\n", what);
	abort();
}

static struct wire *
fuzz_wire(uint8_t self, uint64_t boot)
{
	char err[256];
	struct wire *w;

	if (!fuzz_secret[0])
		for (size_t i = 0; i < sizeof(fuzz_secret); i++)
			fuzz_secret[i] = (uint8_t)('A' + i);
	w = wire_new(FUZZ_CLUSTER, fuzz_secret, sizeof(fuzz_secret), self, boot,
		     err, sizeof(err));
	if (!w)
		fuzz_fail(err);
	for (uint8_t id = 1; id <= 3; id++)
		if (wire_add_peer(w, id) < 0)
			fuzz_fail("could not add a peer");
	return w;
}

static void
check_equal(const struct wd_msg *a, const struct wd_msg *b)
{
	if (a->type != b->type || a->term != b->term || a->role != b->role ||
	    a->leader != b->leader || a->flags != b->flags ||
	    a->hb_seq != b->hb_seq || a->echo_seq != b->echo_seq ||
	    a->echo_delay_ms != b->echo_delay_ms ||
	    a->lease_left_ms != b->lease_left_ms || a->granted != b->granted ||
	    a->vote_flags != b->vote_flags || a->ext_len != b->ext_len ||
	    memcmp(a->ext, b->ext, sizeof(a->ext)) != 0)
		fuzz_fail("messages differ");
}

/* 1: decode, then encode and decode again. Returns whether it decoded. */
static bool
body_round_trip(const uint8_t *data, size_t size, struct wd_msg *m)
{
	uint8_t buf[WIRE_MAX_DGRAM];
	struct wd_msg again;
	ssize_t n;

	if (wire_decode_body(data, size, m) < 0)
		return false;
	n = wire_encode_body(m, buf, sizeof(buf));
	if (n < 0)
		fuzz_fail("a decoded message does not encode");
	if ((size_t)n != size || memcmp(buf, data, size) != 0)
		fuzz_fail("re-encoding differs from the input");
	if (wire_decode_body(buf, (size_t)n, &again) < 0)
		fuzz_fail("an encoded message does not decode");
	check_equal(m, &again);
	return true;
}

/* 2: any datagram; exactly one counter moves. */
static void
open_datagram(struct wire *rx, const uint8_t *data, size_t size)
{
	uint64_t total = 0;
	struct wd_msg m;
	uint8_t from = 0;
	enum wire_reject r = wire_open(rx, data, size, &from, &m);

	if ((unsigned)r >= WIRE_R_COUNT)
		fuzz_fail("reason out of range");
	for (int i = 0; i < WIRE_R_COUNT; i++)
		total += wire_counters(rx)[i];
	if (total != 1 || wire_counters(rx)[r] != 1)
		fuzz_fail("not exactly one counter moved");
	if (r == WIRE_OK) {
		uint8_t buf[WIRE_MAX_DGRAM];

		if (from < 1 || from > 3)
			fuzz_fail("accepted from an unknown sender");
		if (wire_encode_body(&m, buf, sizeof(buf)) < 0)
			fuzz_fail("an accepted message does not encode");
	}
}

/* 3: what one peer seals, another opens. */
static void
seal_and_open(struct wire *rx, uint8_t sender, const uint8_t *data,
	      size_t size)
{
	uint8_t frame[WIRE_MAX_DGRAM];
	struct wd_msg m, got;
	uint8_t from = 0;
	ssize_t n;

	if (!body_round_trip(data, size, &m))
		return;
	if (!senders[sender])
		senders[sender] = fuzz_wire(sender, SEAL_BOOT(sender));
	n = wire_seal(senders[sender], 4, &m, frame, sizeof(frame));
	if (n < 0)
		fuzz_fail("a valid message does not seal");
	if (wire_open(rx, frame, (size_t)n, &from, &got) != WIRE_OK)
		fuzz_fail("a sealed frame does not open");
	if (from != sender)
		fuzz_fail("wrong sender");
	check_equal(&m, &got);
}

static void
sched_setup(void)
{
	struct wd_msg m;

	memset(&m, 0, sizeof(m));
	m.type = WD_MSG_PREVOTE_REQ;
	m.term = 7;
	for (int b = 0; b < 2; b++) {
		struct wire *w = fuzz_wire(1, SCHED_BOOT(b));

		for (int i = 0; i < SCHED_FRAMES; i++)
			if (wire_seal(w, 4, &m, sched_frames[b][i], SCHED_FRAME_LEN) !=
			    SCHED_FRAME_LEN)
				fuzz_fail("could not seal a schedule frame");
		wire_free(w);
	}
	sched_ready = true;
}

/* 4: deliveries in the input's order against a model of the window. */
static void
schedule(struct wire *rx, const uint8_t *data, size_t size)
{
	bool seen[SCHED_FRAMES + 1] = { false };
	int cur = -1;		/* boot of the model: -1 none, 0 older, 1 newer */
	uint64_t high = 0;

	if (!sched_ready)
		sched_setup();
	if (size > SCHED_MAX)
		size = SCHED_MAX;
	for (size_t i = 0; i < size; i++) {
		int b = data[i] >> 7;
		uint64_t seq = 1 + (data[i] & 0x7f) % SCHED_FRAMES;
		enum wire_reject want, got;
		struct wd_msg m;
		uint8_t from;

		if (cur >= 0 && b < cur) {
			want = WIRE_R_STALE_BOOT;
		} else if (b > cur) {
			want = WIRE_OK;
			cur = b;
			memset(seen, 0, sizeof(seen));
			high = 0;
		} else if (seen[seq] || (seq < high && high - seq >= WIRE_REPLAY_WINDOW)) {
			want = WIRE_R_REPLAY;
		} else {
			want = WIRE_OK;
		}
		if (want == WIRE_OK) {
			seen[seq] = true;
			if (seq > high)
				high = seq;
		}
		got = wire_open(rx, sched_frames[b][seq - 1], SCHED_FRAME_LEN, &from, &m);
		if (got != want) {
			fprintf(stderr, "fuzz_wire: boot %d seq %llu: got %s, model says %s\n",
				b, (unsigned long long)seq, wire_reject_name(got),
				wire_reject_name(want));
			abort();
		}
		if (wire_peer_boot(rx, 1) != SCHED_BOOT(cur))
			fuzz_fail("peer boot differs from the model");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire *rx;
	struct wd_msg m;

	body_round_trip(data, size, &m);
	rx = fuzz_wire(4, SEAL_BOOT(4));
	if (size > 0 && data[0] >= FUZZ_SEAL_MODE)
		seal_and_open(rx, (uint8_t)(1 + data[0] % 3), data + 1, size - 1);
	else if (size > 0 && data[0] >= FUZZ_SCHED_MODE)
		schedule(rx, data + 1, size - 1);
	else
		open_datagram(rx, data, size);
	wire_free(rx);
	return 0;
}

#ifdef FUZZ_WIRE_WRITE_SEEDS
static const char *seed_dir;

static void
write_seed(const char *name, const uint8_t *p, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", seed_dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0)
		fuzz_fail("could not write a seed");
}

static void
seed_msg(uint8_t type, struct wd_msg *m)
{
	static const uint8_t ext[] = { 0x00, 0x01, 0x00, 0x02, 0xab, 0xcd,
				       0x00, 0x07, 0x00, 0x00 };

	memset(m, 0, sizeof(*m));
	m->type = type;
	m->term = 42;
	if (type == WD_MSG_HEARTBEAT) {
		m->role = WD_LEADER;
		m->leader = 1;
		m->flags = WD_HB_FENCED_MODE;
		m->hb_seq = 1000;
		m->echo_seq = 999;
		m->echo_delay_ms = 3;
		m->lease_left_ms = 2500;
		m->ext_len = sizeof(ext);
		memcpy(m->ext, ext, sizeof(ext));
	} else if (type == WD_MSG_VOTE_REQ) {
		m->vote_flags = WD_VOTE_HANDOVER;
	} else if (type == WD_MSG_PREVOTE_RESP || type == WD_MSG_VOTE_RESP) {
		m->granted = 1;
	}
}

/* A heartbeat whose extension is WD_EXT_MAX bytes: two TLVs, the second filling it. */
static void
full_ext_msg(struct wd_msg *m)
{
	uint16_t second = WD_EXT_MAX - 4 - 6 - 4;

	seed_msg(WD_MSG_HEARTBEAT, m);
	m->flags = WD_HB_YIELDING;
	memcpy(m->ext, (const uint8_t[]){ 0x00, 0x01, 0x00, 0x06, 1, 2, 3, 4, 5, 6,
					  0x00, 0x02, (uint8_t)(second >> 8),
					  (uint8_t)second }, 14);
	for (uint16_t i = 0; i < second; i++)
		m->ext[14 + i] = (uint8_t)(i * 31);
	m->ext_len = WD_EXT_MAX;
}

int
main(int argc, char **argv)
{
	uint8_t buf[WIRE_MAX_DGRAM + 1];
	char name[64];
	struct wd_msg m;
	ssize_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	seed_dir = argv[1];
	for (uint8_t t = 1; t <= WD_MSG_TYPE_MAX; t++) {
		seed_msg(t, &m);
		n = wire_encode_body(&m, buf, sizeof(buf));
		snprintf(name, sizeof(name), "body-type%u", t);
		write_seed(name, buf, (size_t)n);
	}
	seed_msg(WD_MSG_HEARTBEAT, &m);
	m.ext_len = 0;
	m.role = WD_FOLLOWER;
	n = wire_encode_body(&m, buf, sizeof(buf));
	write_seed("body-heartbeat-no-ext", buf, (size_t)n);
	/* The largest body: a full extension of two TLVs, yielding flag set. */
	full_ext_msg(&m);
	n = wire_encode_body(&m, buf, sizeof(buf));
	if (n < 0)
		fuzz_fail("could not encode the full-extension seed");
	write_seed("body-heartbeat-full-ext", buf, (size_t)n);

	/* Mode 3: a selector byte, then a body. */
	buf[0] = FUZZ_SEAL_MODE + 1;
	seed_msg(WD_MSG_HEARTBEAT, &m);
	n = wire_encode_body(&m, buf + 1, sizeof(buf) - 1);
	write_seed("seal-heartbeat", buf, (size_t)n + 1);
	buf[0] = FUZZ_SEAL_MODE + 2;
	seed_msg(WD_MSG_VOTE_RESP, &m);
	n = wire_encode_body(&m, buf + 1, sizeof(buf) - 1);
	write_seed("seal-vote-resp", buf, (size_t)n + 1);
	buf[0] = FUZZ_SEAL_MODE + 3;
	full_ext_msg(&m);
	n = wire_encode_body(&m, buf + 1, sizeof(buf) - 1);
	write_seed("seal-heartbeat-full-ext", buf, (size_t)n + 1);

	/* Mode 4: in order, a replay, out of order, old, then the newer boot
	 * and back to the older one. */
	{
		static const uint8_t sched[] = {
			FUZZ_SCHED_MODE, 0, 1, 2, 2, 5, 3, 4, 100, 20, 40, 36,
			101, 99, 0x80 | 3, 0x80 | 1, 0x80 | 3, 7, 0x80 | 120,
		};

		write_seed("schedule", sched, sizeof(sched));
	}

	/* Sealed frames that the receiving wire accepts. */
	for (uint8_t id = 1; id <= 3; id++) {
		struct wire *w = fuzz_wire(id, SEED_BOOT(id));

		seed_msg(id == 1 ? WD_MSG_HEARTBEAT :
			 id == 2 ? WD_MSG_VOTE_REQ : WD_MSG_PREVOTE_RESP, &m);
		n = wire_seal(w, 4, &m, buf, sizeof(buf));
		if (n < 0)
			fuzz_fail("could not seal a seed");
		snprintf(name, sizeof(name), "frame-from-%u", id);
		write_seed(name, buf, (size_t)n);
		wire_free(w);
	}
	/* The last one as if from the receiver itself, and from a stranger. */
	buf[5] = 4;
	write_seed("frame-from-self", buf, (size_t)n);
	buf[5] = 9;
	write_seed("frame-from-unknown", buf, (size_t)n);
	return 0;
}
#endif
