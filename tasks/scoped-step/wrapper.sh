# The wrapper every step container runs (sh -c "<this>" scoped-step [command args...]): it runs the
# user's script or command, then turns the files in /tekton/results into the container's
# termination message as JSON, as Tekton's entrypoint does. Needs /bin/sh and awk in the image.
# On failure the message stays empty, so FallbackToLogsOnError shows the log tail instead.
set -u
step() {
  if [ -n "${SCOPED_STEP_SCRIPT:-}" ]; then
    printf '%s\n' "$SCOPED_STEP_SCRIPT" > /tekton/scripts/step
    chmod 0755 /tekton/scripts/step
    case "$SCOPED_STEP_SCRIPT" in
      '#!'*) exec /tekton/scripts/step "$@" ;;
      *) exec /bin/sh /tekton/scripts/step "$@" ;;
    esac
  else
    exec "$@"
  fi
}
# The step runs as a child: as the container's first process this shell would ignore SIGTERM
# (nothing else handles it), so a deleted pod would only stop after its grace period. It passes
# SIGTERM on and waits for the step to end.
step "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM
code=0
wait "$child" || code=$?
# A trapped signal interrupts wait (status > 128): wait again until the step itself has ended.
while kill -0 "$child" 2>/dev/null; do
  code=0
  wait "$child" || code=$?
done
[ "$code" -eq 0 ] || exit "$code"
out=/tekton/scripts/results.json
{
  printf '['
  sep=''
  for f in /tekton/results/*; do
    [ -f "$f" ] || continue
    printf '%s{"key":"%s","value":"' "$sep" "${f##*/}"
    # JSON string escaping, one character at a time: portable across gawk, mawk and busybox awk.
    awk 'BEGIN { ORS = ""; for (i = 1; i < 32; i++) esc[sprintf("%c", i)] = sprintf("\\u%04x", i)
                 esc["\n"] = "\\n"; esc["\t"] = "\\t"; esc["\r"] = "\\r"; esc["\\"] = "\\\\"; esc["\""] = "\\\"" }
         { if (NR > 1) print "\\n"
           n = length($0)
           for (i = 1; i <= n; i++) { c = substr($0, i, 1); print ((c in esc) ? esc[c] : c) } }' "$f"
    printf '","type":1}'
    sep=','
  done
  printf ']'
} > "$out"
size=$(wc -c < "$out")
if [ "$size" -gt 4096 ]; then
  printf '[{"key":"scopedstep.dev/results-too-large","value":"%s","type":3}]' "$size" > /tekton/termination
else
  cat "$out" > /tekton/termination
fi
exit 0
