/* zorch CLI — what the command files share. */
#ifndef ZORCH_CLI_H
#define ZORCH_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>
#include <zorch/zorch.h>

/* Exit statuses of the zorch command. */
enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_FAILED = 1,   /* a library error, or the run failed */
  CLI_EXIT_USAGE = 2,    /* unknown command or option, missing argument */
  CLI_EXIT_STOPPED = 130 /* the run was stopped (Ctrl-C) */
};

typedef struct cli_cmd cli_cmd;
typedef int (*cli_fn)(const cli_cmd *cmd, int argc, char **argv);

/** One command of the table in zorch.c. */
struct cli_cmd {
  const char *path;    /**< words after "zorch", e.g. "stack register" */
  const char *args;    /**< synopsis after the path */
  const char *summary; /**< one line */
  const char *help;    /**< options and details, or NULL */
  cli_fn fn;
  const char *type;    /**< component type for the component commands */
};

/* ---- argument parsing (zorch.c) ------------------------------------------ */

typedef struct cli_opt {
  const char *name;   /**< long name without "--" */
  char short_name;    /**< 0: none */
  bool arg;           /**< takes a value */
} cli_opt;

typedef struct cli_parser {
  const cli_cmd *cmd;
  const cli_opt *opts; /**< terminated by {NULL, 0, false} */
  int argc;
  char **argv;
  int i;
  bool only_positional;
} cli_parser;

enum { CLI_OPT_END = -1, CLI_OPT_POSITIONAL = -2, CLI_OPT_ERROR = -3, CLI_OPT_HELP = -4 };

void cli_parser_init(cli_parser *p, const cli_cmd *cmd, const cli_opt *opts, int argc,
                     char **argv);
/** The next option: its index in opts (its value in *val when it takes one),
 *  CLI_OPT_POSITIONAL (the word in *val), CLI_OPT_END, CLI_OPT_HELP (-h,
 *  --help) or CLI_OPT_ERROR (the usage error was printed). */
int cli_getopt(cli_parser *p, const char **val);

/** Standard handling of the non-option results inside a command's loop:
 *  prints the help for CLI_OPT_HELP.  Returns the exit status to return. */
int cli_opt_exit(const cli_cmd *cmd, int r);

/** Print "zorch: <message>" and the command's usage to stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli_cmd *cmd, const char *fmt, ...) ZORCH_PRINTF(2, 3);
void cli_print_help(const cli_cmd *cmd, FILE *f);

/* ---- errors and the client (zorch.c) --------------------------------------- */

/** "zorch: error: <zorch_error_last()->message>" on stderr; returns CLI_EXIT_FAILED. */
/** Print the steps of a finished run as a table, then its status line. */
void cli_print_run_summary(const zorch_run *run);
int cli_lib_error(void);
/** "zorch: error: <message>" on stderr; returns CLI_EXIT_FAILED. */
int cli_error(const char *fmt, ...) ZORCH_PRINTF(1, 2);
/** "zorch: warning: <message>" on stderr (clears a progress line first). */
void cli_warning(const char *fmt, ...) ZORCH_PRINTF(1, 2);

/** Open the client (home from $ZORCH_HOME etc.) with the warning log
 *  callback; NULL after printing the error. */
zorch_client *cli_client_open(bool log_plugin_problems);

/* ---- output (output.c) ---------------------------------------------------------- */

/** stdout is a terminal and colours are wanted (no NO_COLOR, TERM not dumb). */
bool cli_stdout_is_tty(void);
bool cli_color(void);
/** ANSI colour for a status (empty when colours are off). */
const char *cli_status_color(int status);
const char *cli_color_reset(void);
const char *cli_color_bold(void);
const char *cli_color_dim(void);

/** "2024-05-01 12:00:03" in local time, "-" for 0. */
void cli_format_time(char *out, size_t n, double unix_seconds);
/** "0.42s", "12.3s", "4m05s", "2h03m", "-" when unknown. */
void cli_format_duration(char *out, size_t n, double seconds);
/** "12 B", "3.4 KiB", ... */
void cli_format_size(char *out, size_t n, uint64_t bytes);

/** A text table: add the header with cli_table_new, then rows; print pads columns. */
typedef struct cli_table cli_table;
cli_table *cli_table_new(size_t ncols, const char *const *headers);
/** Add a row of ncols cells (copied).  A cell's `color` (may be NULL) wraps it
 *  when printed; it does not count toward the column width. */
void cli_table_row(cli_table *t, const char *const *cells);
void cli_table_row_colored(cli_table *t, const char *const *cells, const char *const *colors);
void cli_table_print(cli_table *t, FILE *f);
void cli_table_free(cli_table *t);

/** One status line at the bottom of the terminal, redrawn with \r.  Other
 *  output goes through cli_println() so that it appears above the line. */
void cli_status_set(const char *line);
void cli_status_clear(void);
void cli_println(FILE *f, const char *fmt, ...) ZORCH_PRINTF(2, 3);
/** Width of the terminal on stdout (80 when unknown). */
int cli_term_width(void);

/** Parse JSON text returned by zorch; NULL after printing an error. */
json_t *cli_parse_json(const char *text);
/** A JSON value as compact text for a table cell ("" for NULL). Free with free(). */
char *cli_json_compact(const json_t *v);
/** A string member of an object, or `dflt`. */
const char *cli_json_str(const json_t *obj, const char *key, const char *dflt);

/** Read a whole file ("-": stdin).  NULL after printing an error. */
char *cli_read_file(const char *path);

/* ---- command implementations -------------------------------------------------------- */

int cmd_flavor_list(const cli_cmd *cmd, int argc, char **argv);
int cmd_flavor_describe(const cli_cmd *cmd, int argc, char **argv);
int cmd_component_register(const cli_cmd *cmd, int argc, char **argv);
int cmd_component_list(const cli_cmd *cmd, int argc, char **argv);
int cmd_component_delete(const cli_cmd *cmd, int argc, char **argv);
int cmd_stack_register(const cli_cmd *cmd, int argc, char **argv);
int cmd_stack_list(const cli_cmd *cmd, int argc, char **argv);
int cmd_stack_set(const cli_cmd *cmd, int argc, char **argv);
int cmd_stack_describe(const cli_cmd *cmd, int argc, char **argv);
int cmd_stack_delete(const cli_cmd *cmd, int argc, char **argv);
int cmd_pipeline_run(const cli_cmd *cmd, int argc, char **argv);
int cmd_pipeline_validate(const cli_cmd *cmd, int argc, char **argv);
int cmd_run_list(const cli_cmd *cmd, int argc, char **argv);
int cmd_run_show(const cli_cmd *cmd, int argc, char **argv);
int cmd_run_logs(const cli_cmd *cmd, int argc, char **argv);
int cmd_step_run(const cli_cmd *cmd, int argc, char **argv);
int cmd_image_build(const cli_cmd *cmd, int argc, char **argv);
int cmd_pipeline_schedule(const cli_cmd *cmd, int argc, char **argv);
int cmd_schedule_list(const cli_cmd *cmd, int argc, char **argv);
int cmd_schedule_delete(const cli_cmd *cmd, int argc, char **argv);
int cmd_deployment_run(const cli_cmd *cmd, int argc, char **argv);

/** Parse the only positional arguments of a command with no options:
 *  exactly `min`..`max` words into out[].  Returns -1 to go on, else the
 *  exit status. */
int cli_positional(const cli_cmd *cmd, int argc, char **argv, int min, int max,
                   const char **out);

#endif /* ZORCH_CLI_H */
