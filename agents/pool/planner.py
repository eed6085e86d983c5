"""Choose ``n_gpu_layers`` and ``tensor_split`` for a set of (mismatched) GPUs plus the CPU.

Why not split by card size: llama.cpp allocates each layer's KV cache and a compute buffer on
the card that holds the layer, *after* loading the weights. A split proportional to VRAM
(or the hand-tuned ``--tensor_split 1.5 4.5 3``) either wastes a big card or runs the small
one out of memory at context creation. Here every candidate placement is priced with
:func:`agents.pool.estimate.estimate` (weights + KV + compute per device) plus a per-card
driver overhead and safety margin, and layers are added greedily to the card with the most
relative headroom left, so cards fill proportionally to what they can really hold. Layers that
do not fit stay on the CPU. A model that fits on one card goes on one card (splitting a single
sequence across cards only adds transfers).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.pool.devices import Device, format_size
from agents.pool.estimate import DeviceEstimate, MemoryEstimate, estimate
from agents.pool.gguf_info import GGUFInfo

GIB = 1024**3
MIB = 1024**2
GPU_OVERHEAD = 300 * MIB  # CUDA context + cuBLAS workspace: real, but not a llama.cpp buffer
MIN_MARGIN = 256 * MIB
MARGIN_FRACTION = 0.05


def safety_margin(usable: int) -> int:
    """Kept free on every device: 5% of it, at least 256 MiB (fragmentation, other programs)."""
    return max(int(usable * MARGIN_FRACTION), MIN_MARGIN)


@dataclass
class PlanDevice:
    """One device's share of the plan; byte figures come from the estimate."""

    name: str
    kind: str
    usable_bytes: int
    limit_bytes: int  # usable minus safety margin: what the plan may fill
    n_layers: int
    first_layer: int | None
    last_layer: int | None
    output: bool
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    overhead_bytes: int
    share: float
    read_per_token_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes + self.overhead_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.limit_bytes

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "usable_bytes": self.usable_bytes,
            "limit_bytes": self.limit_bytes,
            "n_layers": self.n_layers,
            "first_layer": self.first_layer,
            "last_layer": self.last_layer,
            "output": self.output,
            "weights_bytes": self.weights_bytes,
            "kv_bytes": self.kv_bytes,
            "compute_bytes": self.compute_bytes,
            "overhead_bytes": self.overhead_bytes,
            "total_bytes": self.total_bytes,
            "share": self.share,
            "read_per_token_bytes": self.read_per_token_bytes,
            "fits": self.fits,
        }


@dataclass
class Plan:
    model: str
    n_layer: int
    n_ctx: int
    kv_type: str
    n_gpu_layers: int
    tensor_split: list[float]
    gpus: list[PlanDevice]
    cpu: PlanDevice
    fits: bool
    reason: str
    estimate: MemoryEstimate = field(repr=False)

    @property
    def cpu_layers(self) -> int:
        return self.cpu.n_layers

    @property
    def gpu_layers(self) -> int:
        return sum(g.n_layers for g in self.gpus)

    @property
    def devices(self) -> list[PlanDevice]:
        return [*self.gpus, self.cpu]

    def llama_kwargs(self) -> dict[str, object]:
        """Arguments for ``llama_cpp.Llama`` that reproduce this placement."""
        kw: dict[str, object] = {"n_gpu_layers": self.n_gpu_layers, "n_ctx": self.n_ctx}
        if len(self.tensor_split) > 1 and self.n_gpu_layers > 0:
            kw["tensor_split"] = list(self.tensor_split)
        return kw

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "n_layer": self.n_layer,
            "n_ctx": self.n_ctx,
            "kv_type": self.kv_type,
            "n_gpu_layers": self.n_gpu_layers,
            "tensor_split": self.tensor_split,
            "gpu_layers": self.gpu_layers,
            "cpu_layers": self.cpu_layers,
            "fits": self.fits,
            "reason": self.reason,
            "devices": [d.as_dict() for d in self.devices],
        }


