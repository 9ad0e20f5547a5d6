/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * wire.c - the watchdog's datagram codec: the body encoding of struct
 * wd_msg, and the sealed frame around it (layout, key derivation and
 * receive order are specified in wire.h).
 *
 * Details wire.h leaves to this file:
 *
 * - Key of (sender, boot): HKDF-SHA256, IKM = the cluster secret, salt =
 *   the 8-byte cluster_id, info = "pgvigil wire v1" (15 bytes, no NUL),
 *   sender (1 byte), boot_id (8 bytes, big-endian); 32 bytes out.
 * - Nonce: 4 zero bytes, then seq as 8 bytes big-endian.
 * - AAD: the 32 header bytes exactly as sent.
 * - The recipient byte is checked with the structure, before any key work:
 *   a frame for another peer is WIRE_R_NOT_FOR_US (rewriting the byte to
 *   our id breaks the tag, so a copied frame counts as WIRE_R_AUTH).
 * - The reserved header byte is checked after the tag verified, so a
 *   forged or corrupted frame counts as WIRE_R_AUTH; an authentic frame
 *   with a nonzero reserved byte (from a sender that gives it a meaning we
 *   do not know) counts as WIRE_R_MALFORMED like an undecodable body.
 * - Boot id 0 is never used by a sender (wire_new refuses it, and
 *   wire_peer_boot uses 0 for "none"); an authentic frame with boot id 0
 *   counts as WIRE_R_STALE_BOOT. Sequence 0 is never sent; it counts as
 *   WIRE_R_REPLAY.
 * - If OpenSSL itself fails while opening a frame (it cannot allocate
 *   during a key derivation, say) the frame counts as WIRE_R_AUTH: it was
 *   not verified.
 * - wire_encode_body refuses (-1) any message wire_decode_body would
 *   refuse, so a peer never sends a frame its peers must drop.
 * - wire_add_peer(self) succeeds and adds nothing; id 0 is refused.
 * - wire_load_key uses at most min(cap, 4096) bytes of key; the key is
 *   the file's bytes as they are (any encoding), less one trailing "\n"
 *   or "\r\n". A FIFO or device is refused without being read.
 *
 * Body (big-endian): type u8, term u64, then by type
 *   HEARTBEAT     role u8, leader u8, flags u8, hb_seq u64, echo_seq u64,
 *                 echo_delay_ms u32, lease_left_ms u32, ext_len u16, ext
 *   PREVOTE_REQ   nothing
 *   VOTE_REQ      vote_flags u8
 *   *_RESP        granted u8 (0 or 1)
 *   HANDOVER      nothing
 * ext is a sequence of TLVs (type u16, len u16, value) filling ext_len
 * exactly. Nothing may follow the last field.
 *
 * Invariants:
 * - A peer slot's boot, key and replay window change only in wire_open,
 *   only after the tag verified and every other check passed: a forged,
 *   replayed, stale or malformed frame changes nothing but its counter.
 * - The cluster secret lives only inside the HKDF context, which OpenSSL
 *   clears when it is freed; wire_free wipes the derived keys.
 * - The sealing sequence only grows and is consumed before encryption, so
 *   no (key, nonce) pair is ever used twice even if a seal fails halfway.
 * - The steady-state seal and open paths allocate nothing: the cipher
 *   contexts are made in wire_new and re-keyed per frame, the keys of the
 *   peers' current boots are cached in their slots. Only a frame claiming
 *   a boot other than the cached one runs an HKDF (OpenSSL allocates
 *   inside it and frees before returning).
 *
 * Why: parsing goes through a bounds-checked cursor (STYLE 6), never a
 * struct cast over the buffer, so a short or hostile datagram cannot read
 * past its end, and the fuzz target (tests/fuzz/fuzz_wire.c) can check
 * decode(encode(m)) == m. Per-boot keys make the nonce a plain counter
 * without persisting it: a restart gets a fresh key, not a reused nonce.
 * Rejections are counted, not logged: the caller rate-limits logs, and a
 * flood of forged datagrams must not become a flood of log lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "watchdog/wire.h"

#define WIRE_MAGIC "PGVW"
#define WIRE_AEAD_KEY_LEN 32
#define WIRE_NONCE_LEN 12
#define WIRE_CLUSTER_ID_LEN 8
#define WIRE_KDF_INFO "pgvigil wire v1"
#define WIRE_KDF_INFO_LEN (sizeof(WIRE_KDF_INFO) - 1)
#define WIRE_CLUSTER_PREFIX "pgvigil cluster "
/* Largest key file read; the caller's cap may lower it further. */
#define WIRE_KEY_FILE_MAX 4096

