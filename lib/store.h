/* zorch — the local artifact store, run records, the journal and the cache index.
 *
 * Layout under the store root:
 *   artifacts/<first 2 hex digits>/<sha256>   a file artifact (mode 0444) or a
 *                                            directory artifact (tree, read-only)
 *   tmp/                                     scratch for writes in progress (same fs)
 *   runs/<run-id>/run.json                   run record (atomic document)
 *   runs/<run-id>/deployment.json            the deployment (atomic document)
 *   runs/<run-id>/journal.jsonl              step records of a local run (append-only)
 *   runs/<run-id>/steps/<step>.json          step records written by remote steps
 *   runs/<run-id>/logs/<step>.log            step logs
 *   cache/<pipeline>.jsonl                   cache index (append-only)
 *
 * Crash safety: an artifact or document becomes visible only by rename(2)
 * of a complete, fsync'd temporary file, followed by an fsync of the
 * directory.  A reader therefore never sees half of one, including after
 * kill -9 or power loss.
 */
#ifndef ZORCH_STORE_H
#define ZORCH_STORE_H

#include "internal.h"

typedef struct zorch__store zorch__store;

/** Open (creating the directories) the local store at `root`. */
int zorch__store_open(zorch__store **out, const char *root);
void zorch__store_close(zorch__store *st);
const char *zorch__store_root(const zorch__store *st);

/* ---- artifacts ---- */

/** Store a buffer; `digest` receives its SHA-256 hex.  Equal content is stored once. */
int zorch__store_put_bytes(zorch__store *st, const void *data, size_t len,
                           char digest[ZORCH__DIGEST_HEX]);

/** Store a file or a directory tree found at `path`.  take=true: `path` was
 *  returned by zorch__store_scratch() and is moved into place without a copy
 *  (or removed when the content is already stored); take=false: it is copied
 *  (in the kernel where it can be) and the copy hashed, never read whole
 *  into memory; the original is left in place.  A
 *  directory's digest is the SHA-256 of its canonical manifest (sorted
 *  relative paths, kinds, executable bits, file digests, symlink targets).
 *  *size is the total bytes of regular files; *is_dir tells the kind. */
int zorch__store_put_path(zorch__store *st, const char *path, bool take,
                          char digest[ZORCH__DIGEST_HEX], uint64_t *size, bool *is_dir);

/** A fresh, not yet existing path under tmp/ for a step to create a file or
 *  directory in.  `hint` (may be NULL) is put in the name.  Free with free(). */
int zorch__store_scratch(zorch__store *st, const char *hint, char **path_out);

/** Path of an artifact (it may not exist).  NULL on OOM.  Free with free(). */
char *zorch__store_artifact_path(const zorch__store *st, const char *digest);

/** Does the artifact exist? */
bool zorch__store_has(const zorch__store *st, const char *digest);

/* ---- documents ---- */

/** Atomically publish a small document at root/relpath (directories are
 *  created).  durable=false skips the fsyncs (still atomic for readers). */
int zorch__store_write_doc(zorch__store *st, const char *relpath, const void *data, size_t len,
                           bool durable);

/** Read root/relpath whole; ZORCH_ENOTFOUND if missing.  Free with free(). */
int zorch__store_read_doc(const zorch__store *st, const char *relpath, char **data, size_t *len);

/* ---- journal: an append-only file of JSON lines with group commit ---- */

typedef struct zorch__journal zorch__journal;

/** Open (create or append to) the journal at `path`.  Appends are collected
 *  and written by a background committer: one write(2) covers every line
 *  appended since the previous batch (at most one batch per 5 ms, per
 *  50 ms when not durable); when durable, one fdatasync(2) per 50 ms covers
 *  every line written since the previous one (see journal.c). */
int zorch__journal_open(zorch__journal **out, const char *path, bool durable);

/** Append one line (`line` has no '\n').  Thread-safe.  Returns without
 *  waiting for the line to reach the disk. */
int zorch__journal_append(zorch__journal *j, const char *line, size_t len);

/** Append whole lines at once: `lines` ends with '\n' (each line ends with
 *  one).  They reach the file in the same batch.  Thread-safe. */
int zorch__journal_append_lines(zorch__journal *j, const char *lines, size_t len);

/** Block until every line appended before this call is written (and synced
 *  when durable).  Returns the error of a failed write, if any. */
int zorch__journal_flush(zorch__journal *j);

/** Flush, stop the committer and close.  NULL is a no-op. */
int zorch__journal_close(zorch__journal *j);

/** Call `cb` for each complete line of the journal at `path`, in order.  A
 *  last line without its '\n' (torn by a crash) is ignored.  ZORCH_ENOTFOUND
 *  if the file is missing.  A non-zero return of cb stops and is returned. */
int zorch__journal_replay(const char *path,
                          int (*cb)(const char *line, size_t len, void *payload), void *payload);

/* ---- cache index ---- */

typedef struct zorch__cache zorch__cache;

/** Load the cache index of `pipeline` (cache/<pipeline>.jsonl) into memory
 *  and open it for appending. */
int zorch__cache_open(zorch__cache **out, zorch__store *st, const char *pipeline, bool durable);

/** The outputs JSON recorded for `key` (latest entry wins), or NULL.  The
 *  caller checks that the artifacts still exist.  Thread-safe; the string
 *  lives until zorch__cache_close(). */
const char *zorch__cache_lookup(zorch__cache *c, const char *key);

/** Record `outputs_json` (a JSON array text) for `key`.  Thread-safe. */
int zorch__cache_put(zorch__cache *c, const char *key, const char *outputs_json);

/** Like zorch__cache_put() for a key this handle will not be asked for again
 *  (a run records its own results): appended to the index file only, not
 *  kept in memory.  Thread-safe. */
int zorch__cache_append(zorch__cache *c, const char *key, const char *outputs_json);
/** Append the index line of an entry, '\n' included, to `out`; for
 *  zorch__cache_append_lines (a writer that collects several). */
int zorch__cache_entry_line(zorch__buf *out, const char *key, const char *outputs_json);
/** Append lines made by zorch__cache_entry_line to the index file, as
 *  zorch__cache_append does one.  Thread-safe. */
int zorch__cache_append_lines(zorch__cache *c, const char *lines, size_t len);

/** Flush and free.  NULL is a no-op. */
int zorch__cache_close(zorch__cache *c);

#endif /* ZORCH_STORE_H */
