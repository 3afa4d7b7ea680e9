#!/bin/sh
# Benchmark: queue drain through a real Postfix master, Postfix's smtp(8) against Outpost
# as the delivery agent (master.cf `outpost/smtp`), to a Postfix smtp-sink (no -d, so the
# sink is not the bottleneck). One throw-away instance in /tmp (removed on exit). For each
# transport: N held messages, transport map switched, postfix reload, postsuper -H ALL,
# timed until the queue is empty; 3 rounds by default. Prints a table and writes it to target/bench-drain.txt.
# Measures; asserts nothing. Needs root, Debian's postfix, smtp-sink/smtp-source, python3;
# without them it says SKIP and exits 0.
#
# usage: sh scripts/bench_drain.sh [--append REPORT] [path/to/outpost]
#   --append REPORT  also append the table to REPORT (scripts/bench.sh: bench-report.txt)
# environment:
#   BENCH_DRAIN_N       messages per transport (about 1 KB, 1 recipient; default 3000)
#   BENCH_DRAIN_PROCS   default_process_limit of the instance (default 20)
#   BENCH_DRAIN_ROUNDS  rounds, each drains N through both transports, the order
#                       alternating between rounds; the table gives medians (default 3)
#   BENCH_DRAIN_BUDGET  seconds allowed per injection and per drain (default 90)
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
APPEND=
if [ "$1" = "--append" ]; then
    APPEND=$2
    shift 2
fi
BIN=${1:-$ROOT/target/release/outpost}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
if [ ! -x "$BIN" ]; then
    echo "bench_drain: $BIN: not an executable (run cargo build --release first)" >&2
    exit 1
fi
skip() {
    echo "bench_drain: SKIP: $*" >&2
    exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (a throw-away Postfix instance)"
[ -x /usr/lib/postfix/sbin/master ] || skip "needs Debian's postfix (make test-deps)"
for c in postfix postsuper postqueue smtp-sink smtp-source script python3; do
    command -v $c >/dev/null 2>&1 || skip "needs $c"
done

WORK=$(mktemp -d /tmp/outpost-drain.XXXXXX)
PY=
cleanup() {
    set +e
    [ -n "$PY" ] && kill "$PY" 2>/dev/null
    wait 2>/dev/null
    # The driver stops Postfix and the sink itself; this is for when it could not.
    if [ -f "$WORK/queue/pid/master.pid" ]; then
        postfix -c "$WORK/conf" stop >/dev/null 2>&1 || true
        i=0
        while [ $i -lt 50 ] && [ -f "$WORK/queue/pid/master.pid" ] &&
            kill -0 "$(cat "$WORK/queue/pid/master.pid" 2>/dev/null)" 2>/dev/null; do
            i=$((i + 1))
            sleep 0.1
        done
    fi
    [ -f "$WORK/sink.pid" ] && kill "$(cat "$WORK/sink.pid")" 2>/dev/null
    rm -rf "$WORK"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$ROOT/target"
# In the background, so that a signal to this shell runs the traps at once.
python3 "$ROOT/scripts/bench_drain.py" --bin "$BIN" --work "$WORK" \
    --report "$ROOT/target/bench-drain.txt" ${APPEND:+--append "$APPEND"} \
    --n "${BENCH_DRAIN_N:-3000}" --procs "${BENCH_DRAIN_PROCS:-20}" \
    --rounds "${BENCH_DRAIN_ROUNDS:-3}" --budget "${BENCH_DRAIN_BUDGET:-90}" &
PY=$!
status=0
wait "$PY" || status=$?
PY=
exit "$status"
