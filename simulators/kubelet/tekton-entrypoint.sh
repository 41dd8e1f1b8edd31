#!/bin/sh
# The test kubelet's stand-in for the binaries of Tekton's entrypoint and workingdirinit images
# (github.com/tektoncd/pipeline/cmd/entrypoint, cmd/workingdirinit), which do not exist here. It is
# mounted at /ko-app/entrypoint and /ko-app/workingdirinit (see tekton.ts) and does what they do for
# the pods Tekton's controller builds, with termination-message results:
#
#   entrypoint init SRC DST STEP...   (init container `prepare`) copy itself to /tekton/bin, link
#                                     /tekton/steps/<step> and /tekton/steps/<i> to /tekton/run/<i>/status
#   entrypoint decode-script FILE     (init container `place-scripts`) base64-decode a step script
#   entrypoint -wait_file ... -entrypoint CMD -- ARGS...   (each step container) wait for the
#       previous step, run CMD ARGS, write the post file, and the termination message Tekton's
#       controller reads: [{"key","value","type"}], task results (type 1) from /tekton/results,
#       step results (type 4) from <step_metadata_dir>/results, then StartedAt (type 3).
#
# Flags it does not emulate (timeouts per step, when expressions, stdout/stderr capture, debug,
# sidecar-log results) fail the step with a message saying so, rather than being ignored.
set -u

# Go's "2006-01-02T15:04:05.000Z07:00" in UTC.
now() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }
die() { printf 'test kubelet (Tekton entrypoint emulation): %s\n' "$1" >&2; exit 1; }

