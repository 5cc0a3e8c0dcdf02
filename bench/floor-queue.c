/* zorch bench — the in-process scheduling floor (perf-anchors §2(c)).
 *
 *   floor-queue N [WORKERS] [SEED]
 *
 * Runs the random DAG of dag.h with a plain C work queue: one mutex + condvar
 * protected FIFO shared by WORKERS (default 2) threads, atomic in-degrees,
 * successors in CSR arrays.  Each task calls a no-op function through a
 * pointer.  Timed: building the CSR/in-degrees from the in-memory edge list
 * (build_s) and the run including thread creation and join (run_s); the
 * generation of the edge list is not timed (as for every other tool).
 */
#include <pthread.h>
#include <stdatomic.h>

#include "benchutil.h"
#include "dag.h"

typedef struct queue_state {
  uint32_t n;
  uint32_t *succ_off;       /* n + 1 */
  uint32_t *succ;           /* edges */
  _Atomic uint32_t *indeg;  /* n */
  uint32_t *q;              /* n: each task is pushed exactly once */
  uint32_t head, tail;
  int done;
  _Atomic uint32_t completed;
  _Atomic uint64_t ran;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} queue_state;

static void noop_task(uint32_t i, void *p) {
  (void)i;
  (void)p;
}
static void (*volatile task_fn)(uint32_t, void *) = noop_task;

static void *worker(void *arg) {
  queue_state *s = arg;
  uint64_t ran = 0;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    while (s->head == s->tail && !s->done) pthread_cond_wait(&s->cv, &s->mu);
    if (s->head == s->tail) {
      pthread_mutex_unlock(&s->mu);
      break;
    }
    uint32_t t = s->q[s->head++];
    pthread_mutex_unlock(&s->mu);
    task_fn(t, NULL);
    ran++;
    for (uint32_t k = s->succ_off[t]; k < s->succ_off[t + 1]; k++) {
      uint32_t v = s->succ[k];
      if (atomic_fetch_sub_explicit(&s->indeg[v], 1, memory_order_acq_rel) == 1) {
        pthread_mutex_lock(&s->mu);
        s->q[s->tail++] = v;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
      }
    }
    if (atomic_fetch_add_explicit(&s->completed, 1, memory_order_acq_rel) + 1 == s->n) {
      pthread_mutex_lock(&s->mu);
      s->done = 1;
      pthread_cond_broadcast(&s->cv);
      pthread_mutex_unlock(&s->mu);
    }
  }
  atomic_fetch_add(&s->ran, ran);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 4) bench_die("usage: floor-queue N [WORKERS] [SEED]");
  uint32_t n = (uint32_t)bench_parse_u64(argv[1], "N");
  unsigned workers = argc > 2 ? (unsigned)bench_parse_u64(argv[2], "workers") : 2;
  uint64_t seed = argc > 3 ? bench_parse_u64(argv[3], "seed") : BENCH_DAG_SEED;
  if (!n || !workers || workers > 256) bench_die("need N > 0 and 1..256 workers");
  bench_dag g;
  if (bench_dag_generate(&g, n, seed)) bench_die("out of memory");

  double t0 = bench_now();
  queue_state s = {.n = n};
  s.succ_off = calloc((size_t)n + 1, sizeof *s.succ_off);
  s.succ = malloc((g.edges ? g.edges : 1) * sizeof *s.succ);
  s.indeg = calloc(n, sizeof *s.indeg);
  s.q = malloc((size_t)n * sizeof *s.q);
  uint32_t *fill = calloc(n, sizeof *fill);
  if (!s.succ_off || !s.succ || !s.indeg || !s.q || !fill) bench_die("out of memory");
  for (uint32_t i = 0; i < n; i++)
    for (uint32_t j = 0; j < g.ndeps[i]; j++) s.succ_off[g.deps[3 * (size_t)i + j] + 1]++;
  for (uint32_t i = 0; i < n; i++) s.succ_off[i + 1] += s.succ_off[i];
  for (uint32_t i = 0; i < n; i++) {
    atomic_init(&s.indeg[i], g.ndeps[i]);
    for (uint32_t j = 0; j < g.ndeps[i]; j++) {
      uint32_t d = g.deps[3 * (size_t)i + j];
      s.succ[s.succ_off[d] + fill[d]++] = i;
    }
    if (!g.ndeps[i]) s.q[s.tail++] = i;
  }
  pthread_mutex_init(&s.mu, NULL);
  pthread_cond_init(&s.cv, NULL);
  double t1 = bench_now();

  pthread_t th[256];
  for (unsigned w = 0; w < workers; w++)
    if (pthread_create(&th[w], NULL, worker, &s)) bench_die("pthread_create failed");
  for (unsigned w = 0; w < workers; w++) pthread_join(th[w], NULL);
  double t2 = bench_now();

  uint64_t ran = atomic_load(&s.ran);
  printf("{\"tool\":\"floor-queue\",\"steps\":%u,\"edges\":%llu,\"checksum\":%llu,\"workers\":%u,"
         "\"ran\":%llu,\"build_s\":%.6f,\"run_s\":%.6f,\"wall_s\":%.6f}\n",
         n, (unsigned long long)g.edges, (unsigned long long)bench_dag_checksum(&g), workers,
         (unsigned long long)ran, t1 - t0, t2 - t1, t2 - t0);
  free(fill);
  free(s.q);
  free((void *)s.indeg);
  free(s.succ);
  free(s.succ_off);
  bench_dag_free(&g);
  return ran == n ? 0 : 1;
}
