/* zorch — SHA-256 through OpenSSL's libcrypto; one-shot hashes of a short
 * text (a cache key for every step) with the CPU's SHA instructions when it
 * has them, since OpenSSL's dispatch costs more than hashing 100 bytes. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <unistd.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define ZORCH_SHA_NI 1
#endif

struct zorch__sha256 {
  EVP_MD_CTX *md;
};

/* OpenSSL 3 looks an algorithm up in its providers on every implicit use;
 * fetch SHA-256 once, and keep one digest context per thread for one-shot
 * hashes (cache keys are hashed for every step). */
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;
static pthread_key_t ctx_key;
static void ctx_free(void *p) { EVP_MD_CTX_free(p); }
static void md_init(void) {
  sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
  pthread_key_create(&ctx_key, ctx_free);
}
static const EVP_MD *md(void) {
  pthread_once(&md_once, md_init);
  return sha256_md ? sha256_md : EVP_sha256();
}
/* The calling thread's reusable context (freed when the thread exits). */
static EVP_MD_CTX *thread_ctx(void) {
  md();
  EVP_MD_CTX *c = pthread_getspecific(ctx_key);
  if (!c && (c = EVP_MD_CTX_new())) pthread_setspecific(ctx_key, c);
  return c;
}

zorch__sha256 *zorch__sha256_new(void) {
  zorch__sha256 *h = malloc(sizeof *h);
  if (!h) return NULL;
  h->md = EVP_MD_CTX_new();
  if (!h->md || EVP_DigestInit_ex(h->md, md(), NULL) != 1) {
    EVP_MD_CTX_free(h->md);
    free(h);
    return NULL;
  }
  return h;
}

void zorch__sha256_update(zorch__sha256 *h, const void *data, size_t len) {
  EVP_DigestUpdate(h->md, data, len);
}

static void to_hex(const unsigned char *d, unsigned n, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (unsigned i = 0; i < n; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  out[2 * n] = '\0';
}

void zorch__sha256_final_hex(zorch__sha256 *h, char out[ZORCH__DIGEST_HEX]) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_DigestFinal_ex(h->md, d, &n);
  to_hex(d, n, out);
  EVP_MD_CTX_free(h->md);
  free(h);
}

#ifdef ZORCH_SHA_NI
/* ---- SHA-256 with the x86 SHA extensions (FIPS 180-4; checked against
 * OpenSSL by the store tests) ---- */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

/* Hash n 64-byte blocks into state (a..h). */
__attribute__((target("sha,sse4.1,ssse3"))) static void sha_ni_blocks(uint32_t state[8],
                                                                     const unsigned char *p,
                                                                     size_t n) {
  const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1); /* CDAB */
  __m128i st1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B); /* EFGH */
  __m128i st0 = _mm_alignr_epi8(tmp, st1, 8);                                          /* ABEF */
  st1 = _mm_blend_epi16(st1, tmp, 0xF0);                                               /* CDGH */
  for (; n; n--, p += 64) {
    __m128i abef = st0, cdgh = st1, w[4], m;
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) { /* four rounds each */
      if (g < 4) w[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), swap);
      m = _mm_add_epi32(w[g & 3], _mm_loadu_si128((const __m128i *)&sha_k[4 * g]));
      st1 = _mm_sha256rnds2_epu32(st1, st0, m);
      if (g >= 3 && g <= 14) { /* the next four words of the schedule */
        __m128i t = _mm_add_epi32(w[(g + 1) & 3], _mm_alignr_epi8(w[g & 3], w[(g - 1) & 3], 4));
        w[(g + 1) & 3] = _mm_sha256msg2_epu32(t, w[g & 3]);
      }
      st0 = _mm_sha256rnds2_epu32(st0, st1, _mm_shuffle_epi32(m, 0x0E));
      if (g >= 1 && g <= 12) w[(g - 1) & 3] = _mm_sha256msg1_epu32(w[(g - 1) & 3], w[g & 3]);
    }
    st0 = _mm_add_epi32(st0, abef);
    st1 = _mm_add_epi32(st1, cdgh);
  }
  tmp = _mm_shuffle_epi32(st0, 0x1B);        /* FEBA */
  st1 = _mm_shuffle_epi32(st1, 0xB1);        /* DCHG */
  st0 = _mm_blend_epi16(tmp, st1, 0xF0);     /* DCBA */
  st1 = _mm_alignr_epi8(st1, tmp, 8);        /* HGFE */
  _mm_storeu_si128((__m128i *)&state[0], st0);
  _mm_storeu_si128((__m128i *)&state[4], st1);
}

