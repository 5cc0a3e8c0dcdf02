/* zorch CLI — run list / show / logs: reading runs back from the store. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_unix(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Duration of something that started at `a` and finished at `b` (0: not yet). */
static void span(char *out, size_t n, double a, double b, int status) {
  if (a <= 0) {
    snprintf(out, n, "-");
  } else if (b >= a) {
    cli_format_duration(out, n, b - a);
  } else if (status == ZORCH_STATUS_RUNNING || status == ZORCH_STATUS_RETRYING) {
    char d[24];
    cli_format_duration(d, sizeof d, now_unix() - a);
    snprintf(out, n, "%s+", d); /* still going */
  } else {
    snprintf(out, n, "-");
  }
}

int cmd_run_list(const cli_cmd *cmd, int argc, char **argv) {
  static const cli_opt opts[] = {{"pipeline", 'p', true}, {NULL, 0, false}};
  const char *pipeline = NULL;
  cli_parser p;
  cli_parser_init(&p, cmd, opts, argc, argv);
  int r;
  const char *v;
  while ((r = cli_getopt(&p, &v)) != CLI_OPT_END) {
    if (r == 0) pipeline = v;
    else if (r == CLI_OPT_POSITIONAL) return cli_usage_error(cmd, "unexpected argument '%s'", v);
    else return cli_opt_exit(cmd, r);
  }
  zorch_client *c = cli_client_open(true);
  if (!c) return CLI_EXIT_FAILED;
  zorch_run_list *list = NULL;
  int rc = CLI_EXIT_OK;
  if (zorch_run_list_load(&list, c, pipeline)) {
    rc = cli_lib_error();
  } else if (zorch_run_list_count(list) == 0) {
    if (pipeline) printf("No runs of pipeline '%s'.\n", pipeline);
    else printf("No runs.\n");
  } else {
    static const char *const head[] = {"RUN ID", "NAME", "PIPELINE", "STATUS", "STARTED",
                                       "DURATION"};
    cli_table *t = cli_table_new(6, head);
    for (size_t i = 0; i < zorch_run_list_count(list); i++) {
      int st = zorch_run_list_status(list, i);
      char started[32], dur[32];
      double a = zorch_run_list_started_at(list, i);
      cli_format_time(started, sizeof started, a);
      span(dur, sizeof dur, a, zorch_run_list_finished_at(list, i), st);
      const char *row[] = {zorch_run_list_id(list, i), zorch_run_list_name(list, i),
                           zorch_run_list_pipeline(list, i), zorch_status_name(st), started, dur};
      const char *colors[] = {NULL, NULL, NULL, cli_status_color(st), NULL, NULL};
      cli_table_row_colored(t, row, colors);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
  }
  zorch_run_list_free(list);
  zorch_client_free(c);
  return rc;
}

/* "name=0123456789ab (12 B), ..." */
static char *outputs_cell(const zorch_run *run, size_t step) {
  size_t n = zorch_run_step_output_count(run, step);
  size_t cap = 64 + n * 128, len = 0;
  char *s = malloc(cap);
  if (!s) abort();
  s[0] = '\0';
  for (size_t o = 0; o < n; o++) {
    char size[32];
    cli_format_size(size, sizeof size, zorch_run_step_output_size(run, step, o));
    const char *digest = zorch_run_step_output_digest(run, step, o);
    const char *kind = zorch_run_step_output_kind(run, step, o);
    int w = snprintf(s + len, cap - len, "%s%.63s=%.12s (%s%s)", o ? ", " : "",
                     zorch_run_step_output_name(run, step, o), digest ? digest : "?", size,
                     kind && !strcmp(kind, "dir") ? ", dir" : "");
    if (w > 0) len += (size_t)w < cap - len ? (size_t)w : cap - len - 1;
  }
  return s;
}

int cmd_run_show(const cli_cmd *cmd, int argc, char **argv) {
  const char *id;
  int r = cli_positional(cmd, argc, argv, 1, 1, &id);
  if (r >= 0) return r;
  zorch_client *c = cli_client_open(true);
  if (!c) return CLI_EXIT_FAILED;
  zorch_run *run = NULL;
  if (zorch_run_open(&run, c, id)) {
    int rc = cli_lib_error();
    zorch_client_free(c);
    return rc;
  }
  int st = zorch_run_status(run);
  double a = zorch_run_started_at(run), b = zorch_run_finished_at(run);
  char started[32], finished[32], dur[32];
  cli_format_time(started, sizeof started, a);
  cli_format_time(finished, sizeof finished, b);
  span(dur, sizeof dur, a, b, st);
  char status[64];
  snprintf(status, sizeof status, "%s%s%s", cli_status_color(st), zorch_status_name(st),
           cli_color_reset());
  const char *stack = zorch_run_stack(run);
  const char *fields[][2] = {
      {"Run", zorch_run_name(run)},
      {"ID", zorch_run_id(run)},
      {"Pipeline", zorch_run_pipeline_name(run)},
      {"Stack", stack ? stack : "-"},
      {"Status", status},
      {"Started", started},
      {"Finished", finished},
      {"Duration", dur},
      {"Orchestrator", zorch_run_metadata(run, "orchestrator")},
      {"Orchestrator run id", zorch_run_metadata(run, "orchestrator_run_id")},
      {"Orchestrator URL", zorch_run_metadata(run, "orchestrator_url")},
  };
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
    if (fields[i][1]) {
      char label[32];
      snprintf(label, sizeof label, "%s:", fields[i][0]);
      printf("%-21s%s\n", label, fields[i][1]);
    }
  static const char *const head[] = {"STEP", "STATUS", "ATTEMPTS", "DURATION", "EXIT", "OUTPUTS"};
  cli_table *t = cli_table_new(6, head);
  size_t n = zorch_run_step_count(run);
  for (size_t i = 0; i < n; i++) {
    int ss = zorch_run_step_status(run, i);
    char attempts[16], sdur[32], exitc[16];
    snprintf(attempts, sizeof attempts, "%u", zorch_run_step_attempts(run, i));
    if (ss == ZORCH_STATUS_CACHED) snprintf(sdur, sizeof sdur, "-"); /* it did not run */
    else
      span(sdur, sizeof sdur, zorch_run_step_started_at(run, i),
           zorch_run_step_finished_at(run, i), ss);
    int ec = zorch_run_step_exit_code(run, i);
    if (ec >= 0) snprintf(exitc, sizeof exitc, "%d", ec);
    else snprintf(exitc, sizeof exitc, "-");
    char *outs = outputs_cell(run, i);
    const char *row[] = {zorch_run_step_name(run, i), zorch_status_name(ss), attempts, sdur, exitc,
                         outs};
    const char *colors[] = {NULL, cli_status_color(ss), NULL, NULL, NULL, NULL};
    cli_table_row_colored(t, row, colors);
    free(outs);
  }
  putchar('\n');
  cli_table_print(t, stdout);
  cli_table_free(t);
  bool first = true;
  for (size_t i = 0; i < n; i++) {
    const char *err = zorch_run_step_error(run, i);
    if (!err) continue;
    if (first) putchar('\n');
    first = false;
    printf("%s: %s\n", zorch_run_step_name(run, i), err);
  }
  zorch_run_free(run);
  zorch_client_free(c);
  return CLI_EXIT_OK;
}

int cmd_run_logs(const cli_cmd *cmd, int argc, char **argv) {
  const char *args[2];
  int r = cli_positional(cmd, argc, argv, 1, 2, args);
  if (r >= 0) return r;
  zorch_client *c = cli_client_open(true);
  if (!c) return CLI_EXIT_FAILED;
  zorch_run *run = NULL;
  int rc = CLI_EXIT_OK;
  if (zorch_run_open(&run, c, args[0])) {
    rc = cli_lib_error();
  } else if (args[1]) {
    size_t idx;
    char *text = NULL;
    size_t size = 0;
    if (zorch_run_step_index(run, args[1], &idx) || zorch_run_read_log(&text, &size, run, args[1])) {
      rc = cli_lib_error();
    } else {
      fwrite(text, 1, size, stdout);
    }
    zorch_free(text);
  } else {
    size_t n = zorch_run_step_count(run);
    for (size_t i = 0; i < n; i++) {
      const char *step = zorch_run_step_name(run, i);
      int st = zorch_run_step_status(run, i);
      printf("%s%s==> %s (%s) <==%s\n", i ? "\n" : "", cli_color_bold(), step,
             zorch_status_name(st), cli_color_reset());
      char *text = NULL;
      size_t size = 0;
      if (zorch_run_read_log(&text, &size, run, step)) {
        fflush(stdout);
        rc = cli_lib_error();
      } else if (size == 0) {
        printf("%s(no output)%s\n", cli_color_dim(), cli_color_reset());
      } else {
        fwrite(text, 1, size, stdout);
        if (text[size - 1] != '\n') putchar('\n');
      }
      zorch_free(text);
    }
  }
  zorch_run_free(run);
  zorch_client_free(c);
  return rc;
}