/* Header offsets (wire.h). */
#define OFF_MAGIC 0
#define OFF_VERSION 4
#define OFF_SENDER 5
#define OFF_RECIPIENT 6
#define OFF_RESERVED 7
#define OFF_CLUSTER 8
#define OFF_BOOT 16
#define OFF_SEQ 24

struct wire_peer {
	uint8_t id;
	bool known;		/* a frame from it was accepted; the rest is valid */
	uint64_t boot;		/* boot id of the newest accepted frame */
	uint64_t highest;	/* highest accepted seq of that boot */
	uint64_t window;	/* bit i set: seq highest - i was accepted */
	uint8_t key[WIRE_AEAD_KEY_LEN];	/* key of (id, boot) */
};

struct wire {
	uint8_t self;
	uint64_t boot;
	uint64_t seq;		/* last sequence number sealed */
	uint8_t cluster_id[WIRE_CLUSTER_ID_LEN];
	uint8_t send_key[WIRE_AEAD_KEY_LEN];	/* key of (self, boot) */
	EVP_KDF_CTX *kdf;	/* owned: HKDF-SHA256 holding secret and salt */
	EVP_CIPHER_CTX *seal_ctx;	/* owned */
	EVP_CIPHER_CTX *open_ctx;	/* owned */
	uint8_t slot_of[256];	/* peer id -> index into peers + 1; 0 = none */
	size_t npeers;
	struct wire_peer peers[WD_MAX_PEERS];
	uint64_t counters[WIRE_R_COUNT];
	uint8_t body[WIRE_MAX_DGRAM];	/* plaintext of the frame in hand */
};

static const char *const reject_names[WIRE_R_COUNT] = {
	[WIRE_OK] = "ok",
	[WIRE_R_SHORT] = "short",
	[WIRE_R_MAGIC] = "magic",
	[WIRE_R_VERSION] = "version",
	[WIRE_R_CLUSTER] = "cluster",
	[WIRE_R_UNKNOWN_SENDER] = "unknown-sender",
	[WIRE_R_SELF] = "self",
	[WIRE_R_NOT_FOR_US] = "not-for-us",
	[WIRE_R_AUTH] = "auth",
	[WIRE_R_STALE_BOOT] = "stale-boot",
	[WIRE_R_REPLAY] = "replay",
	[WIRE_R_MALFORMED] = "malformed",
};

/* ---- bounds-checked cursors ---- */

struct rcur {
	const uint8_t *p;	/* borrowed */
	size_t len;
	size_t off;
};

/* Sticky: after one put did not fit, every later put fails too. */
struct wcur {
	uint8_t *p;		/* borrowed */
	size_t cap;
	size_t off;
	bool full;
};

static int
get_u8(struct rcur *c, uint8_t *v)
{
	if (c->len - c->off < 1)
		return -1;
	*v = c->p[c->off++];
	return 0;
}

static int
get_u16(struct rcur *c, uint16_t *v)
{
	if (c->len - c->off < 2)
		return -1;
	*v = (uint16_t)((unsigned)c->p[c->off] << 8 | c->p[c->off + 1]);
	c->off += 2;
	return 0;
}

static int
get_u32(struct rcur *c, uint32_t *v)
{
	uint32_t x = 0;

	if (c->len - c->off < 4)
		return -1;
	for (int i = 0; i < 4; i++)
		x = x << 8 | c->p[c->off++];
	*v = x;
	return 0;
}

static int
get_u64(struct rcur *c, uint64_t *v)
{
	uint64_t x = 0;

	if (c->len - c->off < 8)
		return -1;
	for (int i = 0; i < 8; i++)
		x = x << 8 | c->p[c->off++];
	*v = x;
	return 0;
}

static int
get_bytes(struct rcur *c, uint8_t *dst, size_t n)
{
	if (c->len - c->off < n)
		return -1;
	memcpy(dst, c->p + c->off, n);
	c->off += n;
	return 0;
}

static bool
put_room(struct wcur *c, size_t n)
{
	if (c->full || c->cap - c->off < n)
		c->full = true;
	return !c->full;
}

