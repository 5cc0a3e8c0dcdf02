#!/bin/sh
# The store layout module (lib/store_layout.c) is the only place that spells
# a key of the artifact store.  Fails when a C source of lib/, cli/ or
# plugins/ outside it has a string literal that builds one: "runs/%s",
# "%s/runs", "steps/%s", "logs/%s", "cache/%s", "schedules/%s", "artifacts/%",
# or names a store directory or document on its own ("runs", "logs",
# "artifacts", "schedules", "journal.jsonl", "run.json", "deployment.json";
# not "steps", a member of deployment documents too).  Comments are not
# looked at.  Usage: store-layout.sh SRCDIR
set -u
src=${1:?usage: store-layout.sh SRCDIR}
cd "$src" || exit 2

pattern='"[^"]*(runs/%|%s/runs|steps/%|logs/%|cache/%|schedules/%|artifacts/%)[^"]*"|"(runs|logs|artifacts|schedules)/?"|"[^"]*(journal\.jsonl|/run\.json|/deployment\.json)"|"(run|deployment)\.json"'

status=0
for f in $(find lib cli plugins -name '*.c' -o -name '*.h' | sort); do
  case $f in lib/store_layout.[ch]) continue ;; esac
  # comments out: /* ... */ on a line, and lines of a comment block
  hits=$(sed -e 's:/\*.*\*/::g' "$f" | grep -nE "$pattern" | grep -vE '^[0-9]+:[[:space:]]*(\*|/\*|//)')
  [ -n "$hits" ] || continue
  printf '%s: a store key outside lib/store_layout.c:\n%s\n' "$f" "$hits"
  status=1
done
[ $status = 0 ] && echo "store keys: only lib/store_layout.c builds them"
exit $status
