/* zorch bench — the random DAG every tool runs (header-only, shared by the C programs).
 *
 * Node i (0 <= i < n) depends on k distinct earlier nodes, k uniform in
 * {0,1,2,3} and capped at i; each dependency is uniform in [0, i), redrawn on
 * a duplicate.  The stream is a 64-bit LCG (Knuth's MMIX constants) whose
 * high 32 bits are used, seeded with `seed`.  The same function writes the
 * edge-list file that the Python drivers read (gen-dag), so every tool runs
 * the very same graph; each program prints `edges` and `checksum` so the
 * harness can check that.
 *
 * Storage: deps[3*i + j] for j < ndeps[i].
 */
#ifndef ZORCH_BENCH_DAG_H
#define ZORCH_BENCH_DAG_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct bench_dag {
  uint32_t n;
  uint64_t edges;
  uint8_t *ndeps;   /* n */
  uint32_t *deps;   /* 3*n */
} bench_dag;

static inline uint32_t bench_lcg_next(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (uint32_t)(*s >> 32);
}

/* Uniform in [0, bound) (bound > 0), by rejection so there is no modulo bias. */
static inline uint32_t bench_lcg_below(uint64_t *s, uint32_t bound) {
  uint32_t limit = UINT32_MAX - (UINT32_MAX % bound);
  uint32_t r;
  do r = bench_lcg_next(s); while (r >= limit);
  return r % bound;
}

static inline int bench_dag_generate(bench_dag *g, uint32_t n, uint64_t seed) {
  g->n = n;
  g->edges = 0;
  g->ndeps = calloc(n ? n : 1, 1);
  g->deps = calloc(n ? 3 * (size_t)n : 1, sizeof *g->deps);
  if (!g->ndeps || !g->deps) return -1;
  uint64_t s = seed;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t k = bench_lcg_below(&s, 4);
    if (k > i) k = i;
    uint32_t *d = g->deps + 3 * (size_t)i;
    for (uint32_t j = 0; j < k; j++) {
      uint32_t v;
      int dup;
      do {
        v = bench_lcg_below(&s, i);
        dup = 0;
        for (uint32_t m = 0; m < j; m++) dup |= d[m] == v;
      } while (dup);
      d[j] = v;
    }
    g->ndeps[i] = (uint8_t)k;
    g->edges += k;
  }
  return 0;
}

/* Order-independent within a node, cheap to recompute in Python:
 * sum over edges (i -> dep) of (i * 1000003 + dep + 1), modulo 2^64. */
static inline uint64_t bench_dag_checksum(const bench_dag *g) {
  uint64_t c = 0;
  for (uint32_t i = 0; i < g->n; i++)
    for (uint32_t j = 0; j < g->ndeps[i]; j++)
      c += (uint64_t)i * 1000003ULL + g->deps[3 * (size_t)i + j] + 1;
  return c;
}

static inline void bench_dag_free(bench_dag *g) {
  free(g->ndeps);
  free(g->deps);
  g->ndeps = NULL;
  g->deps = NULL;
}

#define BENCH_DAG_SEED 20240611ULL

#endif /* ZORCH_BENCH_DAG_H */
