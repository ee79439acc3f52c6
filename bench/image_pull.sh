#!/usr/bin/env bash
# What a pull fetches (issue #17's target: "a pull of an image whose layers
# are present fetches only manifest and config"). Debian's docker-registry
# on 127.0.0.1 (a free port, storage under WORK, killed by its PID at the
# end), the images of bench/image_store.sh (a base layer from /usr/share
# and /usr/include shared by app1 and app2) plus app1b (app1's layers, its
# own config), pushed with skopeo; then into an empty store: app1, app2
# (base present), app1b (every layer present: manifest and config only),
# app1b again (everything present: the manifest only). Per pull: time,
# layers fetched/present, bytes and requests as `sandbox image pull --json`
# counts them, and the GETs the registry's own log shows.
#
#   bench/image_pull.sh           WORK=/var/tmp/image-bench (shared with image_store.sh)
#
# Needs root, umoci, skopeo, docker-registry, python3; builds target/release/sandbox.
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
if [ ! -d pull-img ]; then
  umoci init --layout pull-img
  for i in 1 2; do
    umoci new --image pull-img:app$i
    umoci raw add-layer --image pull-img:app$i base.tar
    umoci raw add-layer --image pull-img:app$i app$i.tar
  done
  umoci config --image pull-img:app1 --tag app1b --config.cmd /bin/true
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rm -rf pull-registry pull-store
mkdir -p pull-registry
cat > pull-registry/config.yml <<EOC
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $WORK/pull-registry/data
http:
  addr: 127.0.0.1:$port
EOC
docker-registry serve pull-registry/config.yml > pull-registry/log 2>&1 &
reg=$!
trap 'kill "$reg" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
for t in app1 app2 app1b; do
  skopeo copy -q --dest-tls-verify=false "oci:pull-img:$t" "docker://127.0.0.1:$port/bench:$t"
done
echo "| pull | seconds | layers fetched | present | bytes fetched | requests | registry GETs: manifests | blobs |"
echo "|---|---|---|---|---|---|---|---|"
for t in app1 app2 app1b app1b; do
  before=$(wc -l < pull-registry/log)
  t0=$(date +%s.%N)
  out=$("$bin" --store "$WORK/pull-store" image pull --json "127.0.0.1:$port/bench:$t")
  t1=$(date +%s.%N)
  gets=$(tail -n +"$((before + 1))" pull-registry/log | grep 'response completed' | grep 'http.request.method=GET')
  m=$(grep -c '/manifests/' <<<"$gets" || true)
  b=$(grep -c '/blobs/' <<<"$gets" || true)
  python3 - "$t" "$t0" "$t1" "$m" "$b" "$out" <<'EOP'
import json, sys
t, t0, t1, m, b, out = sys.argv[1:]
p = json.loads(out)
print(f"| {t} | {float(t1) - float(t0):.2f} | {p['layers_fetched']} | {p['layers_present']} | {p['bytes_fetched']} | {p['requests']} | {m} | {b} |")
EOP
done
"$bin" --store "$WORK/pull-store" image du | tail -1
