/* zorch bench — the raw process-spawn floor: no scheduler, no records.
 *
 *   floor-spawn chain N        N `true` processes one after another
 *   floor-spawn fan N [J]      1 → N → 1 `true` processes, J (default 2) in flight
 *
 * `true` is looked up in PATH once; each step is posix_spawn + waitpid, with
 * stdin/stdout/stderr inherited.  Prints one JSON line with the wall time of
 * the spawning (the process start-up of this program is not included).
 */
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchutil.h"

extern char **environ;

static char true_path[4096];
static char *const true_argv[] = {"true", NULL};

static void find_true(void) {
  const char *path = getenv("PATH");
  if (!path || !*path) path = "/usr/bin:/bin";
  const char *p = path;
  while (*p) {
    const char *e = strchr(p, ':');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    snprintf(true_path, sizeof true_path, "%.*s/true", (int)len, p);
    if (access(true_path, X_OK) == 0) return;
    if (!e) break;
    p = e + 1;
  }
  bench_die("cannot find 'true' in PATH");
}

static pid_t spawn_true(void) {
  pid_t pid;
  int rc = posix_spawn(&pid, true_path, NULL, NULL, true_argv, environ);
  if (rc) bench_die("posix_spawn %s: %s", true_path, strerror(rc));
  return pid;
}

static void reap(pid_t pid, unsigned long *failed) {
  int st;
  pid_t r;
  do r = waitpid(pid, &st, 0); while (r < 0 && errno == EINTR);
  if (r < 0) bench_die("waitpid: %s", strerror(errno));
  if (!WIFEXITED(st) || WEXITSTATUS(st)) (*failed)++;
}

int main(int argc, char **argv) {
  if (argc < 3) bench_die("usage: floor-spawn chain N | fan N [J]");
  unsigned long n = (unsigned long)bench_parse_u64(argv[2], "N");
  find_true();
  unsigned long failed = 0, spawned = 0;
  double t0 = bench_now();
  if (!strcmp(argv[1], "chain")) {
    for (unsigned long i = 0; i < n; i++, spawned++) reap(spawn_true(), &failed);
  } else if (!strcmp(argv[1], "fan")) {
    unsigned long j = argc > 3 ? (unsigned long)bench_parse_u64(argv[3], "J") : 2;
    if (!j) j = 1;
    reap(spawn_true(), &failed);
    spawned++;
    unsigned long started = 0, running = 0;
    while (started < n || running) {
      while (started < n && running < j) {
        spawn_true();
        started++;
        running++;
        spawned++;
      }
      reap(-1, &failed);
      running--;
    }
    reap(spawn_true(), &failed);
    spawned++;
  } else {
    bench_die("unknown mode '%s'", argv[1]);
  }
  double wall = bench_now() - t0;
  printf("{\"tool\":\"floor-spawn\",\"mode\":\"%s\",\"steps\":%lu,\"failed\":%lu,\"wall_s\":%.6f}\n",
         argv[1], spawned, failed, wall);
  return failed ? 1 : 0;
}