def _split_for(counts: Sequence[int], output: bool) -> tuple[int, list[float]]:
    """n_gpu_layers and integer tensor_split shares giving exactly ``counts`` layers per GPU.

    With the output head offloaded llama.cpp divides by n_layer+1, so the head counts as one
    more share on the last card used (see ``estimate.layer_devices``).
    """
    shares = [float(c) for c in counts]
    n = sum(counts)
    if output and n:
        last = max(i for i, c in enumerate(counts) if c)
        shares[last] += 1
        n += 1
    return n, shares


class _Pricer:
    def __init__(
        self, info: GGUFInfo, gpus: Sequence[Device], n_ctx: int, kw: dict[str, Any]
    ) -> None:
        self.info, self.gpus, self.n_ctx, self.kw = info, gpus, n_ctx, kw
        self.limits = [max(g.usable_bytes - safety_margin(g.usable_bytes), 0) for g in gpus]

    def price(self, counts: Sequence[int], output: bool) -> MemoryEstimate:
        n_gpu, shares = _split_for(counts, output)
        names = [g.name for g in self.gpus]
        return estimate(self.info, self.n_ctx, n_gpu, shares, gpu_names=names, **self.kw)

    def gpu_total(self, d: DeviceEstimate) -> int:
        used = bool(d.layers) or d.output
        return d.total + (GPU_OVERHEAD if used else 0)

    def ok(self, est: MemoryEstimate) -> bool:
        return all(self.gpu_total(d) <= lim for d, lim in zip(est.gpus, self.limits, strict=True))

    def headroom(self, est: MemoryEstimate, i: int) -> float:
        lim = self.limits[i]
        return (lim - self.gpu_total(est.gpus[i])) / lim if lim > 0 else -1.0


def _choose(p: _Pricer, n_layer: int) -> tuple[list[int], bool]:
    g = len(p.gpus)
    # 1. the whole model (output head included) on the single card with the most room
    for i in sorted(range(g), key=lambda i: -p.limits[i]):
        counts = [0] * g
        counts[i] = n_layer
        if p.ok(p.price(counts, True)):
            return counts, True
    # 2. greedy: next layer to the card with the most relative headroom that can take it
    counts = [0] * g
    while sum(counts) < n_layer:
        best, best_room = None, None
        for i in range(g):
            trial = counts.copy()
            trial[i] += 1
            est = p.price(trial, False)
            if not p.ok(est):
                continue
            room = p.headroom(est, i)
            if best_room is None or room > best_room:
                best, best_room = i, room
        if best is None:
            break
        counts[best] += 1
    output = sum(counts) == n_layer and p.ok(p.price(counts, True))
    return counts, output


