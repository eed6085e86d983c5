"""GGUF metadata reading and memory estimates, checked against real llama.cpp loads.

The reference is llama.cpp's own accounting: a verbose load prints the size of every buffer it
allocates (model, KV cache, output, compute). Those are what must fit on a device, including
parts of the compute buffer that a short run never touches, which is why RSS is only used as a
loose upper-bound check.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agents.models import resolve_model_path
from agents.pool.estimate import estimate, kv_bytes_per_layer, layer_devices, padded_ctx
from agents.pool.gguf_info import GGUFInfoError, read_gguf_info
from tests.gguf_factory import write_llama_gguf, write_qwen25_32b_q4_k_m

MIB = 1024**2
EMBEDDED = "embedded:smollm2-135m"

# Three synthetic shapes chosen so a different graph stage dominates the compute buffer:
# attention (long ctx, many heads), FFN (huge n_ff), and output logits (big vocab).
SHAPES = {
    "attn-heavy": dict(n_layer=4, n_embd=256, n_head=8, n_head_kv=2, n_ff=512, n_vocab=1024),
    "ffn-heavy": dict(n_layer=6, n_embd=128, n_head=2, n_head_kv=1, n_ff=8192, n_vocab=512),
    "vocab-heavy": dict(n_layer=3, n_embd=768, n_head=12, n_head_kv=4, n_ff=1024, n_vocab=32000),
}
TYPES = {"attn-heavy": "Q8_0", "ffn-heavy": "F32", "vocab-heavy": "F16"}


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("gguf")
    for name, shape in SHAPES.items():
        write_llama_gguf(d / f"{name}.gguf", **shape, tensor_type=TYPES[name])
    return d


@pytest.fixture(scope="session")
def qwen32b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_qwen25_32b_q4_k_m(tmp_path_factory.mktemp("big") / "qwen2.5-32b-q4_k_m.gguf")


_BUF_RE = re.compile(
    r"(CPU_Mapped|CPU_REPACK|CPU|AMX)\s+(model|KV|compute|output) buffer size =\s+([\d.]+) MiB"
)


def llama_cpp_buffers(path: Path, n_ctx: int, n_batch: int) -> dict[str, float]:
    """Load with llama-cpp-python on the CPU in a child process; return its buffer sizes."""
    code = textwrap.dedent(f"""
        from sentinel import cpu_backend
        cpu_backend.apply()  # as hermes does before a load (where AMX faults: plain buffers)
        import llama_cpp
        llm = llama_cpp.Llama({str(path)!r}, n_ctx={n_ctx}, n_batch={n_batch}, n_gpu_layers=0,
                              n_threads=1, verbose=True)
        llm.eval(llm.tokenize(b"hello"))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    found: dict[str, float] = {}
    for buffer, kind, mib in _BUF_RE.findall(res.stderr):
        if kind == "model" and buffer != "CPU_Mapped" and "model" in found:
            found["model"] += float(mib) * MIB  # weights also in AMX / CPU_REPACK buffers
        else:
            found.setdefault(kind, float(mib) * MIB)
    assert {"model", "KV", "compute"} <= found.keys(), res.stderr[-2000:]
    return found


# ---------------------------------------------------------------- gguf_info


def test_embedded_model_metadata_matches_what_llama_cpp_prints() -> None:
    info = read_gguf_info(resolve_model_path(EMBEDDED))
    assert (info.architecture, info.n_layer, info.n_embd) == ("llama", 30, 576)
    assert (info.n_head, info.n_head_kv, info.head_dim) == (9, 3, 64)
    assert (info.n_ctx_train, info.n_vocab, info.n_ff) == (8192, 49152, 1536)
    assert info.file_type == "Q4_1"
    # every byte is either a layer's or one of the non-layer tensors
    assert sum(info.layer_bytes()) + info.input_bytes + info.tensor_bytes(
        "output_norm.weight"
    ) == pytest.approx(info.total_bytes)
    assert len(set(info.layer_bytes())) == 1  # all 30 blocks are quantised alike


def test_header_only_32b_reads_like_the_real_model_without_using_disk(qwen32b: Path) -> None:
    info = read_gguf_info(qwen32b)
    assert (info.n_layer, info.n_embd, info.n_head, info.n_head_kv) == (64, 5120, 40, 8)
    assert (info.n_vocab, info.n_ff, info.head_dim) == (152064, 27648, 128)
    assert info.file_type == "Q4_K_M"
    assert 19.5e9 < info.total_bytes < 20.2e9  # the real file is ~19.9 GB
    assert os.stat(qwen32b).st_blocks * 512 < 10 * MIB  # sparse: no weights on disk


