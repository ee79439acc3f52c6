#!/usr/bin/env bash
# /bin/true in an image against /bin/true in the host-root run, same
# profile (strict), in-process (SANDBOX_HELPER=off). The image holds the
# host's own /bin/true and the libraries it loads (one layer made with
# umoci), so both rows exec the same files: the difference is the root
# (the image's idmapped layers under the overlay, against the host's
# system directories). Timed as bench/run times its rows: perf_counter
# around subprocess.run, warm-up, then RUNS runs each in alternating
# blocks of 50; medians, p99 and the ratio. Target: image ≤ 1.10× host.
#
#   bench/image_exec.sh            RUNS=300 WARM=30 (needs root, umoci)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-300}
WARM=${WARM:-30}
[ "$(id -u)" = 0 ] || { echo "bench/image_exec.sh: needs root" >&2; exit 2; }
command -v umoci >/dev/null || { echo "bench/image_exec.sh: needs umoci (apt-get install umoci)" >&2; exit 2; }
[ -x target/release/sandbox ] || cargo build --release -q
work=$(mktemp -d /var/tmp/image-exec-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
bin=$work/sandbox
cp target/release/sandbox "$bin" # a copy: a just-linked binary runs slower

(
  cd "$work"
  umoci init --layout img >/dev/null
  umoci new --image img:v1 >/dev/null
  umoci unpack --image img:v1 b >/dev/null
  r=b/rootfs
  mkdir -p "$r/bin" "$r/etc" "$r/tmp"
  cp /bin/true "$r/bin/true"
  # The loader and libraries, at the paths the binary asks for.
  for lib in $(ldd /bin/true | grep -o '/[^ ]*'); do
    mkdir -p "$r$(dirname "$lib")"
    cp -L "$lib" "$r$lib"
  done
  umoci repack --image img:v1 b >/dev/null
  umoci config --image img:v1 --config.env PATH=/bin >/dev/null
)
"$bin" --store "$work/store" image import "$work/img" --name bench/true:v1 >/dev/null

python3 - "$bin" "$work/store" "$RUNS" "$WARM" <<'EOF'
import os, statistics, subprocess, sys, time
binary, store, runs, warm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
env = dict(os.environ, SANDBOX_HELPER="off")
rows = {
    "host root": [binary, "--store", store, "exec", "--profile", "strict", "--", "/bin/true"],
    "image": [binary, "--store", store, "exec", "--profile", "strict", "--image", "bench/true:v1", "--", "/bin/true"],
}
def once(argv):
    t0 = time.perf_counter()
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=env, check=True)
    return (time.perf_counter() - t0) * 1e3
for argv in rows.values():
    for _ in range(warm):
        once(argv)
samples = {k: [] for k in rows}
while min(len(v) for v in samples.values()) < runs:
    for k, argv in rows.items():
        samples[k] += [once(argv) for _ in range(50)]
def p99(xs):
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.99 * len(s)))]
load = os.getloadavg()[0]
print(f"/bin/true, strict, in-process, {runs}+ runs each (load avg {load:.2f})")
print("| row | median ms | p99 ms |")
print("|---|---:|---:|")
for k, xs in samples.items():
    print(f"| {k} | {statistics.median(xs):.2f} | {p99(xs):.2f} |")
ratio = statistics.median(samples["image"]) / statistics.median(samples["host root"])
print(f"image / host root: {ratio:.3f}x  (target <= 1.10x: {'PASS' if ratio <= 1.10 else 'FAIL'})")
EOF
