/* zorch bench — write the random DAG of dag.h as a text file for the Python drivers.
 *
 *   gen-dag N OUT [SEED]
 *
 * Format: a header line "zdag1 N EDGES CHECKSUM", then one line per node i in
 * order: "k d1 .. dk" (its dependencies, all < i).  Prints a JSON summary.
 */
#include "benchutil.h"
#include "dag.h"

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) bench_die("usage: gen-dag N OUT [SEED]");
  uint32_t n = (uint32_t)bench_parse_u64(argv[1], "N");
  uint64_t seed = argc > 3 ? bench_parse_u64(argv[3], "seed") : BENCH_DAG_SEED;
  bench_dag g;
  if (bench_dag_generate(&g, n, seed)) bench_die("out of memory");
  FILE *f = fopen(argv[2], "w");
  if (!f) bench_die("cannot write %s: %s", argv[2], strerror(errno));
  uint64_t sum = bench_dag_checksum(&g);
  fprintf(f, "zdag1 %u %llu %llu\n", n, (unsigned long long)g.edges, (unsigned long long)sum);
  for (uint32_t i = 0; i < n; i++) {
    fprintf(f, "%u", g.ndeps[i]);
    for (uint32_t j = 0; j < g.ndeps[i]; j++) fprintf(f, " %u", g.deps[3 * (size_t)i + j]);
    fputc('\n', f);
  }
  if (fclose(f)) bench_die("cannot write %s: %s", argv[2], strerror(errno));
  printf("{\"tool\":\"gen-dag\",\"steps\":%u,\"edges\":%llu,\"checksum\":%llu,\"seed\":%llu}\n", n,
         (unsigned long long)g.edges, (unsigned long long)sum, (unsigned long long)seed);
  bench_dag_free(&g);
  return 0;
}
