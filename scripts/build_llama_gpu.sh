#!/bin/bash
# Builds llama-cpp-python on the lent GPU machine from the carried packages (gpucarry/, made here by
# ../shared/gpu/prepare-carry.sh and prepare-vulkan.sh; see the README's GPU section):
#   cuda    -> /tmp/llama-cuda    CUDA for Hopper (sm_90), plus llama-batched-bench and llama-bench
#              built from the same CMake tree (the same vendored llama.cpp, the same libraries)
#   vulkan  -> /tmp/llama-vulkan  Vulkan only (-DGGML_VULKAN=on), for the judge's own process
# Usage, from the checkout root: bash scripts/build_llama_gpu.sh cuda vulkan   (both run in parallel)
# Afterwards: PYTHONPATH=/tmp/llama-cuda:/tmp/site (hermes) and /tmp/llama-vulkan (the judge).
# A build already there is kept. Logs: /tmp/build-NAME.log.
set -u
C=$PWD/gpucarry
[ -f "$C/llama-cpp-python-src.tar.gz" ] || { echo "no gpucarry/: run prepare-carry.sh here first"; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$C"/whl/*.whl
export PYTHONPATH=/tmp/site
# The image's CC/CXX (/opt/gcc) produce libraries that crash once a model is offloaded.
export CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++
export CUDACXX=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
COMMON="-DLLAVA_BUILD=off -DLLAMA_OPENSSL=off"
VK=/tmp/vkroot

build() {  # NAME JOBS CMAKE_ARGS...: one llama-cpp-python wheel from its own copy of the source
  local name=$1 jobs=$2; shift 2
  local out=/tmp/llama-$name log=/tmp/build-$name.log start=$(date +%s)
  if [ -d "$out/llama_cpp/lib" ]; then echo "$name: already built in $out"; return 0; fi
  rm -rf "/tmp/src-$name" "/tmp/wheel-$name" && mkdir -p "/tmp/src-$name"
  tar xzf "$C/llama-cpp-python-src.tar.gz" -C "/tmp/src-$name"  # each build installs into its source tree
  local src; src=$(ls -d /tmp/src-$name/llama_cpp_python-*/)
  if CMAKE_ARGS="$*" CMAKE_BUILD_PARALLEL_LEVEL=$jobs python3 -m pip wheel -q --no-build-isolation \
       --no-deps -C build-dir=/tmp/cmake-$name -w "/tmp/wheel-$name" "$src" >"$log" 2>&1 &&
     python3 -m pip install -q --no-index --no-deps --no-compile --target "$out" /tmp/wheel-$name/*.whl >>"$log" 2>&1; then
    echo "$name: llama-cpp-python built in $(( $(date +%s) - start )) s into $out"
  else
    echo "$name: BUILD FAILED after $(( $(date +%s) - start )) s; last lines of $log:"; tail -25 "$log"; return 1
  fi
  if [ "$name" = cuda ]; then  # the peer tools, from the same tree: only they get compiled now
    local b=/tmp/cmake-cuda t0=$(date +%s)
    if cmake -S "$src" -B "$b" -DLLAMA_BUILD_TOOLS=ON >>"$log" 2>&1 &&
       cmake --build "$b" -j "$jobs" --target llama-batched-bench llama-bench >>"$log" 2>&1; then
      cp "$(find "$b" -name llama-batched-bench -type f -perm -u+x | head -1)" "$(find "$b" -name llama-bench -type f -perm -u+x | head -1)" "$out/"
      echo "cuda: llama-batched-bench and llama-bench in $out ($(( $(date +%s) - t0 )) s)"
    else
      echo "cuda: tools FAILED; last lines:"; tail -15 "$log"
    fi
  fi
}

pids=()
for name in "$@"; do
  case $name in
    cuda) build cuda 16 -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_NCCL=off $COMMON & pids+=($!) ;;
    vulkan)
      . "$C/vk/vulkan-env.sh"  # loader into /, headers and glslc into /tmp/vkroot, driver variables
      build vulkan 8 -DGGML_VULKAN=on -DVulkan_INCLUDE_DIR=$VK/usr/include \
        -DVulkan_LIBRARY=$VK/usr/lib/x86_64-linux-gnu/libvulkan.so.1 \
        -DVulkan_GLSLC_EXECUTABLE=$VK/usr/bin/glslc -DCMAKE_CXX_FLAGS=-I$VK/usr/include $COMMON & pids+=($!) ;;
    *) echo "unknown build $name (cuda, vulkan)"; exit 2 ;;
  esac
done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
