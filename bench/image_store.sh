#!/usr/bin/env bash
# The store's size with layer sharing: two images sharing a big base layer
# (built with umoci from the host's directories), imported into a fresh
# store; its disk usage (layers/ and blobs/, `du`) against the same three
# layers extracted once each by GNU tar. The issue's target: at most 1.1x.
#
#   bench/image_store.sh          WORK=/var/tmp/image-bench (shared with image_unpack.sh)
#
# Needs root, umoci, GNU tar; builds target/release/sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/var/tmp/image-bench}
cargo build --release --bin sandbox -q
bin=$PWD/target/release/sandbox
mkdir -p "$WORK"
cd "$WORK"
[ -s base.tar ] || tar -C / -cf base.tar usr/share usr/include 2>/dev/null || true
[ -s app1.tar ] || tar -C / -cf app1.tar usr/bin 2>/dev/null || true
[ -s app2.tar ] || tar -C / -cf app2.tar usr/sbin etc 2>/dev/null || true
if [ ! -d img ]; then
  umoci init --layout img
  for i in 1 2; do
    umoci new --image img:app$i
    umoci raw add-layer --image img:app$i base.tar
    umoci raw add-layer --image img:app$i app$i.tar
  done
fi
rm -rf store ref
t0=$(date +%s.%N)
"$bin" --store "$WORK/store" image import img --name bench/app:app1 >/dev/null
t1=$(date +%s.%N)
"$bin" --store "$WORK/store" image import img --name bench/app:app2 >/dev/null
t2=$(date +%s.%N)
for l in base app1 app2; do
  mkdir -p ref/$l
  tar -C ref/$l -xf $l.tar
done
store_kb=$(du -sk store/layers store/blobs | awk '{s += $1} END {print s}')
ref_kb=$(du -sk ref | cut -f1)
"$bin" --store "$WORK/store" image du | tail -1
printf 'import app1 (base + app1): %.1f s; app2 (base present): %.1f s\n' \
  "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)"
printf 'store on disk %d KiB; the three layers extracted once each by GNU tar %d KiB; ratio %.3f\n' \
  "$store_kb" "$ref_kb" "$(echo "$store_kb / $ref_kb" | bc -l)"
rm -rf ref