static bool sha_ni;
static pthread_once_t sha_ni_once = PTHREAD_ONCE_INIT;
static void sha_ni_probe(void) {
  unsigned a, b, c, d;
  /* leaf 7: EBX bit 29 = SHA; leaf 1: ECX bit 19 = SSE4.1, bit 9 = SSSE3 */
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 19)) || !(c & (1u << 9))) return;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
  sha_ni = (b >> 29) & 1;
  if (getenv("ZORCH_NO_SHA_NI")) sha_ni = false; /* tests: the OpenSSL path */
}

static void sha_ni_hex(const unsigned char *data, size_t len, char out[ZORCH__DIGEST_HEX]) {
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  size_t full = len / 64;
  if (full) sha_ni_blocks(h, data, full);
  /* the tail, the 0x80 byte and the bit length: one or two blocks */
  unsigned char last[128] = {0};
  size_t rest = len - full * 64;
  memcpy(last, data + full * 64, rest);
  last[rest] = 0x80;
  size_t nb = rest + 9 > 64 ? 2 : 1;
  uint64_t bits = (uint64_t)len * 8;
  for (int k = 0; k < 8; k++) last[nb * 64 - 1 - k] = (unsigned char)(bits >> (8 * k));
  sha_ni_blocks(h, last, nb);
  unsigned char d[32];
  for (int k = 0; k < 8; k++) {
    d[4 * k] = (unsigned char)(h[k] >> 24);
    d[4 * k + 1] = (unsigned char)(h[k] >> 16);
    d[4 * k + 2] = (unsigned char)(h[k] >> 8);
    d[4 * k + 3] = (unsigned char)h[k];
  }
  to_hex(d, 32, out);
}
#endif

bool zorch__sha256_accelerated(void) {
#ifdef ZORCH_SHA_NI
  pthread_once(&sha_ni_once, sha_ni_probe);
  return sha_ni;
#else
  return false;
#endif
}

void zorch__sha256_hex(const void *data, size_t len, char out[ZORCH__DIGEST_HEX]) {
#ifdef ZORCH_SHA_NI
  pthread_once(&sha_ni_once, sha_ni_probe);
  if (sha_ni) {
    sha_ni_hex(data, len, out);
    return;
  }
#endif
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_MD_CTX *c = thread_ctx();
  if (c && EVP_DigestInit_ex(c, md(), NULL) == 1 && EVP_DigestUpdate(c, data, len) == 1 &&
      EVP_DigestFinal_ex(c, d, &n) == 1) {
    to_hex(d, n, out);
    return;
  }
  EVP_Digest(data, len, d, &n, md(), NULL);
  to_hex(d, n, out);
}

int zorch__sha256_file(const char *path, char out[ZORCH__DIGEST_HEX], uint64_t *size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return zorch__error_errno(e == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, e, "cannot open '%s'",
                              path);
  }
  zorch__sha256 *h = zorch__sha256_new();
  enum { BUF = 1 << 20 };
  unsigned char *buf = malloc(BUF);
  if (!h || !buf) {
    close(fd);
    free(buf);
    if (h) zorch__sha256_final_hex(h, out);
    return zorch__error_oom();
  }
  uint64_t total = 0;
  for (;;) {
    ssize_t r = read(fd, buf, BUF);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      free(buf);
      zorch__sha256_final_hex(h, out);
      return zorch__error_errno(ZORCH_EIO, e, "cannot read '%s'", path);
    }
    if (r == 0) break;
    zorch__sha256_update(h, buf, (size_t)r);
    total += (uint64_t)r;
  }
  close(fd);
  free(buf);
  zorch__sha256_final_hex(h, out);
  if (size) *size = total;
  return ZORCH_OK;
}

bool zorch__is_digest(const char *s) {
  if (!s) return false;
  size_t i = 0;
  for (; s[i]; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return i == 64;
}
