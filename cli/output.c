/* zorch CLI — output: tables, times, colours, the live status line, files. */
#include "cli.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* ---- terminal and colours ------------------------------------------------------ */

bool cli_stdout_is_tty(void) {
  static int tty = -1;
  if (tty < 0) tty = isatty(STDOUT_FILENO) ? 1 : 0;
  return tty == 1;
}

bool cli_color(void) {
  static int color = -1;
  if (color < 0) {
    const char *term = getenv("TERM");
    const char *no = getenv("NO_COLOR");
    color = cli_stdout_is_tty() && !(no && *no) && !(term && !strcmp(term, "dumb"));
  }
  return color == 1;
}

const char *cli_status_color(int status) {
  if (!cli_color()) return "";
  switch (status) {
  case ZORCH_STATUS_COMPLETED: return "\033[32m";
  case ZORCH_STATUS_CACHED: return "\033[36m";
  case ZORCH_STATUS_FAILED: return "\033[31m";
  case ZORCH_STATUS_RUNNING:
  case ZORCH_STATUS_RETRYING: return "\033[33m";
  case ZORCH_STATUS_STOPPED: return "\033[35m";
  default: return "\033[2m";
  }
}

const char *cli_color_reset(void) { return cli_color() ? "\033[0m" : ""; }
const char *cli_color_bold(void) { return cli_color() ? "\033[1m" : ""; }
const char *cli_color_dim(void) { return cli_color() ? "\033[2m" : ""; }

int cli_term_width(void) {
  struct winsize ws;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10) return ws.ws_col;
  return 80;
}

/* ---- formatting ---------------------------------------------------------------------- */

void cli_format_time(char *out, size_t n, double t) {
  if (t <= 0) {
    snprintf(out, n, "-");
    return;
  }
  time_t s = (time_t)t;
  struct tm tm;
  localtime_r(&s, &tm);
  strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm);
}

void cli_format_duration(char *out, size_t n, double d) {
  if (!(d >= 0)) snprintf(out, n, "-");
  else if (d < 10) snprintf(out, n, "%.2fs", d);
  else if (d < 60) snprintf(out, n, "%.1fs", d);
  else if (d < 3600) snprintf(out, n, "%dm%02ds", (int)(d / 60), (int)d % 60);
  else snprintf(out, n, "%dh%02dm", (int)(d / 3600), (int)(d / 60) % 60);
}

void cli_format_size(char *out, size_t n, uint64_t b) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (b < 1024) {
    snprintf(out, n, "%llu B", (unsigned long long)b);
    return;
  }
  double v = (double)b;
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  snprintf(out, n, "%.1f %s", v, units[u]);
}

/* ---- tables ---------------------------------------------------------------------------------- */

struct cli_table {
  size_t ncols, rows, cap; /* rows counts the header, row 0 */
  char **cells;            /* rows * ncols */
  const char **colors;     /* same shape; NULL: no colour */
  size_t *width;
};

/* Display width of UTF-8 text: code points, not bytes. */
static size_t text_width(const char *s) {
  size_t w = 0;
  for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
  return w;
}

cli_table *cli_table_new(size_t ncols, const char *const *headers) {
  cli_table *t = calloc(1, sizeof *t);
  if (!t || !(t->width = calloc(ncols, sizeof *t->width))) abort();
  t->ncols = ncols;
  cli_table_row(t, headers);
  return t;
}

void cli_table_row_colored(cli_table *t, const char *const *cells, const char *const *colors) {
  if (t->rows == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 8;
    t->cells = realloc(t->cells, t->cap * t->ncols * sizeof *t->cells);
    t->colors = realloc(t->colors, t->cap * t->ncols * sizeof *t->colors);
    if (!t->cells || !t->colors) abort();
  }
  for (size_t c = 0; c < t->ncols; c++) {
    char *d = strdup(cells[c] ? cells[c] : "");
    if (!d) abort();
    /* a cell is one line: newlines and tabs would break the columns */
    for (char *x = d; *x; x++)
      if (*x == '\n' || *x == '\r' || *x == '\t') *x = ' ';
    t->cells[t->rows * t->ncols + c] = d;
    t->colors[t->rows * t->ncols + c] = colors && colors[c] && *colors[c] ? colors[c] : NULL;
    size_t w = text_width(d);
    if (w > t->width[c]) t->width[c] = w;
  }
  t->rows++;
}

void cli_table_row(cli_table *t, const char *const *cells) {
  cli_table_row_colored(t, cells, NULL);
}

void cli_table_print(cli_table *t, FILE *f) {
  for (size_t r = 0; r < t->rows; r++) {
    size_t end = t->ncols; /* no padding after the last non-empty cell */
    while (end > 1 && !t->cells[r * t->ncols + end - 1][0]) end--;
    for (size_t c = 0; c < end; c++) {
      const char *v = t->cells[r * t->ncols + c];
      const char *color = r == 0 ? cli_color_bold() : t->colors[r * t->ncols + c];
      bool colored = color && *color;
      if (colored) fputs(color, f);
      fputs(v, f);
      if (colored) fputs(cli_color_reset(), f);
      if (c + 1 < end)
        for (size_t pad = text_width(v); pad < t->width[c] + 2; pad++) fputc(' ', f);
    }
    fputc('\n', f);
  }
}

void cli_table_free(cli_table *t) {
  if (!t) return;
  for (size_t i = 0; i < t->rows * t->ncols; i++) free(t->cells[i]);
  free(t->cells);
  free(t->colors);
  free(t->width);
  free(t);
}

/* ---- the status line ------------------------------------------------------------------------- */

