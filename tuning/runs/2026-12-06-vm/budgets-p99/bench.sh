#!/bin/bash
# Issue 12's two figures with signature-base loaded, on one shard: 1 KB RESPMODs alone (rate
# and p99), and the same beside two connections sending 10 MB objects to that shard.
#
#   bench.sh RELEASE_DIR LABEL OUTDIR
#
# RELEASE_DIR holds release builds of icapd and icap-bench. The server is pinned to CPU 0 and
# every client to CPU 1.
set -u
BIN=$1/icapd; BENCH=$1/icap-bench; LABEL=$2; OUT=$3; mkdir -p "$OUT"
SB=${SIGNATURE_BASE:-$(cd "$(dirname "$0")/../../../.." && pwd)/../shared/data/yara-signature-base/yara}
P=17501
"$BIN" --listen 127.0.0.1:$P --shards 1 --cpus 0 --signatures "$SB" --access-log off > "$OUT/$LABEL-server.log" 2>&1 &
SP=$!
for _ in $(seq 1 180); do grep -q "ready" "$OUT/$LABEL-server.log" && break; sleep 1; done
grep ready "$OUT/$LABEL-server.log"
uptime > "$OUT/$LABEL-uptime-before.txt"
# Alone: 8 connections of 1 KB RESPMODs (preview 1024 with ieof, Allow: 204) for 10 s.
taskset -c 1 "$BENCH" --server 127.0.0.1:$P --connections 8 --threads 1 --duration 10 --body-size 1024 \
    --label "$LABEL 1KB alone" --json "$OUT/$LABEL-alone.json" --quiet > "$OUT/$LABEL-alone.txt" 2>&1
# Beside: two connections sending 10 MB objects to the same shard, started first.
taskset -c 1 "$BENCH" --server 127.0.0.1:$P --connections 2 --threads 1 --duration 14 --body-size 10M \
    --label "$LABEL 10MB" --json "$OUT/$LABEL-big.json" --quiet > "$OUT/$LABEL-big.txt" 2>&1 &
BP=$!
sleep 2
taskset -c 1 "$BENCH" --server 127.0.0.1:$P --connections 8 --threads 1 --duration 10 --body-size 1024 \
    --label "$LABEL 1KB beside 10MB" --json "$OUT/$LABEL-beside.json" --quiet > "$OUT/$LABEL-beside.txt" 2>&1
wait $BP
kill $SP; wait $SP 2>/dev/null
uptime > "$OUT/$LABEL-uptime-after.txt"
