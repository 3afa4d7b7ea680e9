#!/bin/sh
# Demo: start Outpost's own test server on loopback, deliver a sample message through the
# full SMTP dialogue with `outpost send -v`, then show what the server recorded.
set -e
BIN=${1:-target/release/outpost}
DIR=$(mktemp -d /tmp/outpost-demo.XXXXXX)
trap 'kill $SINK 2>/dev/null || true; rm -rf "$DIR"' EXIT INT TERM

"$BIN" sink --dir "$DIR/mail" --quiet 127.0.0.1:0 > "$DIR/sink.out" &
SINK=$!
i=0
while ! grep -q '^listening on' "$DIR/sink.out" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "demo: sink did not start" >&2; exit 1; }
    sleep 0.05
done
ADDR=$(sed -n 's/^listening on //p' "$DIR/sink.out" | head -1)
HOST=${ADDR%:*}; PORT=${ADDR##*:}
echo "== outpost sink listening on $ADDR"
echo "== outpost send -v -f alice@example.org -d [$HOST]:$PORT bob@example.net carol@example.net"
printf 'From: Alice <alice@example.org>\nTo: Bob <bob@example.net>\nSubject: Outpost demo\n\nHello from Outpost.\n.A line starting with a dot survives.\n' |
    "$BIN" send -v -f alice@example.org -d "[$HOST]:$PORT" -o myhostname=demo.outpost.test \
        bob@example.net carol@example.net
status=$?
echo "== exit status $status"
echo "== what the server recorded:"
for f in "$DIR"/mail/*; do echo "--- $f"; cat "$f"; done