/* Progress callbacks come from an executor thread and log messages from any
 * thread; this lock keeps their output whole and the status line last. */
static pthread_mutex_t term_lock = PTHREAD_MUTEX_INITIALIZER;
static char status_line[1024];
static bool status_shown;

static void status_draw(void) {
  fputs("\r\033[K", stdout);
  fputs(status_line, stdout);
  fflush(stdout);
}

static void status_erase(void) {
  fputs("\r\033[K", stdout);
  fflush(stdout);
}

void cli_status_set(const char *line) {
  pthread_mutex_lock(&term_lock);
  snprintf(status_line, sizeof status_line, "%s", line);
  status_shown = true;
  status_draw();
  pthread_mutex_unlock(&term_lock);
}

void cli_status_clear(void) {
  pthread_mutex_lock(&term_lock);
  if (status_shown) status_erase();
  status_shown = false;
  pthread_mutex_unlock(&term_lock);
}

void cli_println(FILE *f, const char *fmt, ...) {
  pthread_mutex_lock(&term_lock);
  if (status_shown) status_erase();
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
  }
  fputc('\n', f);
  fflush(f);
  if (status_shown) status_draw();
  pthread_mutex_unlock(&term_lock);
}

/* ---- JSON and files ---------------------------------------------------------------------------- */

json_t *cli_parse_json(const char *text) {
  json_error_t err;
  json_t *v = text ? json_loads(text, JSON_DECODE_ANY, &err) : NULL;
  if (!v) cli_error("zorch returned JSON the CLI cannot read: %s", text ? err.text : "(null)");
  return v;
}

char *cli_json_compact(const json_t *v) {
  if (!v) return strdup("");
  char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
  return s ? s : strdup("");
}

const char *cli_json_str(const json_t *obj, const char *key, const char *dflt) {
  const char *s = json_string_value(json_object_get(obj, key));
  return s ? s : dflt;
}

char *cli_read_file(const char *path) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) {
    cli_error("cannot open '%s': %s", path, strerror(errno));
    return NULL;
  }
  size_t len = 0, cap = 8192;
  char *buf = malloc(cap);
  if (!buf) abort();
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      if (!buf) abort();
    }
    size_t r = fread(buf + len, 1, cap - len - 1, f);
    len += r;
    if (r == 0) break;
  }
  bool bad = ferror(f);
  int err = errno;
  if (f != stdin) fclose(f);
  if (bad) {
    free(buf);
    cli_error("cannot read '%s': %s", path, strerror(err));
    return NULL;
  }
  buf[len] = '\0';
  if (strlen(buf) != len) {
    free(buf);
    cli_error("'%s' contains a NUL byte; a pipeline spec is JSON text", path);
    return NULL;
  }
  return buf;
}

/* The table of a finished run's steps and its one-line verdict. */
void cli_print_run_summary(const zorch_run *run) {
  size_t n = zorch_run_step_count(run);
  size_t count[8] = {0};
  static const char *const head[] = {"STEP", "STATUS", "ATTEMPTS", "DURATION", "EXIT"};
  cli_table *t = cli_table_new(5, head);
  for (size_t i = 0; i < n; i++) {
    int st = zorch_run_step_status(run, i);
    if (st >= 0 && st < 8) count[st]++;
    char attempts[16], dur[32], exitc[16];
    snprintf(attempts, sizeof attempts, "%u", zorch_run_step_attempts(run, i));
    double a = zorch_run_step_started_at(run, i), b = zorch_run_step_finished_at(run, i);
    cli_format_duration(dur, sizeof dur, a > 0 && b >= a && st != ZORCH_STATUS_CACHED ? b - a : -1);
    int ec = zorch_run_step_exit_code(run, i);
    if (ec >= 0) snprintf(exitc, sizeof exitc, "%d", ec);
    else snprintf(exitc, sizeof exitc, "-");
    const char *row[] = {zorch_run_step_name(run, i), zorch_status_name(st), attempts, dur,
                         exitc};
    const char *colors[] = {NULL, cli_status_color(st), NULL, NULL, NULL};
    cli_table_row_colored(t, row, colors);
  }
  putchar('\n');
  cli_table_print(t, stdout);
  cli_table_free(t);
  for (size_t i = 0; i < n; i++) {
    const char *err = zorch_run_step_error(run, i);
    int st = zorch_run_step_status(run, i);
    /* why failed steps failed is the run's error message, printed last */
    if (err && (st == ZORCH_STATUS_SKIPPED || st == ZORCH_STATUS_STOPPED))
      printf("%s: %s\n", zorch_run_step_name(run, i), err);
  }
  int status = zorch_run_status(run);
  char dur[32];
  double a = zorch_run_started_at(run), b = zorch_run_finished_at(run);
  cli_format_duration(dur, sizeof dur, a > 0 && b >= a ? b - a : -1);
  printf("\nRun '%s' %s%s%s in %s: %zu step%s", zorch_run_name(run), cli_status_color(status),
         zorch_status_name(status), cli_color_reset(), dur, n, n == 1 ? "" : "s");
  static const int order[] = {ZORCH_STATUS_COMPLETED, ZORCH_STATUS_CACHED, ZORCH_STATUS_FAILED,
                              ZORCH_STATUS_SKIPPED,   ZORCH_STATUS_STOPPED, ZORCH_STATUS_PENDING};
  for (size_t k = 0; k < sizeof order / sizeof *order; k++)
    if (count[order[k]]) printf(", %zu %s", count[order[k]], zorch_status_name(order[k]));
  printf(".\n");
  const char *url = zorch_run_metadata(run, "orchestrator_url");
  if (url) printf("Orchestrator URL: %s\n", url);
}
