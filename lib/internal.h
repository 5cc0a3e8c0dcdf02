/* zorch — internal helpers shared by every source file of libzorch.
 * Never installed.  Internal symbols are named zorch__*.
 */
#ifndef ZORCH_INTERNAL_H
#define ZORCH_INTERNAL_H

#define _GNU_SOURCE 1
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zorch/zorch.h"

/* ---- errors (errors.c) -------------------------------------------------- */

/** Set the calling thread's error and return `code`. */
int zorch__error_set(int code, const char *fmt, ...) ZORCH_PRINTF(2, 3);
/** Like zorch__error_set, appending ": strerror(errno_value)". */
int zorch__error_errno(int code, int errno_value, const char *fmt, ...) ZORCH_PRINTF(3, 4);
/** Prepend "prefix: " to the current error message (keeps the code); returns the code. */
int zorch__error_prefix(const char *fmt, ...) ZORCH_PRINTF(1, 2);
/** Record ENOMEM without allocating; returns ZORCH_ENOMEM. */
int zorch__error_oom(void);

/* ---- memory and strings (util.c) ----------------------------------------- */

char *zorch__strdup(const char *s);           /* NULL-safe: NULL -> NULL */
char *zorch__strndup(const char *s, size_t n);
char *zorch__asprintf(const char *fmt, ...) ZORCH_PRINTF(1, 2); /* NULL on OOM */

/** A growable byte buffer; data is always NUL-terminated. */
typedef struct zorch__buf {
  char *data;
  size_t len;
  size_t cap;
} zorch__buf;
#define ZORCH__BUF_INIT {NULL, 0, 0}
int zorch__buf_grow(zorch__buf *b, size_t extra);
int zorch__buf_put(zorch__buf *b, const void *data, size_t len);
int zorch__buf_puts(zorch__buf *b, const char *s);
int zorch__buf_printf(zorch__buf *b, const char *fmt, ...) ZORCH_PRINTF(2, 3);
/** calloc for large arrays (one per step of a run): from 4 MiB on, fresh
 *  zeroed pages of their own (asked to be backed by transparent huge pages
 *  from 32 MiB on, so that the first touch of a million-step array costs
 *  hundreds of page faults instead of hundreds of thousands); from 64 KiB
 *  on, a block of the calling thread's reserve while it has one.  Free with
 *  zorch__big_free(); NULL on overflow or OOM. */
void *zorch__big_calloc(size_t n, size_t size);
/** The same for an array the caller fills at once, whole: from 64 KiB on,
 *  its pages are faulted in by the kernel in one go (cheaper than a fault
 *  for each), never from a reserve. */
void *zorch__big_calloc_filled(size_t n, size_t size);
void zorch__big_free(void *p);

/** A reserve: `bytes` of fresh memory that a second thread faults in, from
 *  the front, while the calling thread works; until zorch__reserve_end(),
 *  the calling thread's zorch__big_calloc() blocks come from it, in order.
 *  The first touch of fresh pages is most of what starting a large run
 *  costs: the reserve moves it off the thread that starts the run.  NULL
 *  (and no reserve) when the thread has one already, or on failure. */
typedef struct zorch__reserve zorch__reserve;
zorch__reserve *zorch__reserve_begin(size_t bytes);
/** Stop the faulting thread and give back what was not handed out; the
 *  blocks handed out stay valid (zorch__big_free() each).  NULL: no-op. */
void zorch__reserve_end(zorch__reserve *r);

/** A bump allocator: blocks of at least `chunk` bytes chained from *arena
 *  (NULL when empty), aligned to 16 bytes, freed all at once. */
void *zorch__arena_alloc(void **arena, size_t n, size_t chunk);
void zorch__arena_free(void **arena);

