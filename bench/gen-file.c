/* zorch bench — write BYTES of pseudo-random content (xorshift64* stream) to OUT, fsync'd.
 *
 *   gen-file OUT BYTES [SEED]
 *
 * Not zeros and no repeated blocks, so neither the filesystem nor the store can
 * deduplicate or compress its blocks.
 */
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "benchutil.h"

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) bench_die("usage: gen-file OUT BYTES [SEED]");
  unsigned long long total = bench_parse_u64(argv[2], "size");
  uint64_t s = argc > 3 ? bench_parse_u64(argv[3], "seed") : 0x9E3779B97F4A7C15ULL;
  if (!s) s = 1;
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) bench_die("cannot create %s: %s", argv[1], strerror(errno));
  enum { CHUNK = 1 << 20 };
  uint64_t *buf = malloc(CHUNK);
  if (!buf) bench_die("out of memory");
  double t0 = bench_now();
  unsigned long long done = 0;
  while (done < total) {
    for (size_t i = 0; i < CHUNK / 8; i++) {
      s ^= s >> 12;
      s ^= s << 25;
      s ^= s >> 27;
      buf[i] = s * 0x2545F4914F6CDD1DULL;
    }
    size_t want = total - done < CHUNK ? (size_t)(total - done) : CHUNK;
    const char *p = (const char *)buf;
    size_t left = want;
    while (left) {
      ssize_t w = write(fd, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) bench_die("cannot write %s: %s", argv[1], strerror(errno));
      p += w;
      left -= (size_t)w;
    }
    done += want;
  }
  if (fsync(fd) || close(fd)) bench_die("cannot write %s: %s", argv[1], strerror(errno));
  printf("{\"tool\":\"gen-file\",\"bytes\":%llu,\"wall_s\":%.6f}\n", total, bench_now() - t0);
  free(buf);
  return 0;
}
