#!/usr/bin/env bash
# The out-of-tree flavor example, end to end, the way a plugin author and a
# user meet it:
#   1. install zorch into a temporary prefix (meson setup --prefix, meson install);
#   2. copy examples/custom-flavor out of the tree and build it with make,
#      with nothing but that prefix's pkg-config;
#   3. with the installed `zorch` CLI and ZORCH_PLUGIN_PATH naming the built
#      plugin: `orchestrator flavor list` shows it with its integration name,
#      `orchestrator flavor describe prefix` shows its config schema, a bad
#      config is refused by the schema and by the flavor's own check;
#   4. a JSON pipeline of four command steps (a fan-out and a join) runs
#      through the flavor with a recording wrapper as the prefix: every step
#      went through the wrapper once, artifacts flowed (the last output has
#      the expected content, in the store under its SHA-256), the wrapper's
#      output is in the step logs, the run records the prefix as metadata;
#      "join": true works through `sh -c`; a cached rerun launches nothing;
#      a failing step fails the run with its exit status.
#
# Usage: test-custom-flavor.sh SOURCE_ROOT
set -euo pipefail
src=$(cd "${1:?usage: test-custom-flavor.sh SOURCE_ROOT}" && pwd)
for tool in meson ninja make cc pkg-config python3 sha256sum; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (scripts/setup)"; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/zorch-custom-flavor.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "FAIL: $*"; exit 1; }
step() { echo "---- $*"; }

# ---- 1. install zorch into $prefix ---------------------------------------------------------
step "install zorch into $prefix"
# a plain build (no sanitizer even in the sanitizer pass: this is what users install)
env -u CFLAGS -u LDFLAGS meson setup "$tmp/build" "$src" --prefix="$prefix" \
  -Dtests=disabled -Dexamples=false -Dbuildtype=debugoptimized >"$tmp/setup.log" 2>&1 ||
  { cat "$tmp/setup.log"; fail "meson setup of the install build failed"; }
ninja -C "$tmp/build" -j2 >"$tmp/ninja.log" 2>&1 || { cat "$tmp/ninja.log"; fail "the install build failed"; }
meson install -C "$tmp/build" --no-rebuild --quiet >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; fail "meson install failed"; }
pc=$(find "$prefix" -name zorch.pc -print -quit)
[[ -n $pc ]] || fail "meson install put no zorch.pc under $prefix"
libdir=$(dirname "$(dirname "$pc")")
[[ -x $prefix/bin/zorch ]] || fail "no $prefix/bin/zorch after meson install"

# Only the installed zorch from here on: no build tree, no source tree.
export PKG_CONFIG_PATH=$libdir/pkgconfig
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR ZORCH_PLUGIN_SYSTEM_PATH ZORCH_COMMAND
export PATH=$prefix/bin:$PATH
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export ZORCH_HOME=$tmp/home
plugindir=$(pkg-config --variable=plugindir zorch)
[[ $plugindir == "$libdir/zorch-1/plugins" ]] ||
  fail "pkg-config --variable=plugindir zorch is '$plugindir', expected $libdir/zorch-1/plugins"
[[ -f $plugindir/zorch-flavor-local.so ]] || fail "the local flavor is not installed in $plugindir"

# ---- 2. build the example out of tree --------------------------------------------------------
step "build examples/custom-flavor with pkg-config"
ex=$tmp/custom-flavor
mkdir "$ex"
cp "$src"/examples/custom-flavor/{Makefile,prefix.c,flavor-check.c,queue-wrapper.sh,words.json} "$ex"/
make -C "$ex" >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; fail "make of the example failed"; }
cat "$tmp/make.log"
grep -q -- "-I$prefix/include/zorch-1" "$tmp/make.log" ||
  fail "the example was not compiled with the installed headers (pkg-config --cflags)"
# a plugin does not link libzorch
if readelf -d "$ex/zorch-flavor-prefix.so" | grep -q 'NEEDED.*libzorch'; then
  fail "zorch-flavor-prefix.so links libzorch; a plugin must not"
fi
nm -D --defined-only "$ex/zorch-flavor-prefix.so" | awk '{print $3}' | grep -qx zorch_plugin_describe ||
  fail "zorch-flavor-prefix.so does not export zorch_plugin_describe"
# `make install` goes to pkg-config's plugindir (into a DESTDIR here)
make -C "$ex" install DESTDIR="$tmp/destdir" >/dev/null
[[ -f $tmp/destdir$plugindir/zorch-flavor-prefix.so ]] ||
  fail "make install did not put the plugin in \$(pkg-config --variable=plugindir zorch)"

export ZORCH_PLUGIN_PATH=$ex
"$ex/flavor-check" prefix >"$tmp/check.out" 2>&1 || { cat "$tmp/check.out"; fail "flavor-check prefix failed"; }

