/* zorch — SHA-256 through OpenSSL's libcrypto. */
/* SHA256_Init/_Update/_Final (one-shot hashes of short texts, see
 * zorch__sha256_hex) are deprecated in OpenSSL 3.0, not removed: ask for the
 * 1.1.1 API level so that they are declared without a deprecation warning. */
#define OPENSSL_API_COMPAT 10101
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <unistd.h>

struct zorch__sha256 {
  EVP_MD_CTX *md;
};

/* OpenSSL 3 looks an algorithm up in its providers on every implicit use:
 * fetch SHA-256 once for the streaming hashes. */
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;
static void md_init(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }
static const EVP_MD *md(void) {
  pthread_once(&md_once, md_init);
  return sha256_md ? sha256_md : EVP_sha256();
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

void zorch__sha256_hex(const void *data, size_t len, char out[ZORCH__DIGEST_HEX]) {
  /* OpenSSL's SHA-256 without the EVP layer: a one-shot hash of a cache key
   * text (~100-200 bytes, one per step) costs ~160 ns this way and ~280 ns
   * through a reused EVP context, whose provider dispatch outweighs the
   * hashing itself.  OpenSSL picks its SHA-instruction code either way. */
  SHA256_CTX c;
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256_Init(&c);
  SHA256_Update(&c, data, len);
  SHA256_Final(d, &c);
  to_hex(d, sizeof d, out);
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
