/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * wire.h - the watchdog's datagram format: versioned binary frames,
 * encrypted and authenticated with ChaCha20-Poly1305 (OpenSSL EVP) under
 * keys derived with HKDF-SHA256 from the cluster key file.
 *
 * Frame (all integers big-endian):
 *
 *   0  magic        4  "PGVW"
 *   4  version      1  WIRE_VERSION
 *   5  sender       1  peer id
 *   6  recipient    1  peer id the frame is for
 *   7  reserved     1  zero
 *   8  cluster_id   8  first 8 bytes of SHA-256("pgvigil cluster " + name)
 *  16  boot_id      8  sender's boot: grows with every start (epoch seconds
 *                     << 24 | 24 random bits, kept above the last one)
 *  24  seq          8  per-boot sequence, from 1
 *  32  ciphertext   n  the encoded struct wd_msg
 *  32+n tag        16  Poly1305 tag over header (AAD) and ciphertext
 *
 * Each sender boot has its own key, HKDF(secret, salt = cluster_id,
 * info = "pgvigil wire v1" | sender | boot_id), so the 96-bit nonce (seq,
 * zero-padded) never repeats under one key even across restarts.
 *
 * The recipient is authenticated with the rest of the header: a frame one
 * peer sent to another (a vote granted to one candidate, say) cannot be
 * copied to a third and accepted there.
 *
 * Receive order: structure (length, magic, version, cluster, sender,
 * recipient) ->
 * key -> AEAD open -> boot and replay window. The replay state moves only
 * after the tag verified. Every rejection has a counter.
 */
#ifndef PGVIGIL_WIRE_H
#define PGVIGIL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "watchdog/elect.h"

#define WIRE_VERSION 1
#define WIRE_HEADER_LEN 32
#define WIRE_TAG_LEN 16
/* Stays under the IPv6 minimum MTU (1280) with IP and UDP headers. */
#define WIRE_MAX_DGRAM 1200
#define WIRE_KEY_MIN 32		/* bytes of secret in the key file */
/*
 * A heartbeat body without its extension bytes: type u8, term u64, role
 * u8, leader u8, flags u8, hb_seq u64, echo_seq u64, echo_delay_ms u32,
 * lease_left_ms u32, ext_len u16 (wire.c). The largest datagram is a
 * heartbeat with a full extension: 32 + 38 + WD_EXT_MAX + 16 bytes, 1110
 * with WD_EXT_MAX = 1024.
 */
#define WIRE_HEARTBEAT_FIXED 38
#define WIRE_HEARTBEAT_MAX \
	(WIRE_HEADER_LEN + WIRE_HEARTBEAT_FIXED + WD_EXT_MAX + WIRE_TAG_LEN)
_Static_assert(WIRE_HEARTBEAT_MAX <= WIRE_MAX_DGRAM,
	       "a heartbeat with a full extension must fit one datagram");
#define WIRE_REPLAY_WINDOW 64

enum wire_reject {
	WIRE_OK = 0,
	WIRE_R_SHORT,		/* shorter than header + tag, or longer than max */
	WIRE_R_MAGIC,		/* not a pgvigil frame */
	WIRE_R_VERSION,		/* another protocol version */
	WIRE_R_CLUSTER,		/* another cluster's frame */
	WIRE_R_UNKNOWN_SENDER,	/* sender id not configured */
	WIRE_R_SELF,		/* our own id: a loop or a forgery */
	WIRE_R_NOT_FOR_US,	/* addressed to another peer */
	WIRE_R_AUTH,		/* tag did not verify (forged, corrupt, wrong key) */
	WIRE_R_STALE_BOOT,	/* boot id older than the newest seen */
	WIRE_R_REPLAY,		/* sequence already seen or left the window */
	WIRE_R_MALFORMED,	/* authentic but the body does not decode */
	WIRE_R_COUNT,
};

struct wire;

/*
 * Reads a key file: a regular file, not readable or writable by group or
 * others, holding at least WIRE_KEY_MIN bytes (trailing newline ignored).
 * Returns 0 with the secret in out (*len bytes), or -1 with err set.
 */
int wire_load_key(const char *path, uint8_t *out, size_t cap, size_t *len,
		  char *err, size_t errlen);

/*
 * Creates the codec for peer self_id of cluster cluster_name, sending with
 * boot_id. secret is copied (and wiped on free). Returns NULL with err set.
 */
struct wire *wire_new(const char *cluster_name, const uint8_t *secret,
		      size_t secret_len, uint8_t self_id, uint64_t boot_id,
		      char *err, size_t errlen);
void wire_free(struct wire *w);

/* Accepts datagrams from peer id (self excluded). Returns -1 if full. */
int wire_add_peer(struct wire *w, uint8_t id);

/*
 * Encodes and seals m for peer `to` into out (cap >= WIRE_MAX_DGRAM), using
 * the next sequence number. Returns the datagram length, or -1.
 */
ssize_t wire_seal(struct wire *w, uint8_t to, const struct wd_msg *m,
		  uint8_t *out, size_t cap);

/*
 * Checks and opens one datagram. On WIRE_OK, *from and *m are set;
 * otherwise the reason's counter was incremented and nothing else changed.
 */
enum wire_reject wire_open(struct wire *w, const uint8_t *in, size_t len,
			   uint8_t *from, struct wd_msg *m);

/* Counters indexed by enum wire_reject (WIRE_OK counts accepted frames). */
const uint64_t *wire_counters(const struct wire *w);
const char *wire_reject_name(enum wire_reject r);
uint64_t wire_boot_id(const struct wire *w);
/* Newest boot id seen from peer id, 0 when none. */
uint64_t wire_peer_boot(const struct wire *w, uint8_t id);

/*
 * The plaintext body codec (no crypto), exposed for tests and the fuzzer.
 * encode returns the length written or -1 if cap is too small; decode
 * returns 0 or -1 for anything malformed (unknown type, short, trailing
 * bytes, bad extension TLVs).
 */
ssize_t wire_encode_body(const struct wd_msg *m, uint8_t *out, size_t cap);
int wire_decode_body(const uint8_t *in, size_t len, struct wd_msg *m);

/*
 * Whether ext is a valid extension: TLVs (type u16, length u16, value)
 * filling len exactly, len <= WD_EXT_MAX. A heartbeat with any other
 * extension cannot be encoded (so none would be sent).
 */
bool wire_ext_valid(const uint8_t *ext, size_t len);

#endif