# ---- 3. flavor list and describe ------------------------------------------------------------
step "zorch orchestrator flavor list / describe"
list=$(zorch orchestrator flavor list 2>&1)
printf '%s\n' "$list"
grep -Eq '^prefix +example-prefix +Runs each step through a command prefix' <<<"$list" ||
  fail "flavor list does not show 'prefix' with integration 'example-prefix'"
grep -Eq '^local +built-in ' <<<"$list" || fail "flavor list lost the installed local flavor"
[[ $list != *warning* ]] || fail "flavor list printed a warning"
desc=$(zorch orchestrator flavor describe prefix 2>&1)
printf '%s\n' "$desc"
grep -q '^Integration: *example-prefix$' <<<"$desc" || fail "describe lacks 'Integration: example-prefix'"
grep -q "^Plugin: *prefix ($ex/zorch-flavor-prefix.so)$" <<<"$desc" || fail "describe lacks the plugin's file"
grep -q '^Capabilities: local_store$' <<<"$desc" || fail "describe lacks the flavor's capabilities"
python3 - "$desc" <<'PY' || fail "describe's config schema is not the flavor's"
import json, sys
text = sys.argv[1]
# the config schema is the JSON document after its heading (the step
# settings schema follows it)
start = text.index("Config schema:") + len("Config schema:")
schema, _ = json.JSONDecoder().raw_decode(text[start:].lstrip())
assert schema["type"] == "object", schema
props = schema["properties"]
assert props["prefix"]["type"] == "array" and props["prefix"]["items"] == {"type": "string"}, props
assert props["prefix"]["minItems"] == 1, props
assert props["join"]["type"] == "boolean", props
assert props["max_parallel"] == {"type": "integer", "minimum": 1,
    "description": "how many steps may run at once (default: the number of CPUs)"}, props
assert schema["required"] == ["prefix"] and schema["additionalProperties"] is False, schema
PY

# a config the schema refuses, and one the flavor's check_config refuses
if out=$(zorch orchestrator register bad --flavor prefix --config '{"prefix": []}' 2>&1); then
  fail "an empty prefix was accepted"
fi
printf '%s\n' "$out"
grep -q 'prefix' <<<"$out" || fail "the schema error does not name the field: $out"
if out=$(zorch orchestrator register bad --flavor prefix --config '{"prefix": ["no-such-submitter-zz"]}' 2>&1); then
  fail "a prefix program that does not exist was accepted"
fi
printf '%s\n' "$out"
grep -q "plugin prefix ($ex/zorch-flavor-prefix.so): prefix\[0\] 'no-such-submitter-zz' is not an executable program in \$PATH" <<<"$out" ||
  fail "check_config's error is not the flavor's message: $out"

# ---- 4. a pipeline through the flavor ---------------------------------------------------------
step "a pipeline through the prefix flavor"
export QUEUE_LOG=$tmp/queue.log
zorch orchestrator register batch --flavor prefix \
  --config "{\"prefix\": [\"$ex/queue-wrapper.sh\", \"gpu-7\"], \"max_parallel\": 2}"
zorch stack register batch -o batch --set
zorch pipeline run "$ex/words.json" >"$tmp/run1.out" 2>&1 || { cat "$tmp/run1.out"; fail "the pipeline failed on the prefix flavor"; }
cat "$tmp/run1.out"
run=$(sed -n 's/^Run: \([^ ]*\) (id \([0-9a-f]*\))$/\2/p' "$tmp/run1.out")
[[ -n $run ]] || fail "no run id in the output of pipeline run"
cat "$QUEUE_LOG"
for s in split sort count report; do
  n=$(grep -c -- "^queue=gpu-7 pid=[0-9]* argv=.* step run .*--zorch-step $s " "$QUEUE_LOG" || true)
  [[ $n == 1 ]] || fail "step $s went through the prefix $n times, expected once"
done
[[ $(wc -l <"$QUEUE_LOG") == 4 ]] || fail "the wrapper ran $(wc -l <"$QUEUE_LOG") times, expected 4"
# the entrypoint is the installed CLI's `zorch step run`
grep -q "argv=$prefix/bin/zorch step run " "$QUEUE_LOG" || fail "steps did not run the installed zorch's step entrypoint"

store=$ZORCH_HOME/store # the default stack's local artifact store (docs/storage.md)
[[ -d $store/runs/$run ]] || fail "run $run is not in the store $store"
want='4 words, distinct: apple fig pear '
digest=$(printf '%s\n' "$want" | sha256sum | cut -c1-64)
art=$store/artifacts/${digest:0:2}/$digest
[[ -f $art ]] || fail "the report artifact ($digest) is not in the store: artifacts did not flow"
[[ $(cat "$art") == "$want" ]] || fail "report is '$(cat "$art")', expected '$want'"
show=$(zorch run show "$run")
printf '%s\n' "$show"
grep -q '^Status: *completed$' <<<"$show" || fail "run show does not say completed"
grep -Eq "^report +completed +1 .* report=${digest:0:12} " <<<"$show" ||
  fail "run show lacks report's output, or counts other than 1 attempt"
