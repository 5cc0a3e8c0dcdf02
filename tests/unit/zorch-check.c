/* zorch — helpers shared by the Check test suites. */
#define _GNU_SOURCE 1
#include "zorch-check.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int zt_run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_ENV);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static char **tmpdirs;
static size_t ntmp;

static void cleanup(void) {
  if (getenv("ZORCH_TEST_KEEP")) return;
  for (size_t i = 0; i < ntmp; i++) {
    char *argv[] = {"rm", "-rf", tmpdirs[i], NULL};
    pid_t pid;
    if (posix_spawnp(&pid, "rm", NULL, NULL, argv, environ) == 0) waitpid(pid, NULL, 0);
    free(tmpdirs[i]);
  }
  free(tmpdirs);
  tmpdirs = NULL;
  ntmp = 0;
}

const char *zt_tmpdir(void) {
  const char *base = getenv("TMPDIR");
  char *t = NULL;
  if (asprintf(&t, "%s/zorch-test-XXXXXX", base && *base ? base : "/tmp") < 0) abort();
  if (!mkdtemp(t)) {
    perror("mkdtemp");
    abort();
  }
  if (ntmp == 0) atexit(cleanup);
  tmpdirs = realloc(tmpdirs, (ntmp + 1) * sizeof *tmpdirs);
  tmpdirs[ntmp++] = t;
  return t;
}

int zt_run(char **out, const char *const *argv, const char *const *extra_env) {
  char path[] = "/tmp/zorch-test-out-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) abort();
  unlink(path);
  size_t n = 0;
  while (environ[n]) n++;
  size_t m = 0;
  while (extra_env && extra_env[m]) m++;
  char **env = calloc(n + m + 1, sizeof *env);
  size_t k = 0;
  for (size_t i = 0; i < m; i++) env[k++] = (char *)extra_env[i];
  for (size_t i = 0; i < n; i++) {
    int shadowed = 0;
    for (size_t j = 0; j < m; j++) {
      size_t l = strcspn(extra_env[j], "=");
      if (!strncmp(environ[i], extra_env[j], l) && environ[i][l] == '=') shadowed = 1;
    }
    if (!shadowed) env[k++] = environ[i];
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fd, 1);
  posix_spawn_file_actions_adddup2(&fa, fd, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, env);
  posix_spawn_file_actions_destroy(&fa);
  free(env);
  int status = 127;
  if (rc == 0) {
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  if (out) {
    off_t len = lseek(fd, 0, SEEK_END);
    *out = calloc(1, (size_t)len + 1);
    pread(fd, *out, (size_t)len, 0);
  }
  close(fd);
  return status;
}

char *zt_build_path(const char *rel) {
  char *p = NULL;
  const char *b = getenv("ZORCH_TEST_BUILDDIR");
  if (asprintf(&p, "%s/%s", b ? b : ".", rel) < 0) abort();
  return p;
}

char *zt_src_path(const char *rel) {
  char *p = NULL;
  const char *b = getenv("ZORCH_TEST_SRCDIR");
  if (asprintf(&p, "%s/%s", b ? b : ".", rel) < 0) abort();
  return p;
}

pid_t zt_fixture_start(const char *dir, const char *name, const char *cert, const char *key, char *base, size_t n) {
  char portfile[1024];
  snprintf(portfile, sizeof portfile, "%s/port-%s", dir, name);
  char *fixture = zt_src_path("tests/unit/http-fixture.py");
  pid_t pid = fork();
  if (pid == 0) {
    if (cert) execl("/usr/bin/python3", "python3", fixture, portfile, cert, key, (char *)NULL);
    else execl("/usr/bin/python3", "python3", fixture, portfile, (char *)NULL);
    _exit(127);
  }
  free(fixture);
  for (int i = 0; i < 400; i++) {
    FILE *f = fopen(portfile, "r");
    int port = 0;
    if (f) {
      if (fscanf(f, "%d", &port) != 1) port = 0;
      fclose(f);
    }
    if (port) {
      snprintf(base, n, "%s://127.0.0.1:%d", cert ? "https" : "http", port);
      return pid;
    }
    usleep(25000);
  }
  fprintf(stderr, "the HTTP fixture server did not start\n");
  exit(1);
}

void zt_fixture_stop(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
}

void zt_make_cert(const char *dir) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
           "-addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem 2>/dev/null",
           dir, dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "openssl could not make a certificate\n");
    exit(1);
  }
}