static void
put_be(struct wcur *c, uint64_t v, int nbytes)
{
	if (!put_room(c, (size_t)nbytes))
		return;
	for (int i = nbytes - 1; i >= 0; i--)
		c->p[c->off++] = (uint8_t)(v >> (8 * i));
}

static void
put_u8(struct wcur *c, uint8_t v)
{
	put_be(c, v, 1);
}

static void
put_u16(struct wcur *c, uint16_t v)
{
	put_be(c, v, 2);
}

static void
put_u32(struct wcur *c, uint32_t v)
{
	put_be(c, v, 4);
}

static void
put_u64(struct wcur *c, uint64_t v)
{
	put_be(c, v, 8);
}

static void
put_bytes(struct wcur *c, const uint8_t *src, size_t n)
{
	if (!put_room(c, n))
		return;
	memcpy(c->p + c->off, src, n);
	c->off += n;
}

static void
store_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t
load_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* ---- body codec ---- */

/* The extension bytes are TLVs (type u16, len u16, value) filling len exactly. */
bool
wire_ext_valid(const uint8_t *ext, size_t len)
{
	struct rcur c = { ext, len, 0 };

	if (len > WD_EXT_MAX)
		return false;
	while (c.off < c.len) {
		uint16_t type, vlen;

		if (get_u16(&c, &type) < 0 || get_u16(&c, &vlen) < 0)
			return false;
		if (c.len - c.off < vlen)
			return false;
		c.off += vlen;
	}
	return true;
}

/* Whether wire_decode_body would accept the encoding of m. */
static bool
msg_valid(const struct wd_msg *m)
{
	switch (m->type) {
	case WD_MSG_HEARTBEAT:
		return m->role <= WD_ROLE_MAX && m->ext_len <= WD_EXT_MAX &&
		    wire_ext_valid(m->ext, m->ext_len);
	case WD_MSG_PREVOTE_RESP:
	case WD_MSG_VOTE_RESP:
		return m->granted <= 1;
	case WD_MSG_PREVOTE_REQ:
	case WD_MSG_VOTE_REQ:
	case WD_MSG_HANDOVER:
		return true;
	default:
		return false;
	}
}

ssize_t
wire_encode_body(const struct wd_msg *m, uint8_t *out, size_t cap)
{
	struct wcur c = { out, cap, 0, false };

	if (!msg_valid(m))
		return -1;
	put_u8(&c, m->type);
	put_u64(&c, m->term);
	switch (m->type) {
	case WD_MSG_HEARTBEAT:
		put_u8(&c, m->role);
		put_u8(&c, m->leader);
		put_u8(&c, m->flags);
		put_u64(&c, m->hb_seq);
		put_u64(&c, m->echo_seq);
		put_u32(&c, m->echo_delay_ms);
		put_u32(&c, m->lease_left_ms);
		put_u16(&c, m->ext_len);
		put_bytes(&c, m->ext, m->ext_len);
		break;
	case WD_MSG_VOTE_REQ:
		put_u8(&c, m->vote_flags);
		break;
	case WD_MSG_PREVOTE_RESP:
	case WD_MSG_VOTE_RESP:
		put_u8(&c, m->granted);
		break;
	default:		/* PREVOTE_REQ, HANDOVER: type and term only */
		break;
	}
	return c.full ? -1 : (ssize_t)c.off;
}

static int
decode_fields(struct rcur *c, struct wd_msg *m)
{
	if (get_u8(c, &m->type) < 0 || get_u64(c, &m->term) < 0)
		return -1;
	switch (m->type) {
	case WD_MSG_HEARTBEAT:
		if (get_u8(c, &m->role) < 0 || m->role > WD_ROLE_MAX ||
		    get_u8(c, &m->leader) < 0 || get_u8(c, &m->flags) < 0 ||
		    get_u64(c, &m->hb_seq) < 0 || get_u64(c, &m->echo_seq) < 0 ||
		    get_u32(c, &m->echo_delay_ms) < 0 ||
		    get_u32(c, &m->lease_left_ms) < 0 ||
		    get_u16(c, &m->ext_len) < 0 || m->ext_len > WD_EXT_MAX ||
		    get_bytes(c, m->ext, m->ext_len) < 0 ||
		    !wire_ext_valid(m->ext, m->ext_len))
			return -1;
		return 0;
	case WD_MSG_VOTE_REQ:
		return get_u8(c, &m->vote_flags);
	case WD_MSG_PREVOTE_RESP:
	case WD_MSG_VOTE_RESP:
		if (get_u8(c, &m->granted) < 0 || m->granted > 1)
			return -1;
		return 0;
	case WD_MSG_PREVOTE_REQ:
	case WD_MSG_HANDOVER:
		return 0;
	default:
		return -1;
	}
}