/** Append an unsigned decimal integer (no printf: this is on hot paths). */
int zorch__buf_u64(zorch__buf *b, uint64_t v);
/** Append a Unix time as seconds with 6 decimals, e.g. 1764100000.123456. */
int zorch__buf_time(zorch__buf *b, double t);
/** Append several NUL-terminated strings (the list ends with NULL). */
int zorch__buf_cat(zorch__buf *b, ...);
/** Append `s` as a JSON string literal (with quotes and escapes). */
int zorch__buf_json_string(zorch__buf *b, const char *s);

/* Writers into room reserved beforehand (zorch__buf_grow): each writes at p
 * and returns the end of what it wrote; no NUL is added. */
/** At most 20 bytes. */
char *zorch__put_u64(char *p, uint64_t v);
/** As zorch__buf_time; at most ZORCH__TIME_MAX bytes. */
char *zorch__put_time(char *p, double t);
#define ZORCH__TIME_MAX 28
/** A string literal (without its NUL); at most sizeof(lit) - 1 bytes. */
#define ZORCH__PUT_LIT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)
/** `s` (n bytes) as a JSON string literal; at most ZORCH__JSON_STRING_MAX(n). */
char *zorch__put_json_string(char *p, const char *s, size_t n);
#define ZORCH__JSON_STRING_MAX(n) (6 * (size_t)(n) + 2)
void zorch__buf_free(zorch__buf *b);
/** Hand the data over (caller frees with free()); the buffer is reset. */
char *zorch__buf_detach(zorch__buf *b);

/** Names of pipelines, steps, outputs, inputs, params: [A-Za-z][A-Za-z0-9_-]{0,62}.
 *  On failure sets an error "invalid <what> name '<name>': <reason>". */
int zorch__check_name(const char *what, const char *name);

/* ---- time ------------------------------------------------------------------ */

/** Wall-clock time as Unix seconds. */
double zorch__now(void);
/** Monotonic time in nanoseconds. */
int64_t zorch__mono_ns(void);

/* ---- files (util.c) --------------------------------------------------------- */

/** mkdir -p, mode 0755. */
int zorch__mkdirs(const char *path);
/** Read a whole file; *data is NUL-terminated; free with free(). */
int zorch__read_file(const char *path, char **data, size_t *len);
/** Look `cmd` up in $PATH as execvp(3) would (a name with '/' is returned as
 *  is): the first executable regular file, malloc'd, or NULL. */
char *zorch__which(const char *cmd);
/** The same in the directories of `path` (a PATH value; NULL: a default). */
char *zorch__which_in(const char *cmd, const char *path);
/** The last `lines` lines of a text file (at most 2 KiB), or NULL. */
char *zorch__file_tail(const char *path, int lines);
/** Remove a file or a directory tree (no error if missing). */
int zorch__rm_rf(const char *path);
/** Join two path parts with '/'.  NULL on OOM. */
char *zorch__path_join(const char *a, const char *b);

/* ---- hashing (hash.c; OpenSSL libcrypto) ------------------------------------- */

#define ZORCH__DIGEST_HEX 65 /* 64 hex digits and a NUL */

typedef struct zorch__sha256 zorch__sha256;
zorch__sha256 *zorch__sha256_new(void);
void zorch__sha256_update(zorch__sha256 *h, const void *data, size_t len);
/** Finish into hex and free the context. */
void zorch__sha256_final_hex(zorch__sha256 *h, char out[ZORCH__DIGEST_HEX]);
void zorch__sha256_hex(const void *data, size_t len, char out[ZORCH__DIGEST_HEX]);
/** Hash a file's content streaming (never whole in memory). */
int zorch__sha256_file(const char *path, char out[ZORCH__DIGEST_HEX], uint64_t *size);
/** Is `s` exactly 64 lowercase hex digits? */
bool zorch__is_digest(const char *s);

/* ---- logging (client.c) ------------------------------------------------------ */

struct zorch_client;
void zorch__log(struct zorch_client *c, int level, const char *domain, const char *fmt, ...)
    ZORCH_PRINTF(4, 5);

/** Secure getenv unless the client disabled the environment. */
const char *zorch__getenv(const struct zorch_client *c, const char *name);

#endif /* ZORCH_INTERNAL_H */
