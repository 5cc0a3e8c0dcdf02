/* zorch — what the artifact store's own sources share: store.c (the front:
 * zorch__store_*), store_io.c (durable writes), store_tree.c (directory
 * manifests), store_local.c (the local filesystem backend) and
 * store_plugin.c (artifact-store plugins).  Nobody else includes it.
 */
#ifndef ZORCH_STORE_INT_H
#define ZORCH_STORE_INT_H

#include <sys/types.h>

#include "store.h"
#include "store_backend.h"

#define ZORCH__IO_BUF (1u << 20) /* the streaming buffer of hashing copies */

/* ---- store_io.c: durable writes ------------------------------------------------- */

/** write(2) all of it (EINTR retried); ZORCH_EIO naming `path`. */
int zorch__io_write_all(int fd, const void *data, size_t len, const char *path);
/** read(2) with EINTR retried. */
ssize_t zorch__io_read_some(int fd, void *buf, size_t len);
/** fsync a directory (to make entries created or renamed in it durable). */
int zorch__io_fsync_dir(const char *dir);
/** fsync and close `fd`; the fd is closed whatever happens. */
int zorch__io_fsync_close(int fd, const char *path);
/** The directory part of `path` ("." when there is none).  NULL on OOM. */
char *zorch__io_parent_of(const char *path);
/** mkdir one directory whose parent exists; *made tells whether it was new. */
int zorch__io_mkdir_one(const char *p, bool *made);
/** mkdir -p; with `durable`, the parent of every directory created is
 *  fsync'd so that the new entry survives a power loss. */
int zorch__io_mkdirs_durable(const char *path, bool durable);
/** A fresh name in `dir`: "<kind>-<pid>-<nonce>-<counter>[-<hint>]" (the
 *  hint cleaned to [A-Za-z0-9._-], at most 48 characters).  NULL on OOM. */
char *zorch__io_tmp_name(const char *dir, unsigned nonce, char kind, const char *hint);
/** Create a new file for writing under such a name. */
int zorch__io_tmp_create(const char *dir, unsigned nonce, char kind, char **path_out, int *fd_out);
/** Hash what `in` holds (digest NULL: only copy) and, when out >= 0, copy it
 *  to `out` in the same pass, with `buf` (ZORCH__IO_BUF bytes); writeback of each 8 MiB written
 *  starts at once. */
int zorch__io_stream_hash(int in, const char *in_path, int out, const char *out_path,
                          unsigned char *buf, char digest[ZORCH__DIGEST_HEX], uint64_t *size);
/** Copy `in` to `out` while a second thread hashes each buffer once it is
 *  written (the ring hasher).  Returns 1 (nothing done) when it cannot set
 *  up its buffers or thread: the caller then uses zorch__io_stream_hash. */
int zorch__io_copy_and_hash(int in, const char *in_path, int out, const char *out_path,
                            char digest[ZORCH__DIGEST_HEX], uint64_t *size);

/* ---- store_tree.c: directory artifacts ------------------------------------------ */

#define ZORCH__MANIFEST_HEADER "zorch-tree-v1\n"

typedef struct zorch__tree_entry {
  char *path; /* relative to the tree root */
  char kind;  /* 'd', 'f', 'l' */
  bool exec;
  char digest[ZORCH__DIGEST_HEX];
  char *target; /* symlink target */
} zorch__tree_entry;

/** A walk of a directory tree: its entries, in the order met until
 *  zorch__tree_digest sorts them. */
typedef struct zorch__tree {
  zorch__tree_entry *v;
  size_t n, cap;
  uint64_t size;        /* bytes of regular files */
  unsigned char *buf;   /* ZORCH__IO_BUF bytes for hashing */
  const char *src_root; /* for messages */
  const char *dst_root; /* copy destination (for messages), NULL when taking */
} zorch__tree;

void zorch__tree_free(zorch__tree *tw);
/** Walk the directory `sfd` (relative path `rel`, "" for the root),
 *  recording and hashing entries; copy into `dfd` when it is >= 0, else
 *  make files read-only in place.  Both fds are consumed. */
int zorch__tree_walk_dir(zorch__tree *tw, int sfd, int dfd, const char *rel);
/** Sort the entries and hash the canonical manifest into `digest`; the
 *  manifest text is appended to `manifest` when it is not NULL. */
int zorch__tree_digest(zorch__tree *tw, char digest[ZORCH__DIGEST_HEX], zorch__buf *manifest);
/** fsync every file, then seal (0555) and fsync every directory, deepest
 *  first, then the root. */
int zorch__tree_sync(zorch__tree *tw, int rootfd, const char *root);

/** One entry of a manifest: kind 'd', 'f' (with exec and digest) or 'l'
 *  (with target).  Non-zero stops the walk. */
typedef int (*zorch__manifest_cb)(void *payload, char kind, bool exec, const char *digest,
                                  const char *path, const char *target);
/** Call `cb` for every entry of manifest `text`.  ZORCH_EINVALID when it is
 *  not a manifest, or names a path that is absolute or has a "." or ".."
 *  component (a manifest read from a store is never trusted with paths). */
int zorch__manifest_each(const char *text, size_t len, zorch__manifest_cb cb, void *payload);

/* ---- store_local.c: the local filesystem store ------------------------------------ */

typedef struct zorch__local zorch__local;

/** Open (creating the directories) the local store at `root`. */
int zorch__local_open(zorch__local **out, const char *root);
void zorch__local_close(zorch__local *l);
const char *zorch__local_root(const zorch__local *l);
int zorch__local_put_bytes(zorch__local *l, const void *data, size_t len,
                           char digest[ZORCH__DIGEST_HEX]);
/** As zorch__store_put_path; a directory's manifest text is appended to
 *  `manifest` when it is not NULL. */
int zorch__local_put_path(zorch__local *l, const char *path, bool take,
                          char digest[ZORCH__DIGEST_HEX], uint64_t *size, bool *is_dir,
                          zorch__buf *manifest);
int zorch__local_scratch(zorch__local *l, const char *hint, char **path_out);
char *zorch__local_artifact_path(const zorch__local *l, const char *digest);
bool zorch__local_has(const zorch__local *l, const char *digest);
/** Atomically publish a small document at root/key (see store.h). */
int zorch__local_write_doc(zorch__local *l, const char *key, const void *data, size_t len,
                           bool durable);
int zorch__local_read_doc(const zorch__local *l, const char *key, char **data, size_t *len);

/** The local store as a backend: `impl` is its zorch__local. */
extern const zorch__store_backend zorch__local_backend;

/* ---- store_plugin.c: artifact-store plugins ----------------------------------------- */

struct zorch__flavor;
/** Open a plugin's store from a component config, or (uri != NULL) from a
 *  URI.  *impl is for zorch__plugin_backend.  The plugin's flavor must
 *  stay registered (its client alive) until the backend is closed. */
int zorch__plugin_store_open(void **impl, const struct zorch__flavor *f, const char *config_json,
                             const char *uri);
extern const zorch__store_backend zorch__plugin_backend;

#endif /* ZORCH_STORE_INT_H */
