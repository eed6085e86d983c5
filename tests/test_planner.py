"""Device parsing and the multi-GPU layer planner.

There is no GPU here, so GPUs are ``Device`` values (``fake`` in the test names): the planner
only needs their memory sizes. The models are real GGUF files (the embedded SmolLM2 and a
header-only Qwen2.5-32B Q4_K_M stand-in) or, for the property test, ``GGUFInfo`` values built
in memory from random shapes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.models import resolve_model_path
from agents.pool.devices import (
    Device,
    cpu_device,
    detect_nvidia_gpus,
    format_size,
    parse_meminfo,
    parse_nvidia_smi,
    parse_size,
)
from agents.pool.estimate import layer_devices
from agents.pool.gguf_info import GGUFInfo, TensorInfo, read_gguf_info
from agents.pool.planner import plan, render_table
from tests.gguf_factory import write_qwen25_32b_q4_k_m

GIB = 1024**3
MIB = 1024**2


@pytest.fixture(scope="module")
def qwen32b(tmp_path_factory: pytest.TempPathFactory) -> GGUFInfo:
    path = write_qwen25_32b_q4_k_m(tmp_path_factory.mktemp("big") / "qwen2.5-32b-q4_k_m.gguf")
    return read_gguf_info(path)


def gpu(name: str, size: str) -> Device:
    return Device(name, "cuda", parse_size(size))


SEED_RIG = [gpu("cuda0 4GiB", "4GiB"), gpu("cuda1 8GiB", "8GiB"), gpu("cuda2 6GiB", "6GiB")]
SEED_CPU = Device("cpu", "cpu", 64 * GIB)


def assert_plan_matches_llama_cpp_placement(p) -> None:  # noqa: ANN001
    """The n_gpu_layers/tensor_split we hand to llama.cpp put each layer where we priced it."""
    where = layer_devices(p.n_layer, p.n_gpu_layers, p.tensor_split)
    for i, g in enumerate(p.gpus):
        assert where[: p.n_layer].count(i) == g.n_layers
        assert (where[p.n_layer] == i) == g.output
    assert where[: p.n_layer].count(-1) == p.cpu.n_layers


# ---------------------------------------------------------------- devices


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8GiB", 8 * GIB),
        ("512MiB", 512 * MIB),
        ("1.5GB", 1_500_000_000),
        (" 2 gib ", 2 * GIB),
        ("1024", 1024),
        (4096, 4096),
        ("0.5TiB", 512 * GIB),
    ],
)
def test_parse_size_accepts_common_spellings(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "8 GiBs", "-1GiB", "1,5GB", "eight", "8 G B", "nan"])
def test_parse_size_rejects_garbage_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size") as exc:
        parse_size(text)
    assert repr(text) in str(exc.value)


NVIDIA_SMI_SAMPLE = """\
0, NVIDIA GeForce GTX 1650, 4096, 3712
1, NVIDIA GeForce RTX 3070, 8192, 7933
2, NVIDIA GeForce RTX 2060, 6144, [N/A]
"""


def test_parse_nvidia_smi_sample_output() -> None:
    devs = parse_nvidia_smi(NVIDIA_SMI_SAMPLE)
    assert [d.index for d in devs] == [0, 1, 2]
    assert devs[0].name == "cuda0 NVIDIA GeForce GTX 1650"
    assert devs[1].budget_bytes == 8192 * MIB and devs[1].free_bytes == 7933 * MIB
    assert devs[2].free_bytes is None and devs[2].usable_bytes == 6144 * MIB
    assert devs[0].usable_bytes == 3712 * MIB  # free memory caps the budget
    assert parse_nvidia_smi("\n") == []
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate with the driver")


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a real driver is present")
def test_detect_nvidia_gpus_without_a_driver_is_empty() -> None:
    assert detect_nvidia_gpus() == []


def test_cpu_budget_from_meminfo_or_config() -> None:
    total, avail = parse_meminfo("MemTotal:  65851340 kB\nMemFree: 1 kB\nMemAvailable: 1024 kB\n")
    assert (total, avail) == (65851340 * 1024, 1024 * 1024)
    here = cpu_device()
    assert here.kind == "cpu" and here.budget_bytes > 0
    assert cpu_device("12GiB").budget_bytes == 12 * GIB
    assert format_size(3 * GIB // 2) == "1.50 GiB"


# ---------------------------------------------------------------- planner on the seed rig


def test_fake_seed_rig_split_for_qwen32b(qwen32b: GGUFInfo) -> None:
    p = plan(qwen32b, SEED_RIG, 4096, SEED_CPU)
    small, big, mid = p.gpus
    assert p.fits, p.reason
    assert big.n_layers > mid.n_layers > small.n_layers > 0
    assert 36 <= p.gpu_layers <= 56  # the seed ran 40 by hand; the rest goes to the CPU
    assert p.cpu_layers == 64 - p.gpu_layers and p.cpu.output
    for d in p.gpus:  # weights + KV + compute + driver overhead, with a margin to spare
        assert d.total_bytes <= d.usable_bytes - 256 * MIB
        assert d.kv_bytes == d.n_layers * 16 * MIB  # 4096 × 8 × 128 × 2 × f16
    assert p.tensor_split == [float(g.n_layers) for g in p.gpus]
    assert p.n_gpu_layers == p.gpu_layers
    assert_plan_matches_llama_cpp_placement(p)
    table = render_table(p)
    assert all(len(line) <= 80 for line in table.splitlines())
    assert "cuda1 8GiB" in table and "fits: yes" in table
    json.dumps(p.as_dict())  # for `hermes plan --json`


def test_fake_seed_rig_bigger_context_moves_layers_to_cpu(qwen32b: GGUFInfo) -> None:
    short = plan(qwen32b, SEED_RIG, 4096, SEED_CPU)
    long = plan(qwen32b, SEED_RIG, 32768, SEED_CPU)
    assert long.gpu_layers < short.gpu_layers
    assert all(d.total_bytes <= d.limit_bytes for d in long.gpus)
    q8 = plan(qwen32b, SEED_RIG, 32768, SEED_CPU, kv_type="q8_0", flash_attn=True)
    assert q8.gpu_layers > long.gpu_layers


def test_embedded_model_fits_on_one_fake_card() -> None:
    info = read_gguf_info(resolve_model_path("embedded:smollm2-135m"))
    p = plan(info, SEED_RIG, 2048, SEED_CPU)
    assert p.fits and p.cpu_layers == 0
    assert [g.n_layers for g in p.gpus] == [0, 30, 0]  # all on the card with most room
    assert p.gpus[1].output and p.n_gpu_layers == 31
    assert p.cpu.weights_bytes == info.input_bytes  # llama.cpp keeps token_embd in RAM
    assert_plan_matches_llama_cpp_placement(p)


def test_cpu_only_plan_for_the_embedded_model() -> None:
    info = read_gguf_info(resolve_model_path("embedded:smollm2-135m"))
    p = plan(info, [], 2048, cpu_device("4GiB"))
    assert p.fits and p.n_gpu_layers == 0 and p.tensor_split == [] and p.cpu_layers == 30
    assert p.llama_kwargs() == {"n_gpu_layers": 0, "n_ctx": 2048}
    assert "fits: yes" in render_table(p)


def test_model_that_cannot_fit_anywhere_says_why(qwen32b: GGUFInfo) -> None:
    p = plan(qwen32b, [gpu("cuda0", "2GiB")], 4096, Device("cpu", "cpu", 8 * GIB))
    assert not p.fits
    assert "does not fit" in p.reason and "RAM" in p.reason
    assert "fits: NO" in render_table(p)
    assert all(d.total_bytes <= d.limit_bytes for d in p.gpus)


def test_busy_fake_card_is_planned_by_its_free_memory(qwen32b: GGUFInfo) -> None:
    busy = Device("cuda1 8GiB", "cuda", 8 * GIB, free_bytes=3 * GIB)
    p = plan(qwen32b, [SEED_RIG[0], busy, SEED_RIG[2]], 4096, SEED_CPU)
    assert p.gpus[1].total_bytes <= 3 * GIB
    assert p.gpus[1].n_layers < plan(qwen32b, SEED_RIG, 4096, SEED_CPU).gpus[1].n_layers


# ---------------------------------------------------------------- property test


def synthetic_info(n_layer: int, n_embd: int, n_head: int, kv_div: int, n_ff: int, n_vocab: int,
                   bytes_per_param: float) -> GGUFInfo:  # fmt: skip
    head = n_embd // n_head
    n_head_kv = max(1, n_head // kv_div)
    kv = n_head_kv * head
    per_layer = int((2 * n_embd * n_embd + 2 * kv * n_embd + 3 * n_embd * n_ff) * bytes_per_param)
    emb = int(n_vocab * n_embd * bytes_per_param)
    tensors = [TensorInfo("token_embd.weight", "Q4_K", (n_embd, n_vocab), emb, None)]
    tensors += [
        TensorInfo(f"blk.{i}.w", "Q4_K", (per_layer,), per_layer, i) for i in range(n_layer)
    ]
    tensors += [TensorInfo("output.weight", "Q6_K", (n_embd, n_vocab), emb, None)]
    return GGUFInfo(Path("synthetic.gguf"), "llama", n_layer, n_embd, n_head, n_head_kv, head,
                    head, 32768, n_vocab, n_ff, "Q4_K_M", 0, tuple(tensors))  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_layer=st.integers(1, 96),
    n_embd_heads=st.sampled_from([(512, 8), (2048, 16), (4096, 32), (5120, 40), (8192, 64)]),
    kv_div=st.sampled_from([1, 4, 8]),
    ff_mult=st.floats(2.0, 5.0),
    n_vocab=st.sampled_from([32000, 128256, 152064]),
    bpp=st.sampled_from([0.5625, 1.0625, 2.0]),
    gpu_mib=st.lists(st.integers(512, 48 * 1024), min_size=0, max_size=5),
    free_frac=st.lists(st.one_of(st.none(), st.floats(0.1, 1.0)), min_size=5, max_size=5),
    cpu_gib=st.integers(2, 256),
    n_ctx=st.sampled_from([512, 2048, 4096, 16384, 32768]),
    kv_type=st.sampled_from(["f16", "q8_0"]),
)
def test_fake_random_rigs_never_overfill_a_device(
    n_layer, n_embd_heads, kv_div, ff_mult, n_vocab, bpp, gpu_mib, free_frac, cpu_gib, n_ctx,
    kv_type,
) -> None:  # fmt: skip
    n_embd, n_head = n_embd_heads
    info = synthetic_info(n_layer, n_embd, n_head, kv_div, int(n_embd * ff_mult), n_vocab, bpp)
    gpus = [
        Device(f"cuda{i}", "cuda", mib * MIB, None if f is None else int(mib * MIB * f))
        for i, (mib, f) in enumerate(zip(gpu_mib, free_frac, strict=False))
    ]
    p = plan(info, gpus, n_ctx, Device("cpu", "cpu", cpu_gib * GIB), kv_type=kv_type)
    for d in p.gpus:
        assert d.total_bytes <= d.usable_bytes  # never more than the card (or its free memory)
        assert d.total_bytes <= d.limit_bytes
    assert p.gpu_layers + p.cpu_layers == n_layer
    assert p.fits == (p.cpu.total_bytes <= p.cpu.limit_bytes)
    assert p.fits or p.reason
    assert_plan_matches_llama_cpp_placement(p)
    assert all(len(line) <= 80 for line in render_table(p).splitlines())
