/* zorch — the artifact store's backend interface.
 *
 * libzorch's store code (zorch__store_* in store.c) reaches every store
 * through this table.  Two kinds of backend implement it: the local
 * filesystem store (store_local.c, built in) and artifact-store plugins
 * (store_plugin.c adapts a plugin's zorch_artifact_store_ops to it).
 *
 * Keys are relative, '/'-separated, and made by store_layout.c only.  The
 * contract of every backend:
 *   - a put is atomic: a reader sees the whole object or none, never part
 *     of one (temporary + fsync + rename on a filesystem, one PUT on an
 *     object store);
 *   - ZORCH_STORE_PUT_IF_ABSENT (content-addressed keys): an object that
 *     exists is left as it is and the put succeeds;
 *   - a missing object is ZORCH_ENOTFOUND, for every operation that reads;
 *   - every operation may be called from several threads at once.
 *
 * The local backend says so with ZORCH__BACKEND_LOCAL_FILES: its objects are
 * files under one directory.  The front then takes the local fast paths:
 * an artifact is published in place (no upload), a run's step records go to
 * its append-only journal with group commit, the cache index is one
 * append-only file, and steps elsewhere reach the store by its path.  For
 * any other backend the front stages artifacts in a local store of its own
 * (a cache: see store.c), uploads them with PUT_IF_ABSENT, and writes one
 * record object per step (an object cannot be appended to).
 */
#ifndef ZORCH_STORE_BACKEND_H
#define ZORCH_STORE_BACKEND_H

#include "internal.h"
#include "zorch/plugin.h" /* zorch_store_sink, zorch_store_each, ZORCH_STORE_PUT_IF_ABSENT */

enum {
  /** Objects are files under the directory zorch__store_local_root() names. */
  ZORCH__BACKEND_LOCAL_FILES = 1u << 0
};

typedef struct zorch__store_backend {
  const char *name;  /* "local", or "plugin" */
  uint32_t flags;    /* ZORCH__BACKEND_* */
  /** Store the local file at `path` under `key` (flags: ZORCH_STORE_PUT_*). */
  int (*put_file)(void *impl, const char *key, const char *path, uint32_t flags);
  int (*put_bytes)(void *impl, const char *key, const void *data, size_t len, uint32_t flags);
  /** Write the object to a new local file at `path`, whole or not at all. */
  int (*get_to_path)(void *impl, const char *key, const char *path);
  /** Read the object in chunks, in order. */
  int (*get_stream)(void *impl, const char *key, zorch_store_sink sink, void *sink_data);
  /** 1 when the object exists, 0 when not, a negative code on error. */
  int (*exists)(void *impl, const char *key);
  /** A small document, whole; *data NUL-terminated, free with free(). */
  int (*read_doc)(void *impl, const char *key, char **data, size_t *len);
  /** Publish a small document atomically.  durable=false may skip what
   *  makes it survive a power cut (never what makes it atomic). */
  int (*write_doc)(void *impl, const char *key, const void *data, size_t len, bool durable);
  /** The keys that start with `prefix`, in no particular order.  With
   *  delimiter "/": only the keys with no further '/' after the prefix,
   *  plus every deeper level once, as its prefix ending in '/' (size 0). */
  int (*list)(void *impl, const char *prefix, const char *delimiter, zorch_store_each each,
              void *each_data);
  /** Delete one object; ZORCH_OK when it was not there. */
  int (*remove)(void *impl, const char *key);
  /** The store's URI ("file:///abs/dir", "s3://bucket/prefix"); malloc'd. */
  int (*uri)(void *impl, char **out);
  /** What a step elsewhere needs to reach the store, as a JSON object of
   *  environment variables (never a secret); malloc'd. */
  int (*step_env)(void *impl, char **out_json);
  /** Where the store and its credentials come from, as a JSON object;
   *  malloc'd. */
  int (*describe)(void *impl, char **out_json);
  void (*close)(void *impl);
} zorch__store_backend;

#endif /* ZORCH_STORE_BACKEND_H */
