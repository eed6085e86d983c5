"""Predict llama.cpp's memory use for a model, a context size and a layer placement.

The model follows what llama.cpp actually does (checked against its verbose load log on CPU):

* **Placement.** With ``n_gpu_layers = g`` the *last* ``g`` blocks go to GPUs, split between
  devices by ``tensor_split`` exactly as ``llama_model::load_tensors`` does (cumulative
  fractions, ``upper_bound``). The output head counts as layer ``n_layer`` and is offloaded
  only when ``g > n_layer``. token_embd always stays in CPU memory.
* **KV cache.** ``n_ctx`` (padded to 256) × per-layer K+V width × type size, on the device that
  holds the layer.
* **Compute buffer.** ggml's allocator reuses memory, so the buffer is the largest *live set* of
  one stage of the graph, not a sum. Fitted on four synthetic shapes and SmolLM2 (n_ctx
  256..4096, n_batch 64..512; every point within 4%):
  ``max(mask + attention, mask + ffn, output)`` with
  attention = ``n_ub·n_kv·n_head·4`` (the KQ matrix; absent with flash attention)
  + ``n_ub·(5·n_embd + 2·n_embd_kv)·4``, ffn = ``n_ub·(3·n_ff + 4·n_embd)·4``,
  output = ``n_ub·(n_vocab + 3·n_embd)·4``, mask = ``n_kv·n_ub·4`` (f16 with flash attention).
  ``n_ub = min(n_batch, n_ctx)``, as llama-cpp-python clamps it.
* **GPU specifics (not calibrated on real multi-GPU hardware here).** Each GPU holding layers
  gets its own compute buffer. When layers or the output stay on the CPU, llama.cpp's
  ``op_offload`` runs their big prompt matmuls on the first GPU, copying the weight there; that
  copy (the largest CPU-side layer or the output matrix) plus the logits is charged to GPU 0.
  Driver/CUDA context memory is not a llama.cpp buffer: the planner adds it separately.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from agents.pool.gguf_info import GGUFInfo

CTX_PAD = 256
KV_TYPE_SIZES = {  # bytes per element
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
}


@dataclass
class DeviceEstimate:
    """Bytes llama.cpp allocates on one device (GPU or the CPU)."""

    name: str
    kind: str  # "cpu" or "gpu"
    layers: list[int] = field(default_factory=list)
    weights: int = 0
    kv: int = 0
    compute: int = 0
    output: bool = False  # holds the output head

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "n_layers": len(self.layers),
            "layers": [self.layers[0], self.layers[-1]] if self.layers else [],
            "output": self.output,
            "weights_bytes": self.weights,
            "kv_bytes": self.kv,
            "compute_bytes": self.compute,
            "total_bytes": self.total,
        }


@dataclass
class MemoryEstimate:
    n_ctx: int
    n_ubatch: int
    n_gpu_layers: int
    gpus: list[DeviceEstimate]
    cpu: DeviceEstimate

    @property
    def devices(self) -> list[DeviceEstimate]:
        return [*self.gpus, self.cpu]

    @property
    def total(self) -> int:
        return sum(d.total for d in self.devices)

    def as_dict(self) -> dict[str, object]:
        return {
            "n_ctx": self.n_ctx,
            "n_ubatch": self.n_ubatch,
            "n_gpu_layers": self.n_gpu_layers,
            "devices": [d.as_dict() for d in self.devices],
            "total_bytes": self.total,
        }


def padded_ctx(n_ctx: int) -> int:
    """llama.cpp rounds the context (KV cells) up to a multiple of 256."""
    if n_ctx < 1:
        raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
    return -(-n_ctx // CTX_PAD) * CTX_PAD


def kv_bytes_per_layer(info: GGUFInfo, n_ctx: int, kv_type: str = "f16") -> int:
    """K and V cache of one layer for ``n_ctx`` (already padded) cells."""
    try:
        size = KV_TYPE_SIZES[kv_type.lower()]
    except KeyError:
        known = ", ".join(KV_TYPE_SIZES)
        raise ValueError(f"unknown kv_type {kv_type!r} (known: {known})") from None
    return int(n_ctx * (info.n_embd_k_gqa + info.n_embd_v_gqa) * size)


def layer_devices(n_layer: int, n_gpu_layers: int, tensor_split: Sequence[float]) -> list[int]:
    """Device index (-1 = CPU) of layers 0..n_layer; the last entry is the output head.

    Mirrors llama.cpp: the last ``n_gpu_layers`` layers are offloaded and spread by cumulative
    ``tensor_split`` fractions, the output head being "layer n_layer".
    """
    n_dev = len(tensor_split)
    if n_dev == 0 or n_gpu_layers <= 0:
        return [-1] * (n_layer + 1)
    if any(s < 0 for s in tensor_split) or sum(tensor_split) <= 0:
        raise ValueError(
            f"tensor_split needs non-negative shares with a positive sum: {tensor_split}"
        )
    total = float(sum(tensor_split))
    cum, acc = [], 0.0
    for s in tensor_split:
        acc += s
        cum.append(acc / total)
    i_start = max(n_layer - n_gpu_layers, 0)
    act = min(n_gpu_layers, n_layer + 1)
    out = []
    for il in range(n_layer + 1):
        if il < i_start or il - i_start >= act:
            out.append(-1)
        else:
            out.append(min(bisect.bisect_right(cum, (il - i_start) / act), n_dev - 1))
    return out


def compute_stages(info: GGUFInfo, n_ctx: int, n_ubatch: int, flash_attn: bool) -> dict[str, int]:
    """Peak live bytes of the graph's stages (see module docstring for the fit)."""
    n_kv, ub, e = n_ctx, n_ubatch, info.n_embd
    e_kv = info.n_embd_k_gqa
    mask = n_kv * ub * (2 if flash_attn else 4)
    kq = 0 if flash_attn else n_kv * ub * info.n_head * 4
    attn = kq + ub * (5 * e + 2 * e_kv + (e if flash_attn else 0)) * 4
    ffn = ub * (3 * max(info.n_ff, e) + 4 * e) * 4
    out = ub * (info.n_vocab + 3 * e) * 4
    return {"mask": mask, "attention": attn, "ffn": ffn, "output": out}


