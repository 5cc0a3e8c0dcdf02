/* zorch — the artifact store (zorch__store_*), the journal and the cache index.
 *
 * A store is reached through a backend (store_backend.h): the local
 * filesystem store, built in, or an artifact-store plugin.  Its keys are
 * made by store_layout.h.  What every backend guarantees: a reader never
 * sees half of an artifact or a document, including after kill -9 or a
 * power loss (temporary file, fsync, rename on a filesystem; one PUT on an
 * object store), and an artifact is stored before anything names it.
 *
 * Artifacts are content-addressed (SHA-256).  Steps read and write them as
 * local files: on a local store these are the store's own files; for any
 * other backend the store keeps a local staging store (a cache under the
 * client's home, also content-addressed) where outputs are published before
 * they are uploaded and inputs are downloaded before they are read.
 *
 * Thread-safety: every function may be called from several threads at
 * once on one store, except open and close.
 */
#ifndef ZORCH_STORE_H
#define ZORCH_STORE_H

#include "internal.h"

typedef struct zorch__store zorch__store;
struct zorch_client;
struct zorch__journal;

/** Open (creating the directories) the local store at `root`. */
int zorch__store_open(zorch__store **out, const char *root);
/** Open the store a URI names: "file:///abs/dir" (or an absolute path) is
 *  the local store there; "<scheme>://..." a store of the artifact-store
 *  flavor named <scheme>, loaded through the client's registry (`client`
 *  may be NULL for a local store only).  The client must outlive the store. */
int zorch__store_open_uri(zorch__store **out, struct zorch_client *client, const char *uri);
/** Open an artifact-store component: flavor "local" with config {"path"},
 *  or a plugin flavor with its config (already validated).  `name` is the
 *  component's name, for messages.  The client must outlive the store. */
int zorch__store_open_component(zorch__store **out, struct zorch_client *client, const char *name,
                                const char *flavor, const char *config_json);
void zorch__store_close(zorch__store *st);

/** The root directory of a local store; NULL for other backends. */
const char *zorch__store_root(const zorch__store *st);
/** Where the store's local files are: the root of a local store, else its
 *  staging directory (logs of steps that run here, scratch, downloads). */
const char *zorch__store_local_root(const zorch__store *st);
/** Is it the local filesystem store (records in journals, steps elsewhere
 *  reach it by its path)? */
bool zorch__store_is_local(const zorch__store *st);
/** The store's URI ("file:///abs/dir", "s3://bucket/prefix").  Borrowed. */
const char *zorch__store_uri(const zorch__store *st);
/** What a step elsewhere needs to reach the store: "K=V" strings,
 *  NULL-terminated (empty for a local store), and the same as a JSON
 *  object.  Borrowed. */
const char *const *zorch__store_step_env(const zorch__store *st);
const char *zorch__store_step_env_json(const zorch__store *st);

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

/** A fresh, not yet existing local path for a step to create a file or
 *  directory in (on the same filesystem as the store's local files).
 *  `hint` (may be NULL) is put in the name.  Free with free(). */
int zorch__store_scratch(zorch__store *st, const char *hint, char **path_out);

/** The local path of an artifact (it may not exist, nor be downloaded yet:
 *  see zorch__store_fetch).  NULL on OOM.  Free with free(). */
char *zorch__store_artifact_path(const zorch__store *st, const char *digest);

/** The local path of an artifact, downloaded first when the store is not
 *  local and the staging store lacks it (a file, or with is_dir a tree):
 *  ZORCH_ENOTFOUND when the store has no such artifact.  On a local store
 *  the path is returned without a look (this is on every step's way to its
 *  inputs): opening it fails when the artifact is missing. */
int zorch__store_fetch(zorch__store *st, const char *digest, bool is_dir, char **path_out);

/** Does the artifact exist? */
bool zorch__store_has(const zorch__store *st, const char *digest);

/* ---- documents and keys ---- */

/** Atomically publish a small document at `key` (a store_layout key).
 *  durable=false may skip the fsyncs of a local store (still atomic for
 *  readers). */
int zorch__store_write_doc(zorch__store *st, const char *key, const void *data, size_t len,
                           bool durable);

/** Read the document at `key` whole; ZORCH_ENOTFOUND if missing.  Free with free(). */
int zorch__store_read_doc(const zorch__store *st, const char *key, char **data, size_t *len);

/** Store the local file at `path` under `key` (a step's log). */
int zorch__store_put_file(zorch__store *st, const char *key, const char *path);

/** 1 when an object is at `key`, 0 when not, a negative code on error. */
int zorch__store_exists(const zorch__store *st, const char *key);

/** Delete the object at `key`; ZORCH_OK when there is none. */
int zorch__store_remove(zorch__store *st, const char *key);

/** Every key under `prefix`; with delimiter "/" one level only, deeper
 *  levels once as their prefix ending in '/'.  `each` returns non-zero to
 *  stop, and that is returned. */
int zorch__store_list(const zorch__store *st, const char *prefix, const char *delimiter,
                      int (*each)(void *payload, const char *key, uint64_t size), void *payload);

/* ---- run records ---- */

/** Open the sink of a run's step records: on a local store its journal
 *  (runs/<id>/journal.jsonl, group commit, `durable` as for
 *  zorch__journal_open); on another backend a journal of the same interface
 *  whose committer writes every line as that step's record object
 *  (runs/<id>/steps/<step>.json), after the step's log (when this host
 *  kept one) is stored at runs/<id>/logs/<step>.log. */
int zorch__store_records_open(struct zorch__journal **out, zorch__store *st, const char *run_id,
                              bool durable);

/** Call `cb` with every step record of a run: the journal's lines in order
 *  (a torn last line ignored), then each step record object.  ZORCH_OK when
 *  the run has none. */
int zorch__store_step_records(const zorch__store *st, const char *run_id,
                              int (*cb)(const char *line, size_t len, void *payload), void *payload);

/* ---- journal: an append-only file of JSON lines with group commit ---- */

typedef struct zorch__journal zorch__journal;

/** Open (create or append to) the journal at `path`.  Appends are collected
 *  and written by a background committer: one write(2) covers every line
 *  appended since the previous batch (at most one batch per 5 ms, per
 *  50 ms when not durable); when durable, one fdatasync(2) per 50 ms covers
 *  every line written since the previous one (see journal.c). */
int zorch__journal_open(zorch__journal **out, const char *path, bool durable);

/** A journal with the same interface and group commit whose committer hands
 *  each line of a batch (without its '\n') to `sink` instead of a file
 *  (on its own thread; an error is sticky as a failed write).  `name` is for
 *  messages.  The journal owns `data`: free_data(data) at close (or at once
 *  when the open fails); free_data may be NULL. */
int zorch__journal_open_sink(zorch__journal **out, const char *name,
                             int (*sink)(void *data, const char *line, size_t len), void *data,
                             void (*free_data)(void *data));

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

/** Open the cache index of `pipeline`: on a local store the file
 *  cache/<pipeline>.jsonl, loaded into memory and opened for appending; on
 *  another backend one object per entry (cache/<pipeline>/<key>.json):
 *  the keys are listed once, an entry is read when first looked up, and
 *  new entries are written by a journal sink. */
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
