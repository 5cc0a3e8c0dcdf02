/* Large arrays and the reserve a large run start takes them from. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "zorch-check.h"

static size_t page(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static bool all_zero(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return false;
  return true;
}

/* [p, p + n) and the reserve [base, base + size) do not meet */
static bool outside(const void *p, size_t n, uintptr_t base, size_t size) {
  uintptr_t a = (uintptr_t)p;
  return a + n <= base || a >= base + size;
}

static void *other_thread_alloc(void *arg) {
  (void)arg;
  return zorch__big_calloc(1, 256 << 10);
}

START_TEST(reserve_hands_out_zeroed_blocks_in_order_to_its_thread_only) {
  size_t pg = page();
  zorch__reserve *r = zorch__reserve_begin(8u << 20);
  ck_assert_ptr_nonnull(r);
  ck_assert_ptr_null(zorch__reserve_begin(8u << 20)); /* one a thread */
  /* blocks from 64 KiB on come from the reserve, one after the other */
  unsigned char *a = zorch__big_calloc(100000, 1);
  unsigned char *b = zorch__big_calloc(70000, 4);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  size_t a_len = (100000 + 64 + pg - 1) / pg * pg;
  ck_assert_ptr_eq(b, a + a_len);
  uintptr_t base = (uintptr_t)a - 64; /* the reserve begins with a's block (64: its header) */
  size_t size = 8u << 20;
  ck_assert(all_zero(a, 100000));
  ck_assert(all_zero(b, 280000));
  memset(a, 0xa5, 100000);
  memset(b, 0x5a, 280000);
  /* small blocks do not */
  unsigned char *small = zorch__big_calloc(100, 1);
  ck_assert_ptr_nonnull(small);
  ck_assert(outside(small, 100, base, size));
  zorch__big_free(small);
  /* another thread's blocks do not */
  pthread_t t;
  void *theirs = NULL;
  ck_assert_int_eq(pthread_create(&t, NULL, other_thread_alloc, NULL), 0);
  pthread_join(t, &theirs);
  ck_assert_ptr_nonnull(theirs);
  ck_assert(outside(theirs, 256 << 10, base, size));
  ck_assert(all_zero(theirs, 256 << 10));
  zorch__big_free(theirs);
  /* a block freed early leaves its neighbours alone */
  zorch__big_free(a);
  for (size_t i = 0; i < 280000; i++) ck_assert_int_eq(b[i], 0x5a);
  /* more than is left: a block of its own, still zeroed */
  unsigned char *big = zorch__big_calloc(16u << 20, 1);
  ck_assert_ptr_nonnull(big);
  ck_assert(outside(big, 16u << 20, base, size));
  ck_assert(all_zero(big, 16u << 20));
  zorch__big_free(big);
  zorch__reserve_end(r);
  /* the blocks handed out outlive the reserve */
  for (size_t i = 0; i < 280000; i++) ck_assert_int_eq(b[i], 0x5a);
  zorch__big_free(b);
  /* and the thread may take a new one */
  r = zorch__reserve_begin(2u << 20);
  ck_assert_ptr_nonnull(r);
  unsigned char *c = zorch__big_calloc(1u << 20, 1);
  ck_assert(all_zero(c, 1u << 20));
  zorch__reserve_end(r);
  zorch__big_free(c);
  zorch__reserve_end(NULL);
}
END_TEST

START_TEST(reserve_blocks_are_sound_while_the_reserve_is_faulted_in) {
  /* many blocks of many sizes, written as soon as handed out, while the
   * reserve's thread is still going: every byte is what was written */
  enum { N = 200 };
  zorch__reserve *r = zorch__reserve_begin(64u << 20);
  ck_assert_ptr_nonnull(r);
  unsigned char *blk[N];
  size_t len[N];
  for (int i = 0; i < N; i++) {
    len[i] = (size_t)(65536 + (i * 7919) % 250000);
    blk[i] = zorch__big_calloc(len[i], 1);
    ck_assert_ptr_nonnull(blk[i]);
    ck_assert(all_zero(blk[i], len[i]));
    memset(blk[i], i + 1, len[i]);
    if (i % 5 == 4) { /* some go back at once */
      zorch__big_free(blk[i]);
      blk[i] = NULL;
    }
  }
  zorch__reserve_end(r);
  for (int i = 0; i < N; i++) {
    if (!blk[i]) continue;
    for (size_t k = 0; k < len[i]; k += 997) ck_assert_int_eq(blk[i][k], (unsigned char)(i + 1));
    ck_assert_int_eq(blk[i][len[i] - 1], (unsigned char)(i + 1));
    zorch__big_free(blk[i]);
  }
}
END_TEST