logs=$(zorch run logs "$run" sort)
grep -q '^\[queue-wrapper\] running on queue gpu-7$' <<<"$logs" || fail "the prefix's output is not in the step log: $logs"
# the flavor hands the output to zorch (executor_step_log), which heads it
[[ $(head -n 1 <<<"$logs") == '--- attempt 1 (prefix) ---' ]] ||
  fail "the step log does not start with zorch's attempt header: $logs"
python3 - "$store/runs/$run/run.json" "$ex/queue-wrapper.sh" <<'PY' || fail "the run record lacks the flavor's metadata"
import json, sys
rec = json.load(open(sys.argv[1]))
meta = rec.get("metadata", {})
assert meta.get("prefix") == "'%s' 'gpu-7'" % sys.argv[2], meta
PY

step "cached rerun: nothing reaches the flavor"
zorch pipeline run "$ex/words.json" >"$tmp/run2.out" 2>&1 || { cat "$tmp/run2.out"; fail "the cached rerun failed"; }
[[ $(wc -l <"$QUEUE_LOG") == 4 ]] || fail "a cached rerun launched steps through the prefix"

step "\"join\": true through sh -c, a new param"
zorch orchestrator register joined --flavor prefix --config '{"prefix": ["sh", "-c"], "join": true}'
zorch stack register joined -o joined --set
zorch pipeline run "$ex/words.json" --param text='"kiwi kiwi"' >"$tmp/run3.out" 2>&1 ||
  { cat "$tmp/run3.out"; fail "the pipeline failed with join"; }
want='2 words, distinct: kiwi '
digest=$(printf '%s\n' "$want" | sha256sum | cut -c1-64)
[[ -f $store/artifacts/${digest:0:2}/$digest ]] || fail "join: the report artifact is missing"

step "a failing step fails the run"
cat >"$tmp/broken.json" <<'EOF'
{"zorch_pipeline": 1, "name": "broken",
 "steps": [{"name": "boom", "command": ["sh", "-c", "echo going down >&2; exit 3"]}]}
EOF
if zorch pipeline run "$tmp/broken.json" >"$tmp/run4.out" 2>&1; then
  cat "$tmp/run4.out"
  fail "a step that exits 3 did not fail the run"
fi
cat "$tmp/run4.out"
grep -q "step 'boom' failed" "$tmp/run4.out" || fail "the failure does not name the step"
grep -q "exited with status 3" "$tmp/run4.out" || fail "the failure does not give the command's exit status"
run=$(sed -n 's/^Run: \([^ ]*\) (id \([0-9a-f]*\))$/\2/p' "$tmp/run4.out")
[[ $(zorch run logs "$run" boom) == *"going down"* ]] || fail "the failing step's output is not in its log"

step "a retried step: two attempts through the prefix"
cat >"$tmp/flaky.json" <<EOF
{"zorch_pipeline": 1, "name": "flaky",
 "steps": [{"name": "flaky", "command": ["sh", "-c", "[ -e $tmp/flaky.seen ] || { touch $tmp/flaky.seen; exit 1; }"],
            "settings": {"retries": {"max": 1, "delay": 0}}}]}
EOF
zorch pipeline run "$tmp/flaky.json" >"$tmp/run6.out" 2>&1 || { cat "$tmp/run6.out"; fail "the retried step did not complete"; }
run=$(sed -n 's/^Run: \([^ ]*\) (id \([0-9a-f]*\))$/\2/p' "$tmp/run6.out")
zorch run show "$run" | grep -Eq '^flaky +completed +2 ' || { zorch run show "$run"; fail "run show does not count 2 attempts of the retried step"; }

step "Ctrl-C stops the run and the step's process group"
cat >"$tmp/slow.json" <<EOF
{"zorch_pipeline": 1, "name": "slow",
 "steps": [{"name": "nap", "command": ["sh", "-c", "echo \$\$ > $tmp/nap.pid; exec sleep 60"]}]}
EOF
zorch pipeline run "$tmp/slow.json" >"$tmp/run5.out" 2>&1 &
cli=$!
for _ in $(seq 100); do [[ -s $tmp/nap.pid ]] && break; sleep 0.1; done
[[ -s $tmp/nap.pid ]] || { kill "$cli"; fail "the slow step did not start"; }
nap=$(cat "$tmp/nap.pid")
kill -INT "$cli"
rc=0
wait "$cli" || rc=$?
cat "$tmp/run5.out"
[[ $rc == 130 ]] || fail "zorch pipeline run exited $rc after SIGINT, expected 130"
for _ in $(seq 50); do kill -0 "$nap" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$nap" 2>/dev/null; then
  kill "$nap"
  fail "the step's process $nap still runs after the run was stopped"
fi
run=$(sed -n 's/^Run: \([^ ]*\) (id \([0-9a-f]*\))$/\2/p' "$tmp/run5.out")
zorch run show "$run" | grep -q '^Status: *stopped$' || fail "the stopped run is not recorded as stopped"

echo "ok: installed into a prefix, built with pkg-config, listed, described, 4 steps through the prefix"
