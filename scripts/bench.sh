#!/bin/sh
# Benchmark: `outpost send` against msmtp, one process per delivery, sequentially, on
# loopback, to one `outpost sink --quiet` (no --dir, so the sink is not the bottleneck).
# Prints a report and writes it to target/bench-report.txt. Measures; asserts nothing.
#
# usage: sh scripts/bench.sh [path/to/outpost]
# environment:
#   BENCH_N        deliveries in scenario A (1 KB message, 1 recipient; default 2000)
#   BENCH_RCPT_N   deliveries in scenario B (same message, 50 recipients; default 100)
#   BENCH_BIG_N    deliveries in scenario C (5 MB message, 1 recipient; default 10)
#   BENCH_BUDGET   seconds allowed per tool and scenario before a run stops early
#                  (default 40; 0 = no limit); the report says when it did
#   BENCH_VERIFY_N small messages per tool in the recorded verification pass (default 20)
#   BENCH_MSMTP    msmtp binary (default: msmtp from PATH; missing = Outpost alone)
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/outpost}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
if [ ! -x "$BIN" ]; then
    echo "bench: $BIN: not an executable (run cargo build --release first)" >&2
    exit 1
fi
command -v python3 >/dev/null 2>&1 || { echo "bench: python3 is required" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/outpost-bench.XXXXXX")
SINK=
VSINK=
PY=
cleanup() {
    [ -n "$PY" ] && kill "$PY" 2>/dev/null
    [ -n "$SINK" ] && kill "$SINK" 2>/dev/null
    [ -n "$VSINK" ] && kill "$VSINK" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_sink OUTFILE ARGS...: starts a sink in the background; sets LAST_PID.
start_sink() {
    out=$1
    shift
    "$BIN" sink "$@" 127.0.0.1:0 >"$out" 2>"$out.err" &
    LAST_PID=$!
}

# wait_addr OUTFILE PID: prints the port from the "listening on" line.
wait_addr() {
    i=0
    while ! grep -q '^listening on ' "$1" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 200 ] || ! kill -0 "$2" 2>/dev/null; then
            echo "bench: the sink did not start:" >&2
            cat "$1.err" >&2
            exit 1
        fi
        sleep 0.05
    done
    addr=$(sed -n 's/^listening on //p' "$1" | head -n 1)
    echo "${addr##*:}"
}

mkdir "$WORK/recorded"
start_sink "$WORK/sink.out" --quiet
SINK=$LAST_PID
start_sink "$WORK/vsink.out" --quiet --dir "$WORK/recorded"
VSINK=$LAST_PID
PORT=$(wait_addr "$WORK/sink.out" "$SINK")
VPORT=$(wait_addr "$WORK/vsink.out" "$VSINK")

mkdir -p "$ROOT/target"
# In the background, so that a signal to this shell runs the traps at once.
python3 "$ROOT/scripts/bench_run.py" --bin "$BIN" --port "$PORT" --sink-pid "$SINK" \
    --verify-port "$VPORT" --verify-dir "$WORK/recorded" --work "$WORK" \
    --report "$ROOT/target/bench-report.txt" &
PY=$!
status=0
wait "$PY" || status=$?
PY=
[ "$status" -ne 0 ] || { sh "$ROOT/scripts/bench_drain.sh" --append "$ROOT/target/bench-report.txt" "$BIN" & PY=$!; wait "$PY" || status=$?; PY=; }
exit "$status"