START_TEST(filled_arrays_are_zeroed) {
  uint32_t *v = zorch__big_calloc_filled(1u << 20, sizeof *v);
  ck_assert_ptr_nonnull(v);
  ck_assert(all_zero((const unsigned char *)v, (1u << 20) * sizeof *v));
  for (uint32_t i = 0; i < 1u << 20; i++) v[i] = i;
  ck_assert_uint_eq(v[12345], 12345);
  zorch__big_free(v);
  char *s = zorch__big_calloc_filled(10, 1); /* small: an ordinary block */
  ck_assert(all_zero((const unsigned char *)s, 10));
  zorch__big_free(s);
}
END_TEST

/* A large run (its start takes a reserve) keeps to its dependencies. */
enum { BIG_N = 30000 };
static atomic_uchar big_done[BIG_N];
static atomic_int big_bad;

static uint32_t big_upstream(uint32_t i, int k) { return k == 0 ? i - 1 : (uint32_t)((i * 7919u) % i); }

static int big_step(zorch_step_ctx *ctx, void *payload) {
  (void)ctx;
  uint32_t i = (uint32_t)(uintptr_t)payload;
  for (int k = 0; i > 0 && k < 2; k++)
    if (!atomic_load(&big_done[big_upstream(i, k)])) atomic_fetch_add(&big_bad, 1);
  atomic_store(&big_done[i], 1);
  return 0;
}

static void run_big(uint32_t flags) {
  memset(big_done, 0, sizeof big_done);
  atomic_store(&big_bad, 0);
  zorch_client *c = zt_client();
  zorch_pipeline *p = NULL;
  zt_assert_rc(zorch_pipeline_new(&p, "big"), ZORCH_OK);
  char name[32], up[32];
  for (uint32_t i = 0; i < BIG_N; i++) {
    zorch_step *s = NULL;
    snprintf(name, sizeof name, "s%u", i);
    zt_assert_rc(zorch_pipeline_add_function_step(&s, p, name, big_step, (void *)(uintptr_t)i), ZORCH_OK);
    for (int k = 0; i > 0 && k < 2; k++) {
      snprintf(up, sizeof up, "s%u", big_upstream(i, k));
      zt_assert_rc(zorch_step_after(s, up), ZORCH_OK);
    }
  }
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.flags = flags;
  o.max_parallel = 4;
  zorch_run *r = NULL;
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_OK);
  zt_assert_rc(zorch_run_wait(r, -1), ZORCH_OK);
  ck_assert_int_eq(zorch_run_status(r), ZORCH_STATUS_COMPLETED);
  ck_assert_uint_eq(zorch_run_step_count(r), BIG_N);
  for (size_t i = 0; i < BIG_N; i++) ck_assert_int_eq(zorch_run_step_status(r, i), ZORCH_STATUS_COMPLETED);
  for (size_t i = 0; i < BIG_N; i++) ck_assert_int_eq(atomic_load(&big_done[i]), 1);
  ck_assert_int_eq(atomic_load(&big_bad), 0);
  zorch_run_free(r);
  zorch_pipeline_free(p);
  zorch_client_free(c);
}

START_TEST(large_runs_keep_to_their_dependencies) {
  run_big(ZORCH_RUN_EPHEMERAL | ZORCH_RUN_NO_CACHE);
  run_big(ZORCH_RUN_NO_CACHE);
  run_big(0);
}
END_TEST

Suite *util_suite(void) {
  Suite *s = suite_create("util");
  TCase *tc = tcase_create("big");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, reserve_hands_out_zeroed_blocks_in_order_to_its_thread_only);
  tcase_add_test(tc, reserve_blocks_are_sound_while_the_reserve_is_faulted_in);
  tcase_add_test(tc, filled_arrays_are_zeroed);
  tcase_add_test(tc, large_runs_keep_to_their_dependencies);
  suite_add_tcase(s, tc);
  return s;
}

ZORCH_CHECK_MAIN(util)
