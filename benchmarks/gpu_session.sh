#!/bin/bash
# Issue #18's GPU measurements on a lent H200, in stages that each fit one 10-minute call (the
# machine keeps /tmp between calls only while it stays warm). From the checkout root, with
# gpucarry/ (../shared/gpu/prepare-carry.sh and prepare-vulkan.sh) and .whl/ (the project's
# wheels for Python 3.12) carried:
#   bash benchmarks/gpu_session.sh s3a   # both builds, device_top_k (device vs host top-k)
#   bash benchmarks/gpu_session.sh s3b   # `hermes doctor` with the judge on Vulkan; paired_f16,
#                                        # paired_q8 and peer with the faster path s3a found;
#                                        # the Vulkan judge at share 0.05 (9 pairs, 768 tokens).
#                                        # Builds again first on a fresh machine.
#   bash benchmarks/gpu_session.sh s3c   # (a fresh machine) the CUDA build alone, the host
#                                        # sampling cost, first_turn, device_top_k on Q8_0
#   bash benchmarks/gpu_session.sh s4a   # the CUDA build, the host sampling cost, paired_f16
#                                        # (with the sampled and greedy caps, session 8)
#   bash benchmarks/gpu_session.sh s4b   # right after s4a: paired_q8 and the peer
#   (session 9 ran s4a and s4b again with the column-maxima top-k of agents/pool/sampling.py)
# Results and logs go to $OUT (or /tmp/out). The first two sessions' stages (build, rest, extra,
# s1, s2) are in git history (577e1a9); every section they ran is a bench_gpu.py section.
set -u -o pipefail
export PYTHONUNBUFFERED=1
O=${OUT:-/tmp/out}; mkdir -p "$O"
T0=$(date +%s)
left() { echo $(( ${1:-575} - ($(date +%s) - T0) )); }  # seconds left of this call
nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,power.limit --format=csv
gen() {  # the synthetic models, written while the builds compile
  PYTHONPATH=/tmp/site:$PWD python3 - <<'PY'
import sys, types
from pathlib import Path
sys.argv = ["x"]
sys.path.insert(0, "benchmarks")
import bench_gpu as b
a = types.SimpleNamespace(work=Path("/tmp/hermes-gpu"), smoke=False)
a.work.mkdir(parents=True, exist_ok=True)
b.model_file(a.work, "0.85B", False, random_weights=True)
b.q8_model(a)
import bench_vulkan_judge as v
w = Path("/tmp/hermes-vk"); w.mkdir(parents=True, exist_ok=True)
v.gguf(w, "primary", v.PRIMARY); v.gguf(w, "judge", v.JUDGE)
print("models written")
PY
}
prepare() {  # the wheels, then the builds named ($@) with the models written meanwhile
  local pip="python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site"
  $pip .whl/*.whl
  $pip $(ls gpucarry/whl/*.whl | grep -v typing_extensions)  # one typing_extensions: two stop pip
  gen >"$O/gen.log" 2>&1 &
  bash scripts/build_llama_gpu.sh "$@" 2>&1 | tee "$O/build.log" | grep -v '^ '
  wait
  tail -3 "$O/gen.log"
}
bench() {  # bench() SECONDS ARGS: bench_gpu.py for at most SECONDS, its summary lines shown
  local limit=$1; shift
  timeout "$limit" python3 benchmarks/bench_gpu.py --tokens 256 "$@" 2>&1 | grep -v '^ \|^{\|^}'
}
case ${1:-} in
  s3a)
    prepare cuda vulkan
    export PYTHONPATH=/tmp/llama-cuda:/tmp/site:$PWD
    echo "time left: $(left) s"
    bench "$(left)" --sections device_top_k --out "$O/gpu_device_top_k.json" \
      | tee "$O/device_top_k.log"
    cp "$O/gpu_device_top_k.json" /tmp/hermes-gpu/ 2>/dev/null ;;
  s3b)
    if [ ! -d /tmp/llama-cuda ]; then
      echo "no builds here (a fresh machine): building again, less is measured"
      prepare cuda vulkan
    fi
    export PYTHONPATH=/tmp/llama-cuda:/tmp/site:$PWD
    . gpucarry/vk/vulkan-env.sh >/dev/null 2>&1
    # the pool's sampling path for the paired runs: the device's top-k where s3a found it faster
    flag=$(python3 -c 'import json,sys
try: d=json.load(open("/tmp/hermes-gpu/gpu_device_top_k.json"))["device_top_k"]
except Exception: print("off"); sys.exit()
m=[d[k]["device_vs_host_chain"]["median"] for k in d if "device_vs_host_chain" in d[k]]
print("on" if m and min(m) > 1.0 else "off")')
    echo "device top-k for the paired runs: $flag"
    PYTHONPATH=/tmp/llama-vulkan:/tmp/site:$PWD timeout 60 python3 benchmarks/bench_vulkan_judge.py \
      --only-doctor --judge-llama-cpp /tmp/llama-vulkan --out "$O/doctor_vulkan.json" 2>&1 | tail -30
    bench "$(( $(left) - 200 ))" --sections paired_f16,paired_q8,peer --device-top-k "$flag" \
      --batched-bench /tmp/llama-cuda/llama-batched-bench --out "$O/gpu_s3b.json" | tee "$O/s3b.log"
    echo "time left for the judge: $(left) s"
    timeout "$(left)" python3 benchmarks/bench_vulkan_judge.py --judge-llama-cpp /tmp/llama-vulkan \
      --shares 0.05 --pairs 9 --tokens 768 --out "$O/vulkan_judge.json" 2>&1 | tee "$O/vulkan.log" \
      | grep -v '^ ' | head -c 9000 ;;
  s3c)
    prepare cuda
    export PYTHONPATH=/tmp/llama-cuda:/tmp/site:$PWD
    timeout 60 python3 benchmarks/bench_sampling.py --model /tmp/hermes-gpu/0.85B-0-rnd.gguf \
      --ngl -1 --steps 200 --out "$O/sampling_h200.json" 2>&1 | grep -v '^ \|^{\|^}'
    bench 70 --sections first_turn --out "$O/gpu_first_turn.json" | tee "$O/first_turn.log"
    echo "time left: $(left) s"
    bench "$(left)" --sections device_top_k --models q8_0_1.5B --pairs 3 \
      --out "$O/gpu_device_top_k_q8.json" | tee "$O/device_top_k_q8.log" ;;
  s4a)  # session 8: the CUDA build, the host sampling cost, paired_f16 with the sampled caps
    prepare cuda
    export PYTHONPATH=/tmp/llama-cuda:/tmp/site:$PWD
    timeout 60 python3 benchmarks/bench_sampling.py --model /tmp/hermes-gpu/0.85B-0-rnd.gguf \
      --ngl -1 --steps 200 --out "$O/sampling_h200.json" 2>&1 | grep -v '^ \|^{\|^}'
    echo "time left: $(left) s"
    bench "$(left)" --sections paired_f16 --out "$O/gpu_s4a.json" | tee "$O/s4a.log" ;;
  s4b)  # session 8, the same machine right after s4a: paired_q8 and the peer
    [ -d /tmp/llama-cuda ] || prepare cuda
    export PYTHONPATH=/tmp/llama-cuda:/tmp/site:$PWD
    bench "$(left)" --sections paired_q8,peer --batched-bench /tmp/llama-cuda/llama-batched-bench \
      --out "$O/gpu_s4b.json" | tee "$O/s4b.log" ;;
  *) echo "usage: gpu_session.sh s3a|s3b|s3c|s4a|s4b"; exit 2 ;;
esac
echo "stage ${1:-} took $(( $(date +%s) - T0 )) s"