int
wire_decode_body(const uint8_t *in, size_t len, struct wd_msg *m)
{
	struct rcur c = { in, len, 0 };

	memset(m, 0, sizeof(*m));
	if (decode_fields(&c, m) < 0 || c.off != c.len) {
		memset(m, 0, sizeof(*m));
		return -1;
	}
	return 0;
}

/* ---- keys ---- */

/* Sets err to "what: OpenSSL's reason" and empties OpenSSL's error queue. */
static void
ssl_error(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;

	snprintf(err, errlen, "%s: %s", what, reason ? reason : "unknown OpenSSL error");
	ERR_clear_error();
}

/* The key of frames from sender during boot. Allocates nothing itself. */
static int
derive_key(struct wire *w, uint8_t sender, uint64_t boot,
	   uint8_t key[WIRE_AEAD_KEY_LEN])
{
	uint8_t info[WIRE_KDF_INFO_LEN + 1 + 8];
	OSSL_PARAM params[2];

	memcpy(info, WIRE_KDF_INFO, WIRE_KDF_INFO_LEN);
	info[WIRE_KDF_INFO_LEN] = sender;
	store_be64(info + WIRE_KDF_INFO_LEN + 1, boot);
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info,
						      sizeof(info));
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(w->kdf, key, WIRE_AEAD_KEY_LEN, params) != 1) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

/* Sets up HKDF-SHA256 with the secret and the cluster_id as salt. */
static int
kdf_setup(struct wire *w, const uint8_t *secret, size_t secret_len,
	  char *err, size_t errlen)
{
	char digest[] = "SHA256";
	OSSL_PARAM params[4];
	EVP_KDF *kdf;
	uint8_t *copy;
	int ok;

	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	if (!kdf) {
		ssl_error(err, errlen, "could not fetch HKDF");
		return -1;
	}
	w->kdf = EVP_KDF_CTX_new(kdf);
	EVP_KDF_free(kdf);	/* the context holds its own reference */
	if (!w->kdf) {
		ssl_error(err, errlen, "could not create the HKDF context");
		return -1;
	}
	/* OSSL_PARAM wants a mutable buffer; the context keeps its own copy
	 * of the secret from here on and clears it when it is freed. */
	copy = malloc(secret_len);
	if (!copy) {
		snprintf(err, errlen, "could not allocate memory for the key");
		return -1;
	}
	memcpy(copy, secret, secret_len);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, copy,
						      secret_len);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
						      w->cluster_id,
						      sizeof(w->cluster_id));
	params[3] = OSSL_PARAM_construct_end();
	ok = EVP_KDF_CTX_set_params(w->kdf, params);
	OPENSSL_cleanse(copy, secret_len);
	free(copy);
	if (ok != 1) {
		ssl_error(err, errlen, "could not set up HKDF-SHA256");
		return -1;
	}
	return 0;
}

static int
cluster_id_of(const char *name, uint8_t id[WIRE_CLUSTER_ID_LEN])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	int ok;

	if (!md)
		return -1;
	ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(md, WIRE_CLUSTER_PREFIX,
			     sizeof(WIRE_CLUSTER_PREFIX) - 1) == 1 &&
	    EVP_DigestUpdate(md, name, strlen(name)) == 1 &&
	    EVP_DigestFinal_ex(md, digest, &dlen) == 1 &&
	    dlen >= WIRE_CLUSTER_ID_LEN;
	EVP_MD_CTX_free(md);
	if (!ok)
		return -1;
	memcpy(id, digest, WIRE_CLUSTER_ID_LEN);
	return 0;
}

static EVP_CIPHER_CTX *
aead_ctx_new(int enc)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

	if (!ctx)
		return NULL;
	if (EVP_CipherInit_ex(ctx, EVP_chacha20_poly1305(), NULL, NULL, NULL,
			      enc) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, WIRE_NONCE_LEN,
				NULL) != 1) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static void