def estimate(
    info: GGUFInfo,
    n_ctx: int,
    n_gpu_layers: int = 0,
    tensor_split: Sequence[float] | None = None,
    *,
    gpu_names: Sequence[str] | None = None,
    kv_type: str = "f16",
    n_batch: int = 512,
    flash_attn: bool = False,
) -> MemoryEstimate:
    """Bytes per device for loading ``info`` with these llama.cpp settings.

    ``tensor_split`` has one share per GPU (llama-cpp-python's argument); without it, one GPU
    is assumed when ``n_gpu_layers > 0``. The CPU entry counts the weights that stay there
    (mmap'ed or not, they need RAM to run at speed), token embeddings included.
    """
    if n_gpu_layers < 0:
        n_gpu_layers = info.n_layer + 1  # llama.cpp's "-1 = everything"
    n_ctx_p = padded_ctx(n_ctx)
    n_ub = max(1, min(n_batch, n_ctx))
    split = list(tensor_split) if tensor_split else ([1.0] if n_gpu_layers > 0 else [])
    names = list(gpu_names) if gpu_names else [f"gpu{i}" for i in range(len(split))]
    if len(names) != len(split):
        raise ValueError(f"{len(names)} GPU names for {len(split)} tensor_split shares")
    where = layer_devices(info.n_layer, n_gpu_layers, split)
    gpus = [DeviceEstimate(n, "gpu") for n in names]
    cpu = DeviceEstimate("cpu", "cpu")

    def dev(i: int) -> DeviceEstimate:
        return cpu if i < 0 else gpus[i]

    layer_w = info.layer_bytes()
    kv_layer = kv_bytes_per_layer(info, n_ctx_p, kv_type)
    for il in range(info.n_layer):
        d = dev(where[il])
        d.layers.append(il)
        d.weights += layer_w[il]
        d.kv += kv_layer
    out_dev = dev(where[info.n_layer])
    out_dev.output = True
    tied = info.tensor_bytes("output.weight") == 0
    cpu.weights += info.input_bytes + info.other_bytes
    if out_dev is cpu and tied:
        cpu.weights += info.tensor_bytes("output_norm.weight")
    else:  # tied embeddings offloaded: llama.cpp duplicates token_embd on that device
        out_dev.weights += info.output_bytes

    st = compute_stages(info, n_ctx_p, n_ub, flash_attn)
    layer_stage = st["mask"] + max(st["attention"], st["ffn"])
    for d in gpus:
        if d.layers or d.output:
            d.compute = max(layer_stage if d.layers else 0, st["output"] if d.output else 0)
    cpu_has_work = bool(cpu.layers) or cpu.output
    used_gpus = [d for d in gpus if d.layers or d.output]
    if used_gpus and cpu_has_work:
        # op_offload: CPU-resident weights of big batches run on the first GPU via a copy
        biggest = max([layer_w[il] for il in cpu.layers] or [0])
        if cpu.output:
            biggest = max(biggest, info.tensor_bytes("output.weight") or info.input_bytes)
            biggest += st["output"]
        g0 = used_gpus[0]
        g0.compute = max(g0.compute, layer_stage) + biggest
        cpu.compute = st["mask"] + n_ub * 4 * info.n_embd * 4  # inputs and staging only
    elif cpu_has_work:
        cpu.compute = max(layer_stage if cpu.layers else 0, st["output"])
    else:
        cpu.compute = n_ub * info.n_embd * 4 * 2  # embeddings lookup and host staging
    cpu.compute += info.n_vocab * 4  # logits output buffer of one sequence
    return MemoryEstimate(n_ctx_p, n_ub, min(n_gpu_layers, info.n_layer + 1), gpus, cpu)