def plan(
    info: GGUFInfo,
    devices: Sequence[Device],
    n_ctx: int,
    cpu: Device,
    *,
    kv_type: str = "f16",
    n_batch: int = 512,
    flash_attn: bool = False,
) -> Plan:
    """Place ``info``'s layers on ``devices`` (GPUs, in backend order) and the CPU."""
    gpus = [d for d in devices if d.kind != "cpu"]
    kw = {"kv_type": kv_type, "n_batch": n_batch, "flash_attn": flash_attn}
    pricer = _Pricer(info, gpus, n_ctx, kw)
    counts, output = _choose(pricer, info.n_layer) if gpus else ([], False)
    est = pricer.price(counts, output)
    n_gpu, shares = _split_for(counts, output)
    total_share = sum(shares) or 1.0
    row_bytes = info.input_bytes // max(info.n_vocab, 1)  # one token_embd row per token

    def mk(d: DeviceEstimate, usable: int, limit: int, overhead: int, share: float) -> PlanDevice:
        read = d.weights + d.kv
        if d.kind == "cpu":
            read += row_bytes - info.input_bytes
        return PlanDevice(
            name=d.name,
            kind=d.kind,
            usable_bytes=usable,
            limit_bytes=limit,
            n_layers=len(d.layers),
            first_layer=d.layers[0] if d.layers else None,
            last_layer=d.layers[-1] if d.layers else None,
            output=d.output,
            weights_bytes=d.weights,
            kv_bytes=d.kv,
            compute_bytes=d.compute,
            overhead_bytes=overhead,
            share=share,
            read_per_token_bytes=max(read, 0),
        )

    plan_gpus = []
    for i, (dev, d) in enumerate(zip(gpus, est.gpus, strict=True)):
        used = bool(d.layers) or d.output
        share = shares[i] / total_share if shares else 0.0
        ovh = GPU_OVERHEAD if used else 0
        plan_gpus.append(mk(d, dev.usable_bytes, pricer.limits[i], ovh, share))
    cpu_usable = cpu.usable_bytes
    cpu_limit = max(cpu_usable - safety_margin(cpu_usable), 0)
    plan_cpu = mk(est.cpu, cpu_usable, cpu_limit, 0, 0.0)

    fits, reason = True, ""
    bad_gpu = next((g for g in plan_gpus if not g.fits), None)
    if bad_gpu is not None:  # only when not even one layer fits and the pricer allowed none
        fits, reason = False, f"{bad_gpu.name} over budget"
    elif not plan_cpu.fits:
        fits = False
        need = plan_cpu.total_bytes
        reason = (
            f"does not fit: {plan_cpu.n_layers} layers left for the CPU need "
            f"{format_size(need)} of RAM but the budget of {format_size(plan_cpu.usable_bytes)}"
            f" allows {format_size(plan_cpu.limit_bytes)} after its safety margin"
            f" (GPUs hold {sum(counts)} of {info.n_layer} layers); use a smaller quantisation,"
            f" a smaller n_ctx or a quantised KV cache"
        )
    name = info.path.name
    return Plan(
        model=name,
        n_layer=info.n_layer,
        n_ctx=est.n_ctx,
        kv_type=kv_type,
        n_gpu_layers=n_gpu,
        tensor_split=shares,
        gpus=plan_gpus,
        cpu=plan_cpu,
        fits=fits,
        reason=reason,
        estimate=est,
    )


def _gib(n: int) -> str:
    """GiB with two decimals; below 0.01 GiB (which would read 0.00) MiB, marked ``M``."""
    if 0 < n < GIB / 100:
        return f"{n / 2**20:.1f}M"
    return f"{n / GIB:.2f}"


def render_table(p: Plan) -> str:
    """Plain-text table (≤ 80 columns) of the plan, one row per device."""
    lines = [
        f"{p.model[:50]}: {p.n_layer} layers, n_ctx {p.n_ctx}, KV {p.kv_type}",
        f"n_gpu_layers={p.n_gpu_layers}  tensor_split="
        + (" ".join(f"{s:g}" for s in p.tensor_split) if p.tensor_split else "-"),
    ]
    head = (
        f"{'Device':<14} {'Lay':>4} {'Range':>7} {'Weights':>7} {'KV':>6} {'Other':>6} "
        f"{'Total':>7} {'Budget':>7} {'Use%':>4} {'Read/t':>7}"
    )
    lines += [head, "-" * len(head)]
    for d in p.devices:
        rng = "-" if d.first_layer is None else f"{d.first_layer}-{d.last_layer}"
        if d.output:
            rng += "+o"
        use = 100 * d.total_bytes / d.usable_bytes if d.usable_bytes > 0 else 0.0
        flag = "" if d.fits else "!"
        lines.append(
            f"{d.name[:14]:<14} {d.n_layers:>4} {rng:>7} {_gib(d.weights_bytes):>7} "
            f"{_gib(d.kv_bytes):>6} {_gib(d.compute_bytes + d.overhead_bytes):>6} "
            f"{_gib(d.total_bytes):>7} {_gib(d.usable_bytes):>7} {use:>3.0f}{flag:1} "
            f"{_gib(d.read_per_token_bytes):>7}"
        )
    lines.append("GiB (M: MiB); Other = compute buffer + driver overhead; +o = output head;")
    lines.append("Read/t = weights + full KV read per generated token.")
    lines += textwrap.wrap("fits: yes" if p.fits else f"fits: NO - {p.reason}", 80)
    return "\n".join(lines)