nonce_of(uint64_t seq, uint8_t nonce[WIRE_NONCE_LEN])
{
	memset(nonce, 0, WIRE_NONCE_LEN - 8);
	store_be64(nonce + WIRE_NONCE_LEN - 8, seq);
}

/* ---- lifecycle ---- */

int
wire_load_key(const char *path, uint8_t *out, size_t cap, size_t *len,
	      char *err, size_t errlen)
{
	uint8_t buf[WIRE_KEY_FILE_MAX + 3];
	size_t n = 0, max = cap < WIRE_KEY_FILE_MAX ? cap : WIRE_KEY_FILE_MAX;
	/* A max-byte key, its "\r\n", and one byte more to see it is longer. */
	size_t limit = max + 3;
	struct stat st;
	int fd, rc = -1;

	/* O_NONBLOCK: a FIFO must not block the open; fstat refuses it next. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ELOOP)
			snprintf(err, errlen,
				 "could not open key file \"%s\": it is a symbolic link",
				 path);
		else
			snprintf(err, errlen, "could not open key file \"%s\": %s",
				 path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "could not stat key file \"%s\": %s", path,
			 strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "key file \"%s\" is not a regular file", path);
		goto out;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen,
			 "key file \"%s\" is readable or writable by group or others; chmod 0600 it",
			 path);
		goto out;
	}
	/* Read to the end rather than trusting st_size. */
	while (n < limit) {
		ssize_t r = read(fd, buf + n, limit - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "could not read key file \"%s\": %s",
				 path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > 0 && buf[n - 1] == '\n') {
		n--;
		if (n > 0 && buf[n - 1] == '\r')
			n--;
	}
	if (n > max) {
		snprintf(err, errlen, "key file \"%s\" is too long: at most %zu bytes are allowed",
			 path, max);
		goto out;
	}
	if (n < WIRE_KEY_MIN) {
		snprintf(err, errlen,
			 "key file \"%s\" is too short: %zu bytes, at least %d are needed",
			 path, n, WIRE_KEY_MIN);
		goto out;
	}
	memcpy(out, buf, n);
	*len = n;
	rc = 0;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return rc;
}

struct wire *
wire_new(const char *cluster_name, const uint8_t *secret, size_t secret_len,
	 uint8_t self_id, uint64_t boot_id, char *err, size_t errlen)
{
	struct wire *w;

	if (!cluster_name || !*cluster_name) {
		snprintf(err, errlen, "cluster name is empty");
		return NULL;
	}
	if (secret_len < WIRE_KEY_MIN) {
		snprintf(err, errlen, "cluster key is too short: %zu bytes, at least %d are needed",
			 secret_len, WIRE_KEY_MIN);
		return NULL;
	}
	if (self_id == 0) {
		snprintf(err, errlen, "peer id 0 is not valid");
		return NULL;
	}
	if (boot_id == 0) {
		snprintf(err, errlen, "boot id 0 is not valid");
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(err, errlen, "could not allocate memory for the wire codec");
		return NULL;
	}
	w->self = self_id;
	w->boot = boot_id;
	if (cluster_id_of(cluster_name, w->cluster_id) < 0) {
		ssl_error(err, errlen, "could not compute the cluster id");
		goto fail;
	}
	if (kdf_setup(w, secret, secret_len, err, errlen) < 0)
		goto fail;
	if (derive_key(w, self_id, boot_id, w->send_key) < 0) {
		snprintf(err, errlen, "could not derive the sending key");
		goto fail;
	}
	w->seal_ctx = aead_ctx_new(1);
	w->open_ctx = aead_ctx_new(0);
	if (!w->seal_ctx || !w->open_ctx) {
		ssl_error(err, errlen, "could not set up ChaCha20-Poly1305");
		goto fail;
	}
	return w;
fail:
	wire_free(w);
	return NULL;
}

void
wire_free(struct wire *w)
{
	if (!w)
		return;
	EVP_KDF_CTX_free(w->kdf);
	EVP_CIPHER_CTX_free(w->seal_ctx);
	EVP_CIPHER_CTX_free(w->open_ctx);
	/* Wipes the keys (sending and cached per peer) with everything else. */
	OPENSSL_cleanse(w, sizeof(*w));
	free(w);
}

int
wire_add_peer(struct wire *w, uint8_t id)
{
	struct wire_peer *p;

	if (id == 0)
		return -1;
	/* Self stays out: its frames are rejected as WIRE_R_SELF. */
	if (id == w->self || w->slot_of[id])
		return 0;
	if (w->npeers == WD_MAX_PEERS)
		return -1;
	p = &w->peers[w->npeers++];
	memset(p, 0, sizeof(*p));
	p->id = id;
	w->slot_of[id] = (uint8_t)w->npeers;
	return 0;
}

/* ---- seal and open ---- */

ssize_t
wire_seal(struct wire *w, uint8_t to, const struct wd_msg *m, uint8_t *out,
	  size_t cap)
{
	uint8_t nonce[WIRE_NONCE_LEN];
	ssize_t blen;
	int n1 = 0, n2 = 0;
	size_t total;

	blen = wire_encode_body(m, w->body, sizeof(w->body));
	if (blen < 0)
		return -1;
	total = WIRE_HEADER_LEN + (size_t)blen + WIRE_TAG_LEN;
	if (total > WIRE_MAX_DGRAM || total > cap || w->seq == UINT64_MAX)
		return -1;
	/* Consumed before anything can fail: a nonce is never used twice. */
	w->seq++;

	memcpy(out + OFF_MAGIC, WIRE_MAGIC, 4);
	out[OFF_VERSION] = WIRE_VERSION;
	out[OFF_SENDER] = w->self;
	out[OFF_RECIPIENT] = to;
	out[OFF_RESERVED] = 0;
	memcpy(out + OFF_CLUSTER, w->cluster_id, WIRE_CLUSTER_ID_LEN);
	store_be64(out + OFF_BOOT, w->boot);
	store_be64(out + OFF_SEQ, w->seq);
	nonce_of(w->seq, nonce);

	if (EVP_EncryptInit_ex(w->seal_ctx, NULL, NULL, w->send_key, nonce) != 1 ||
	    EVP_EncryptUpdate(w->seal_ctx, NULL, &n1, out, WIRE_HEADER_LEN) != 1 ||
	    EVP_EncryptUpdate(w->seal_ctx, out + WIRE_HEADER_LEN, &n1, w->body,
			      (int)blen) != 1 ||
	    EVP_EncryptFinal_ex(w->seal_ctx, out + WIRE_HEADER_LEN + n1, &n2) != 1 ||
	    (size_t)n1 + (size_t)n2 != (size_t)blen ||
	    EVP_CIPHER_CTX_ctrl(w->seal_ctx, EVP_CTRL_AEAD_GET_TAG, WIRE_TAG_LEN,
				out + WIRE_HEADER_LEN + blen) != 1) {
		ERR_clear_error();
		return -1;
	}
	return (ssize_t)total;
}

/* Decrypts ct into w->body and checks the tag. Returns 0 if authentic. */
static int
aead_open(struct wire *w, const uint8_t *key, const uint8_t *hdr,
	  const uint8_t *ct, size_t ctlen, const uint8_t *tag_in)
{
	uint8_t nonce[WIRE_NONCE_LEN];
	uint8_t tag[WIRE_TAG_LEN];	/* the ctrl takes a mutable pointer */
	int n1 = 0, n2 = 0;

	nonce_of(load_be64(hdr + OFF_SEQ), nonce);
	memcpy(tag, tag_in, WIRE_TAG_LEN);
	if (EVP_DecryptInit_ex(w->open_ctx, NULL, NULL, key, nonce) != 1 ||
	    EVP_CIPHER_CTX_ctrl(w->open_ctx, EVP_CTRL_AEAD_SET_TAG, WIRE_TAG_LEN,
				tag) != 1 ||
	    EVP_DecryptUpdate(w->open_ctx, NULL, &n1, hdr, WIRE_HEADER_LEN) != 1 ||
	    EVP_DecryptUpdate(w->open_ctx, w->body, &n1, ct, (int)ctlen) != 1 ||
	    EVP_DecryptFinal_ex(w->open_ctx, w->body + n1, &n2) != 1 ||
	    (size_t)n1 + (size_t)n2 != ctlen) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

static enum wire_reject
reject(struct wire *w, enum wire_reject r)
{
	w->counters[r]++;
	return r;
}

enum wire_reject
wire_open(struct wire *w, const uint8_t *in, size_t len, uint8_t *from,
	  struct wd_msg *m)
{
	uint8_t tmpkey[WIRE_AEAD_KEY_LEN];
	const uint8_t *key;
	struct wire_peer *p;
	struct wd_msg msg;
	uint64_t boot, seq;
	bool new_boot;
	size_t ctlen;
	uint8_t sender;
	enum wire_reject r;

	/* Structure: nothing here costs more than a compare. */
	if (len < WIRE_HEADER_LEN + 1 + WIRE_TAG_LEN || len > WIRE_MAX_DGRAM)
		return reject(w, WIRE_R_SHORT);
	if (memcmp(in + OFF_MAGIC, WIRE_MAGIC, 4) != 0)
		return reject(w, WIRE_R_MAGIC);
	if (in[OFF_VERSION] != WIRE_VERSION)
		return reject(w, WIRE_R_VERSION);
	/* The cluster id is public (a hash of the name): memcmp is fine. */
	if (memcmp(in + OFF_CLUSTER, w->cluster_id, WIRE_CLUSTER_ID_LEN) != 0)
		return reject(w, WIRE_R_CLUSTER);
	sender = in[OFF_SENDER];
	if (sender == w->self)
		return reject(w, WIRE_R_SELF);
	if (in[OFF_RECIPIENT] != w->self)
		return reject(w, WIRE_R_NOT_FOR_US);
	if (!w->slot_of[sender])
		return reject(w, WIRE_R_UNKNOWN_SENDER);
	p = &w->peers[w->slot_of[sender] - 1];
	boot = load_be64(in + OFF_BOOT);
	seq = load_be64(in + OFF_SEQ);

	/* Key: the cached one for the current boot, else a fresh derivation
	 * into tmpkey that is kept only if everything below passes. */
	new_boot = !p->known || boot != p->boot;
	if (!new_boot) {
		key = p->key;
	} else {
		if (derive_key(w, sender, boot, tmpkey) < 0) {
			r = WIRE_R_AUTH;
			goto out;
		}
		key = tmpkey;
	}

	ctlen = len - WIRE_HEADER_LEN - WIRE_TAG_LEN;
	if (aead_open(w, key, in, in + WIRE_HEADER_LEN, ctlen,
		      in + len - WIRE_TAG_LEN) < 0) {
		r = WIRE_R_AUTH;
		goto out;
	}

	/* Authentic from here on. Boot, then the replay window. */
	if (boot == 0 || (p->known && boot < p->boot)) {
		r = WIRE_R_STALE_BOOT;
		goto out;
	}
	if (seq == 0) {
		r = WIRE_R_REPLAY;
		goto out;
	}
	if (!new_boot && seq <= p->highest) {
		uint64_t age = p->highest - seq;

		if (age >= WIRE_REPLAY_WINDOW || ((p->window >> age) & 1)) {
			r = WIRE_R_REPLAY;
			goto out;
		}
	}
	if (in[OFF_RESERVED] != 0 ||
	    wire_decode_body(w->body, ctlen, &msg) < 0) {
		r = WIRE_R_MALFORMED;
		goto out;
	}

	/* Accepted: commit. */
	if (new_boot) {
		p->known = true;
		p->boot = boot;
		memcpy(p->key, tmpkey, sizeof(p->key));
		p->highest = seq;
		p->window = 1;
	} else if (seq > p->highest) {
		uint64_t shift = seq - p->highest;

		p->window = shift >= WIRE_REPLAY_WINDOW ? 1 : (p->window << shift) | 1;
		p->highest = seq;
	} else {
		p->window |= (uint64_t)1 << (p->highest - seq);
	}
	*from = sender;
	*m = msg;
	m->sender_boot = boot;	/* the transport's knowledge, not the body's */
	r = WIRE_OK;
out:
	if (new_boot)
		OPENSSL_cleanse(tmpkey, sizeof(tmpkey));
	w->counters[r]++;
	return r;
}

/* ---- accessors ---- */

const uint64_t *
wire_counters(const struct wire *w)
{
	return w->counters;
}

const char *
wire_reject_name(enum wire_reject r)
{
	if ((unsigned)r >= WIRE_R_COUNT)
		return "?";
	return reject_names[r];
}

uint64_t
wire_boot_id(const struct wire *w)
{
	return w->boot;
}

uint64_t
wire_peer_boot(const struct wire *w, uint8_t id)
{
	const struct wire_peer *p;

	if (!w->slot_of[id])
		return 0;
	p = &w->peers[w->slot_of[id] - 1];
	return p->known ? p->boot : 0;
}
