/* zorch quickstart: the program shown in README.md, kept identical to it
 * below this comment (test-quickstart.sh checks).  A function step writes a
 * greeting; a command step shouts it. */
#include <zorch/zorch.h>
#include <stdio.h>

/* A function step: reads param "who", writes output "greeting". */
static int greet(zorch_step_ctx *ctx, void *payload) {
  const char *who;
  char text[128];
  if (zorch_ctx_param_string(ctx, "who", &who) != ZORCH_OK)
    return zorch_ctx_fail(ctx, "%s", zorch_error_last()->message);
  int n = snprintf(text, sizeof text, "hello, %s\n", who);
  return zorch_ctx_output(ctx, "greeting", text, (size_t)n);
}

static int build(zorch_pipeline **out, const char *name, void *payload) {
  /* A command step: any program; its inputs and outputs are files whose
   * paths are in its environment. */
  static const char *const shout[] = {
      "sh", "-c", "tr a-z A-Z <\"$ZORCH_INPUT_TEXT\" >\"$ZORCH_OUTPUT_LOUD\"", NULL};
  zorch_pipeline *p;
  zorch_step *s;
  int rc = zorch_pipeline_new(&p, "hello");
  if (rc != ZORCH_OK)
    return rc;
  if ((rc = zorch_pipeline_add_param(p, "who", "\"world\"")) ||
      (rc = zorch_pipeline_add_function_step(&s, p, "greet", greet, NULL)) ||
      (rc = zorch_step_use_param(s, "who")) ||
      (rc = zorch_step_add_output(s, "greeting")) ||
      (rc = zorch_pipeline_add_command_step(&s, p, "shout", shout)) ||
      (rc = zorch_step_add_input(s, "text", "greet", "greeting")) || /* the wiring */
      (rc = zorch_step_add_output(s, "loud"))) {
    zorch_pipeline_free(p);
    return rc;
  }
  *out = p;
  return ZORCH_OK;
}

int main(int argc, char **argv) {
  /* When a remote flavor starts this program as one step, this runs it and exits. */
  if (zorch_main(argc, argv, build, NULL) != ZORCH_OK)
    return 2;

  zorch_pipeline *p = NULL;
  zorch_client *client = NULL; /* $ZORCH_HOME, its stacks and flavor plugins */
  zorch_run *run = NULL;
  int rc = build(&p, "hello", NULL);
  if (rc == ZORCH_OK)
    rc = zorch_client_new(&client, NULL);
  if (rc == ZORCH_OK) /* NULL options: the active stack, all params at their defaults */
    rc = zorch_pipeline_run(&run, client, p, NULL);
  if (rc != ZORCH_OK)
    fprintf(stderr, "error: %s\n", zorch_error_last()->message);

  if (run) { /* inspect: per-step status, then an output */
    for (size_t i = 0; i < zorch_run_step_count(run); i++)
      printf("%-6s %s\n", zorch_run_step_name(run, i),
             zorch_status_name(zorch_run_step_status(run, i)));
    void *data;
    size_t size;
    if (zorch_run_read_output(&data, &size, run, "shout", "loud") == ZORCH_OK) {
      fwrite(data, 1, size, stdout); /* HELLO, WORLD */
      zorch_free(data);
    }
  }
  zorch_run_free(run);
  zorch_pipeline_free(p);
  zorch_client_free(client);
  return rc == ZORCH_OK ? 0 : 1;
}
