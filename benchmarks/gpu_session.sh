#!/bin/bash
# One lent-H200 session for issue #18, in stages that each fit one 10-minute call (the machine
# keeps /tmp between calls only while it stays warm). From the checkout root, gpucarry/ carried:
#   bash benchmarks/gpu_session.sh build   # both builds (+ synthetic models meanwhile), then paired_f16
#   bash benchmarks/gpu_session.sh rest    # paired_q8, peer, first_turn, the Vulkan judge
#   bash benchmarks/gpu_session.sh extra   # both builds again (a fresh machine), the sampler
#                                          # section, `hermes doctor` with the judge on Vulkan
#                                          # (needs .whl/: jsonschema and friends, carried)
# Issue #18's second session (one-pass sampling, pipelined batched steps, the judge giving way):
#   bash benchmarks/gpu_session.sh s1      # both builds, bench_sampling on the GPU, paired_f16
#   bash benchmarks/gpu_session.sh s2      # (builds again only on a fresh machine) paired_q8,
#                                          # peer, sampler, the Vulkan judge with --shares
# Issue #18's third session (the top-k sampled on the device, the judge's share re-measured):
#   bash benchmarks/gpu_session.sh s3a     # both builds, device_top_k
#   bash benchmarks/gpu_session.sh s3b     # `hermes doctor` on Vulkan, paired_f16, paired_q8 and
#                                          # peer with the faster sampling path s3a found, the
#                                          # Vulkan judge at its default share (9 pairs of
#                                          # 768 tokens); carry .whl/ (the project's wheels)
#   bash benchmarks/gpu_session.sh s3c     # (a fresh machine) the CUDA build, the host sampling
#                                          # cost, first_turn, device_top_k on Q8_0 (3 runs)
# Results and logs go to $OUT (or /tmp/out).
set -u -o pipefail
export PYTHONUNBUFFERED=1
O=${OUT:-/tmp/out}; mkdir -p "$O"
T0=$(date +%s)
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
case ${1:-} in
  build)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site gpucarry/whl/*.whl
    gen >"$O/gen.log" 2>&1 &
    bash scripts/build_llama_gpu.sh cuda vulkan 2>&1 | tee "$O/build.log"
    wait
    cat "$O/gen.log"
    export PYTHONPATH=/tmp/llama-cuda:/tmp/site:$PWD
    left=$(( 560 - ($(date +%s) - T0) ))
    echo "time left for paired_f16: $left s"
    if [ "$left" -gt 60 ]; then
      timeout $left python3 benchmarks/bench_gpu.py --sections paired_f16 --tokens 256 \
        --out "$O/gpu_paired_f16.json" 2>&1 | grep -v '^ \|^{\|^}' | tee "$O/paired_f16.log"
    fi ;;
  rest)
    export PYTHONPATH=/tmp/llama-cuda:/tmp/site:$PWD
    . gpucarry/vk/vulkan-env.sh >/dev/null 2>&1
    timeout 280 python3 benchmarks/bench_gpu.py --sections paired_q8,peer,first_turn --tokens 256 \
      --batched-bench /tmp/llama-cuda/llama-batched-bench --out "$O/gpu_rest.json" 2>&1 \
      | grep -v '^ \|^{\|^}' | tee "$O/rest.log"
    timeout 250 python3 benchmarks/bench_vulkan_judge.py --judge-llama-cpp /tmp/llama-vulkan \
      --out "$O/vulkan_judge.json" 2>&1 | tee "$O/vulkan.log" | grep -v '^ ' | head -c 5000 ;;
  extra)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site gpucarry/whl/*.whl .whl/*.whl
    gen >"$O/gen.log" 2>&1 &
    bash scripts/build_llama_gpu.sh cuda vulkan 2>&1 | tee "$O/build.log"
    wait
    export PYTHONPATH=/tmp/llama-cuda:/tmp/site:$PWD
    . gpucarry/vk/vulkan-env.sh >/dev/null 2>&1
    PYTHONPATH=/tmp/llama-vulkan:/tmp/site:$PWD timeout 60 python3 benchmarks/bench_vulkan_judge.py \
      --only-doctor --judge-llama-cpp /tmp/llama-vulkan --out "$O/doctor_vulkan.json" 2>&1 | tail -40
    left=$(( 570 - ($(date +%s) - T0) ))
    echo "time left for sampler: $left s"
    timeout $left python3 benchmarks/bench_gpu.py --sections sampler --tokens 256 \
      --out "$O/gpu_sampler.json" 2>&1 | grep -v '^ \|^{\|^}' | tee "$O/sampler.log" ;;
  s1|s2)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site gpucarry/whl/*.whl
    gen >"$O/gen-$1.log" 2>&1 &
    bash scripts/build_llama_gpu.sh cuda vulkan 2>&1 | tee "$O/build-$1.log" | grep -v '^ '
    wait
    tail -3 "$O/gen-$1.log"
    export PYTHONPATH=/tmp/llama-cuda:/tmp/site:$PWD
    left() { echo $(( ${1:-570} - ($(date +%s) - T0) )); }
    if [ "$1" = s1 ]; then
      timeout 60 python3 benchmarks/bench_sampling.py --model /tmp/hermes-gpu/0.85B-0-rnd.gguf \
        --ngl -1 --steps 200 --out "$O/sampling_h200.json" 2>&1 | grep -v '^ \|^{\|^}'
      echo "time left for paired_f16: $(left) s"
      [ "$(left)" -gt 45 ] && timeout "$(left)" python3 benchmarks/bench_gpu.py --sections paired_f16 \
        --tokens 256 --out "$O/gpu_paired_f16.json" 2>&1 | grep -v '^ \|^{\|^}' | tee "$O/paired_f16.log"
    else
      . gpucarry/vk/vulkan-env.sh >/dev/null 2>&1
      echo "time left: $(left) s"
      timeout "$(( $(left) - 170 ))" python3 benchmarks/bench_gpu.py --sections paired_q8,peer,sampler,knobs \
        --tokens 256 --batched-bench /tmp/llama-cuda/llama-batched-bench --out "$O/gpu_s2.json" 2>&1 \
        | grep -v '^ \|^{\|^}' | tee "$O/s2.log"
      echo "time left for the judge: $(left) s"
      timeout "$(left)" python3 benchmarks/bench_vulkan_judge.py --judge-llama-cpp /tmp/llama-vulkan \
        --out "$O/vulkan_judge.json" 2>&1 | tee "$O/vulkan.log" | grep -v '^ ' | head -c 9000
    fi ;;
  s3a)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      $(ls gpucarry/whl/*.whl | grep -v typing_extensions)  # one typing_extensions: two stop pip
    gen >"$O/gen-s3.log" 2>&1 &
    bash scripts/build_llama_gpu.sh cuda vulkan 2>&1 | tee "$O/build-s3.log" | grep -v '^ '
    wait
    tail -3 "$O/gen-s3.log"
    export PYTHONPATH=/tmp/llama-cuda:/tmp/site:$PWD
    left() { echo $(( ${1:-575} - ($(date +%s) - T0) )); }
    echo "time left: $(left) s"
    timeout "$(left)" python3 benchmarks/bench_gpu.py --sections device_top_k --tokens 256 \
      --out "$O/gpu_device_top_k.json" 2>&1 | grep -v '^ \|^{\|^}' | tee "$O/device_top_k.log"
    cp "$O/gpu_device_top_k.json" /tmp/hermes-gpu/ 2>/dev/null ;;
  s3b)
    export PYTHONPATH=/tmp/llama-cuda:/tmp/site:$PWD
    left() { echo $(( ${1:-575} - ($(date +%s) - T0) )); }
    if [ ! -d /tmp/llama-cuda ]; then  # a fresh machine: the builds first, less is measured
      echo "no builds here (a fresh machine): building again"
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site gpucarry/whl/*.whl .whl/*.whl
      gen >"$O/gen-s3b.log" 2>&1 &
      bash scripts/build_llama_gpu.sh cuda vulkan 2>&1 | tee "$O/build-s3b.log" | grep -v '^ '
      wait
    fi
    . gpucarry/vk/vulkan-env.sh >/dev/null 2>&1
    # the pool's sampling path the paired runs use: the device's top-k where s3a found it faster
    flag=$(python3 -c 'import json,sys
try: d=json.load(open("/tmp/hermes-gpu/gpu_device_top_k.json"))["device_top_k"]
except Exception: print("off"); sys.exit()
m=[d[k]["device_vs_host_chain"]["median"] for k in d if "device_vs_host_chain" in d[k]]
print("on" if m and min(m) > 1.0 else "off")')
    echo "device top-k for the paired runs: $flag"
    PYTHONPATH=/tmp/llama-vulkan:/tmp/site:$PWD timeout 60 python3 benchmarks/bench_vulkan_judge.py \
      --only-doctor --judge-llama-cpp /tmp/llama-vulkan --out "$O/doctor_vulkan.json" 2>&1 | tail -30
    timeout "$(( $(left) - 200 ))" python3 benchmarks/bench_gpu.py --sections paired_f16,paired_q8,peer \
      --device-top-k "$flag" --tokens 256 --batched-bench /tmp/llama-cuda/llama-batched-bench \
      --out "$O/gpu_s3b.json" 2>&1 | grep -v '^ \|^{\|^}' | tee "$O/s3b.log"
    echo "time left for the judge: $(left) s"
    timeout "$(left)" python3 benchmarks/bench_vulkan_judge.py --judge-llama-cpp /tmp/llama-vulkan \
      --shares 0.05 --pairs 9 --tokens 768 --out "$O/vulkan_judge.json" 2>&1 | tee "$O/vulkan.log" \
      | grep -v '^ ' | head -c 9000 ;;
  s3c)  # a fresh machine: the CUDA build alone, the first turn again, device_top_k on Q8_0
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      $(ls gpucarry/whl/*.whl | grep -v typing_extensions)
    gen >"$O/gen-s3c.log" 2>&1 &
    bash scripts/build_llama_gpu.sh cuda 2>&1 | tee "$O/build-s3c.log" | grep -v '^ '
    wait
    tail -3 "$O/gen-s3c.log"
    export PYTHONPATH=/tmp/llama-cuda:/tmp/site:$PWD
    left() { echo $(( ${1:-575} - ($(date +%s) - T0) )); }
    timeout 60 python3 benchmarks/bench_sampling.py --model /tmp/hermes-gpu/0.85B-0-rnd.gguf \
      --ngl -1 --steps 200 --out "$O/sampling_h200.json" 2>&1 | grep -v '^ \|^{\|^}'
    timeout 70 python3 benchmarks/bench_gpu.py --sections first_turn --tokens 256 \
      --out "$O/gpu_first_turn.json" 2>&1 | grep -v '^ \|^{\|^}' | tee "$O/first_turn.log"
    echo "time left: $(left) s"
    timeout "$(left)" python3 benchmarks/bench_gpu.py --sections device_top_k --models q8_0_1.5B \
      --pairs 3 --tokens 256 --out "$O/gpu_device_top_k_q8.json" 2>&1 | grep -v '^ \|^{\|^}' \
      | tee "$O/device_top_k_q8.log" ;;
  *) echo "usage: gpu_session.sh build|rest|extra|s1|s2|s3a|s3b|s3c"; exit 2 ;;
esac
echo "stage ${1:-} took $(( $(date +%s) - T0 )) s"
