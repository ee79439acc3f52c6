#!/usr/bin/env bash
# Layer unpacking: the image store's unpacker (bench/image_unpack.rs, the
# code `sandbox image import` and pull run: both digests computed, caps on,
# whiteouts converted, nothing resolved through a symlink) against GNU tar
# extracting the same layer, gzip-compressed and plain. Each timing includes
# a `sync` (the writeback one leaves behind would otherwise slow the next
# one down); the two alternate, ROUNDS rounds, the median is reported.
#
#   bench/image_unpack.sh [SOURCE_DIRS...]     default: /usr/share /usr/include
#   ROUNDS=3 WORK=/var/tmp/image-bench
#
# Run as root (both then keep owners). The layer is built from the host's
# directories with GNU tar, compressed with `gzip -6` (what image builders use).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
WORK=${WORK:-/var/tmp/image-bench}
srcs=("$@")
[ ${#srcs[@]} -gt 0 ] || srcs=(/usr/share /usr/include)

cargo build --release --example image_unpack -q
bin=target/release/examples/image_unpack
mkdir -p "$WORK"
layer=$WORK/layer.tar
if [ ! -s "$layer" ]; then
  rel=()
  for s in "${srcs[@]}"; do rel+=("${s#/}"); done
  tar -C / -cf "$layer" "${rel[@]}" 2>/dev/null || true
  gzip -6 -c "$layer" >"$layer.gz"
fi
entries=$(tar -tf "$layer" | wc -l)
echo "layer: $(du -h "$layer" | cut -f1) tar, $(du -h "$layer.gz" | cut -f1) gzip, $entries entries (${srcs[*]})"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run_tar() { # FILE DEST
  local t0 t1
  mkdir -p "$2"
  t0=$(now)
  tar -C "$2" -xf "$1"
  sync
  t1=$(now)
  echo "$t1 - $t0" | bc
}
run_ours() { # FILE DEST
  local t0 t1
  t0=$(now)
  "$bin" "$1" "$2" >/dev/null
  sync
  t1=$(now)
  echo "$t1 - $t0" | bc
}

for kind in gz plain; do
  f=$layer
  [ $kind = gz ] && f=$layer.gz
  : >"$WORK/tar.$kind"
  : >"$WORK/ours.$kind"
  for r in $(seq "$ROUNDS"); do
    rm -rf "$WORK/a" "$WORK/b"
    sync
    if [ $((r % 2)) = 1 ]; then
      run_tar "$f" "$WORK/a" >>"$WORK/tar.$kind"
      run_ours "$f" "$WORK/b" >>"$WORK/ours.$kind"
    else
      run_ours "$f" "$WORK/b" >>"$WORK/ours.$kind"
      run_tar "$f" "$WORK/a" >>"$WORK/tar.$kind"
    fi
  done
  t=$(median <"$WORK/tar.$kind")
  o=$(median <"$WORK/ours.$kind")
  printf '%-6s GNU tar %6.2f s   sandbox %6.2f s   speed ratio (tar time / ours) %.2f\n' \
    "$kind" "$t" "$o" "$(echo "$t / $o" | bc -l)"
done
rm -rf "$WORK/a" "$WORK/b"