case "${0##*/}" in
  workingdirinit)
    for d in "$@"; do
      case "$d" in /workspace/* | [!/]*) mkdir -p -- "$d" || exit 1 ;; esac
    done
    exit 0
    ;;
esac

step_init() {
  mkdir -p /tekton/steps || exit 1
  i=0
  for s in "$@"; do
    ln -sfn "/tekton/run/$i/status" "/tekton/steps/$s" || exit 1
    ln -sfn "/tekton/run/$i/status" "/tekton/steps/$i" || exit 1
    i=$((i + 1))
  done
}

case "${1:-}" in
  init)
    [ $# -ge 3 ] || die "usage: init SRC DST [STEP...]"
    cp "$2" "$3" && chmod 0755 "$3" || exit 1
    shift 3
    step_init "$@"
    exit 0
    ;;
  step-init) shift; step_init "$@"; exit 0 ;;
  cp) cp "$2" "$3" && chmod 0755 "$3"; exit ;;
  decode-script)
    # Rewrite in place, keeping the file (and its mode), as decode-script does.
    decoded=$(base64 -d < "$2" && printf x) || die "cannot decode script $2"
    printf '%s' "${decoded%x}" > "$2" || exit 1
    exit 0
    ;;
esac

wait_files='' wait_content=false post_file='' termination=/tekton/termination metadata_dir=''
results='' step_results='' command='' on_error=''
while [ $# -gt 0 ]; do
  arg=$1
  shift
  [ "$arg" = "--" ] && break
  name=${arg#-}
  name=${name#-}
  case "$name" in
    *=*) value=${name#*=}; name=${name%%=*}; has_value=true ;;
    *) value=''; has_value=false ;;
  esac
  case "$name" in
    wait_file_content) wait_content=true; continue ;;
    compress_termination_message) continue ;; # Tekton's parser reads plain messages either way.
    breakpoint_on_failure | debug_before_step) die "-$name is not emulated" ;;
  esac
  if [ "$has_value" = false ]; then
    [ $# -gt 0 ] || die "flag -$name needs a value"
    value=$1
    shift
  fi
  case "$name" in
    wait_file) wait_files=$value ;;
    post_file) post_file=$value ;;
    termination_path) termination=$value ;;
    step_metadata_dir) metadata_dir=$value ;;
    results) results=$value ;;
    step_results) step_results=$value ;;
    entrypoint) command=$value ;;
    on_error) on_error=$value ;;
    result_from) [ "$value" = termination-message ] || die "-result_from $value is not emulated" ;;
    timeout | when_expressions | stdout_path | stderr_path) die "-$name is not emulated" ;;
    basic-git | ssh-git | basic-docker | docker-config | docker-cfg) ;; # credentials: none here
    *) die "unknown flag -$name" ;;
  esac
done
[ -n "$metadata_dir" ] || die "no -step_metadata_dir"
[ -n "$command" ] || die "no -entrypoint: image entrypoint lookup (TEKTON_PLATFORM_COMMANDS) is not emulated"

# JSON string body of a file's bytes, trailing newline included.
json_value() {
  awk 'BEGIN { ORS = ""; for (i = 1; i < 32; i++) esc[sprintf("%c", i)] = sprintf("\\u%04x", i)
               esc["\n"] = "\\n"; esc["\t"] = "\\t"; esc["\r"] = "\\r"; esc["\\"] = "\\\\"; esc["\""] = "\\\"" }
       { if (NR > 1) print "\\n"
         n = length($0)
         for (i = 1; i <= n; i++) { c = substr($0, i, 1); print ((c in esc) ? esc[c] : c) } }' "$1"
  if [ -s "$1" ] && [ -z "$(tail -c 1 "$1")" ]; then printf '\\n'; fi
}

entries=''
add() { entries="$entries${entries:+,}$1"; }
add_file() { # key, file, type
  [ -f "$2" ] || return 0
  add "{\"key\":\"$1\",\"value\":\"$(json_value "$2")\",\"type\":$3}"
}
write_message() { printf '[%s]' "$entries" > "$termination"; }

mkdir -p "$metadata_dir/results" "$metadata_dir/artifacts" || exit 1

# Wait for the previous step (or the pod's ready annotation), polling each second as Tekton's does.
old_ifs=$IFS
IFS=,
for f in $wait_files; do
  IFS=$old_ifs
  while :; do
    if [ -e "$f" ] && { [ "$wait_content" = false ] || [ -s "$f" ]; }; then break; fi
    if [ -e "$f.err" ]; then
      [ -n "$post_file" ] && : > "$post_file.err"
      add "{\"key\":\"StartedAt\",\"value\":\"$(now)\",\"type\":3}"
      add '{"key":"Reason","value":"Skipped","type":3}'
      write_message
      printf 'Skipping step because a previous step failed\n' >&2
      exit 1
    fi
    sleep 1
  done
done
IFS=$old_ifs

started=$(now)
"$command" "$@"
code=$?

if [ "$code" -eq 0 ]; then
  [ -n "$post_file" ] && : > "$post_file"
  printf 0 > "$metadata_dir/exitCode"
elif [ "$on_error" = continue ]; then
  [ -n "$post_file" ] && : > "$post_file"
  printf '%s' "$code" > "$metadata_dir/exitCode"
else
  [ -n "$post_file" ] && : > "$post_file.err"
fi

IFS=,
for r in $results; do add_file "$r" "/tekton/results/$r" 1; done
for r in $step_results; do add_file "$r" "$metadata_dir/results/$r" 4; done
IFS=$old_ifs
results_size=$(printf '[%s]' "$entries" | wc -c)
if [ "$results_size" -gt 4096 ]; then
  # As the entrypoint: the results are dropped and the step fails.
  entries=''
  add "{\"key\":\"StartedAt\",\"value\":\"$started\",\"type\":3}"
  write_message
  printf 'Termination message is above max allowed size 4096, caused by large task result.\n' >&2
  exit 1
fi
add "{\"key\":\"StartedAt\",\"value\":\"$started\",\"type\":3}"
if [ "$code" -ne 0 ] && [ "$on_error" = continue ]; then
  add "{\"key\":\"ExitCode\",\"value\":\"$code\",\"type\":3}"
  write_message
  exit 0
fi
write_message
exit "$code"
