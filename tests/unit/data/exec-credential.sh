#!/bin/sh
# An exec credential plugin (client.authentication.k8s.io/v1) for
# tests/unit/test-auth.c.  Each run issues a new token tok-N, adds it to the
# HTTP fixture's list of valid tokens ($ZT_AUTH_DIR/tokens) and says it
# expires in $(cat $ZT_AUTH_DIR/expiry) seconds.  $ZT_AUTH_DIR/counter
# counts the runs.  While $ZT_AUTH_DIR/refuse exists its tokens are not
# made valid.
d=${ZT_AUTH_DIR:?ZT_AUTH_DIR is not set}
exec 9>"$d/lock"
flock 9
n=$(($(cat "$d/counter" 2>/dev/null || echo 0) + 1))
echo "$n" >"$d/counter"
[ -e "$d/refuse" ] || echo "tok-$n" >>"$d/tokens"
exp=$(date -u -d "+$(cat "$d/expiry" 2>/dev/null || echo 3600) seconds" +%Y-%m-%dT%H:%M:%SZ)
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"tok-%s","expirationTimestamp":"%s"}}\n' "$n" "$exp"