def test_truncated_files_get_one_line_errors(synth_dir: Path, tmp_path: Path) -> None:
    data = (synth_dir / "attn-heavy.gguf").read_bytes()
    for cut in (3, 64, 3000, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(GGUFInfoError) as exc:
            read_gguf_info(bad)
        assert "\n" not in str(exc.value)
        assert "truncated" in str(exc.value) or "bad magic" in str(exc.value)


def test_bad_magic_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(GGUFInfoError, match="bad magic"):
        read_gguf_info(bad)
    with pytest.raises(GGUFInfoError, match="cannot read"):
        read_gguf_info(tmp_path / "nope.gguf")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("llama.block_count", 0, "block_count=0"),
        ("llama.block_count", 20_000, "block_count=20000"),
        ("llama.context_length", 2**40, "context_length"),
        ("llama.attention.head_count_kv", 64, "head_count_kv"),
    ],
)
def test_absurd_metadata_is_rejected(tmp_path: Path, key: str, value: int, words: str) -> None:
    path = write_llama_gguf(tmp_path / "odd.gguf", header_only=True, metadata={key: value})
    with pytest.raises(GGUFInfoError, match=words) as exc:
        read_gguf_info(path)
    assert "implausible" in str(exc.value) and "\n" not in str(exc.value)


# ---------------------------------------------------------------- estimate vs llama.cpp


@pytest.mark.parametrize(
    ("model", "n_ctx", "n_batch"),
    [
        (EMBEDDED, 2048, 512),
        (EMBEDDED, 4096, 64),
        ("attn-heavy", 4096, 512),
        ("ffn-heavy", 1024, 512),
        ("vocab-heavy", 1000, 512),  # padded to 1024 cells by llama.cpp
        ("vocab-heavy", 256, 128),
    ],
)
def test_estimate_matches_llama_cpp_buffers_within_15_percent(
    synth_dir: Path, model: str, n_ctx: int, n_batch: int
) -> None:
    path = resolve_model_path(model) if model == EMBEDDED else synth_dir / f"{model}.gguf"
    real = llama_cpp_buffers(path, n_ctx, n_batch)
    est = estimate(read_gguf_info(path), n_ctx, n_gpu_layers=0, n_batch=n_batch).cpu
    assert est.weights == pytest.approx(real["model"], rel=0.01)
    assert est.kv == pytest.approx(real["KV"], rel=0.01)
    measured = real["compute"] + real.get("output", 0.0)
    assert est.compute == pytest.approx(measured, rel=0.15)
    assert est.total == pytest.approx(sum(real.values()), rel=0.15)


def test_process_memory_after_load_and_eval_stays_under_the_estimate() -> None:
    """RSS with weights copied into RAM (no mmap) never exceeds the estimate by >15%."""
    path = resolve_model_path(EMBEDDED)
    code = textwrap.dedent(f"""
        from sentinel import cpu_backend
        cpu_backend.apply()  # as hermes does before a load (where AMX faults: plain buffers)
        import llama_cpp
        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) * 1024
        before = rss()
        llm = llama_cpp.Llama({str(path)!r}, n_ctx=1024, n_gpu_layers=0, n_threads=1,
                              use_mmap=False, verbose=False)
        llm.eval(llm.tokenize(b"the quick brown fox " * 20))
        print(rss() - before)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    delta = int(res.stdout.split()[-1])
    est = estimate(read_gguf_info(path), 1024)
    assert est.cpu.weights < delta <= est.total * 1.15


# ---------------------------------------------------------------- placement rules


def test_seed_tensor_split_places_layers_like_llama_cpp() -> None:
    """--gpulayers 40 --tensor_split 1.5 4.5 3 on 64 layers: last 40 blocks, 7/20/13."""
    where = layer_devices(64, 40, [1.5, 4.5, 3])
    assert where[:24] == [-1] * 24 and where[64] == -1  # first blocks and head on the CPU
    assert [where[24:64].count(i) for i in range(3)] == [7, 20, 13]


def test_full_offload_moves_the_output_head_to_the_last_gpu(qwen32b: Path) -> None:
    info = read_gguf_info(qwen32b)
    partial = estimate(info, 4096, n_gpu_layers=64, tensor_split=[1, 1])
    full = estimate(info, 4096, n_gpu_layers=65, tensor_split=[1, 1])
    assert partial.cpu.output and not full.cpu.output and full.gpus[1].output
    assert full.cpu.weights == info.input_bytes  # only token_embd stays in RAM
    moved = sum(g.weights for g in full.gpus) - sum(g.weights for g in partial.gpus)
    assert moved == info.output_bytes


def test_kv_cache_scales_with_context_and_type(qwen32b: Path) -> None:
    info = read_gguf_info(qwen32b)
    # 64 layers × 4096 × 8 heads × 128 × 2 (K,V) × 2 bytes = 1 GiB
    assert estimate(info, 4096).cpu.kv == 1024 * MIB
    assert kv_bytes_per_layer(info, 4096, "q8_0") < kv_bytes_per_layer(info, 4096, "f16")
    assert padded_ctx(4000) == 4096
    with pytest.raises(ValueError, match="unknown kv_type"):
        kv_bytes_per_layer(info, 4096, "f12")
