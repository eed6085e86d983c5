"""Write small synthetic llama-architecture GGUF files for tests.

Two modes:

* ``write_llama_gguf(...)`` writes a complete, loadable model (random or zero weights, a minimal
  SPM tokenizer) so llama.cpp can really load it and report its buffer sizes.
* ``write_llama_gguf(..., header_only=True)`` writes the real metadata and tensor infos of a
  model that is far too big to write (e.g. Qwen2.5-32B, ~19.9 GB) and then extends the file with
  ``truncate`` to its full size. On any filesystem with sparse files this costs a few KiB of
  disk, the file is structurally valid (``GGUFReader`` and ``gguf_info`` read it), and the
  weights are all zero. Tests never load such files with llama.cpp.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

GT = gguf.GGMLQuantizationType

# Names accepted for ``tensor_type``; "Q4_K_M" mimics llama.cpp's mix (see _q4_k_m_type).
TENSOR_TYPES = {"F32": GT.F32, "F16": GT.F16, "Q8_0": GT.Q8_0, "Q4_K": GT.Q4_K, "Q6_K": GT.Q6_K}
FILE_TYPES = {
    "F32": gguf.LlamaFileType.ALL_F32,
    "F16": gguf.LlamaFileType.MOSTLY_F16,
    "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "Q4_K": gguf.LlamaFileType.MOSTLY_Q4_K_S,
    "Q4_K_M": gguf.LlamaFileType.MOSTLY_Q4_K_M,
    "Q6_K": gguf.LlamaFileType.MOSTLY_Q6_K,
}


@dataclass(frozen=True)
class Shape:
    """Hyper-parameters of a llama-style model."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_vocab: int = 512
    n_ctx_train: int = 2048


QWEN25_32B = Shape(
    n_layer=64, n_embd=5120, n_head=40, n_head_kv=8, n_ff=27648, n_vocab=152064, n_ctx_train=32768
)


def _use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's rule for which layers get Q6_K attn_v/ffn_down in a Q4_K_M quantisation."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _q4_k_m_type(name: str, n_layer: int) -> GT:
    if name == "output.weight":
        return GT.Q6_K
    if name.endswith(("attn_v.weight", "ffn_down.weight")):
        layer = int(name.split(".")[1])
        return GT.Q6_K if _use_more_bits(layer, n_layer) else GT.Q4_K
    return GT.Q4_K


def _tensor_plan(shape: Shape, arch: str) -> list[tuple[str, tuple[int, ...]]]:
    """(name, numpy-order shape) of every tensor; numpy order is (rows, cols) = ggml (ne1, ne0)."""
    h, f, v = shape.n_embd, shape.n_ff, shape.n_vocab
    kv = shape.n_head_kv * (h // shape.n_head)
    out: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (v, h))]
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", (h,)),
            (p + "attn_q.weight", (h, h)),
            (p + "attn_k.weight", (kv, h)),
            (p + "attn_v.weight", (kv, h)),
            (p + "attn_output.weight", (h, h)),
            (p + "ffn_norm.weight", (h,)),
            (p + "ffn_gate.weight", (f, h)),
            (p + "ffn_up.weight", (f, h)),
            (p + "ffn_down.weight", (h, f)),
        ]
        if arch == "qwen2":
            out += [
                (p + "attn_q.bias", (h,)),
                (p + "attn_k.bias", (kv,)),
                (p + "attn_v.bias", (kv,)),
            ]
    out += [("output_norm.weight", (h,)), ("output.weight", (v, h))]
    return out


def _type_for(name: str, dims: tuple[int, ...], tensor_type: str, n_layer: int) -> GT:
    if len(dims) == 1:
        return GT.F32  # norms and biases stay F32, as in real conversions
    qtype = _q4_k_m_type(name, n_layer) if tensor_type == "Q4_K_M" else TENSOR_TYPES[tensor_type]
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    return qtype if dims[-1] % block == 0 else GT.F16


def _nbytes(dims: tuple[int, ...], qtype: GT) -> int:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return int(np.prod(dims)) // block * size


def _add_metadata(w: gguf.GGUFWriter, shape: Shape, tensor_type: str, name: str) -> None:
    head_dim = shape.n_embd // shape.n_head
    w.add_name(name)
    w.add_context_length(shape.n_ctx_train)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(FILE_TYPES[tensor_type])
    w.add_vocab_size(shape.n_vocab)


def _add_tokenizer(w: gguf.GGUFWriter, n_vocab: int) -> None:
    """A minimal SPM ("llama") vocabulary: <unk>, <s>, </s>, 256 byte tokens, fillers."""
    if n_vocab < 300:
        raise ValueError("n_vocab must be >= 300 for a loadable model (byte tokens + specials)")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    n_fill = n_vocab - len(tokens)
    tokens += [f"\u2581t{i}" for i in range(n_fill)]
    types += [gguf.TokenType.NORMAL] * n_fill
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 259 + [-float(i) for i in range(n_fill)])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)


def _weights(dims: tuple[int, ...], qtype: GT, rng: np.random.Generator | None) -> np.ndarray:
    if len(dims) == 1:
        return np.ones(dims, dtype=np.float32)
    if rng is None:
        data = np.zeros(dims, dtype=np.float32)
    else:
        data = rng.standard_normal(dims, dtype=np.float32) * 0.02
    if qtype == GT.F32:
        return data
    if qtype == GT.F16:
        return data.astype(np.float16)
    return gguf.quants.quantize(data, qtype)


def write_llama_gguf(
    path: str | os.PathLike[str],
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    n_vocab: int = 512,
    *,
    n_ctx_train: int = 2048,
    tensor_type: str = "F16",
    random_weights: bool = True,
    header_only: bool = False,
    arch: str = "llama",
    seed: int = 0,
    metadata: dict[str, int] | None = None,
) -> Path:
    """Write a synthetic model and return its path.

    ``tensor_type`` is one of F32, F16, Q8_0 (data can be written) or Q4_K, Q6_K, Q4_K_M
    (``header_only=True`` only: numpy cannot quantise those quickly). Matrices whose row length
    is not a multiple of the type's block size fall back to F16. ``metadata`` overrides integer
    keys (stored as uint64, e.g. ``{"llama.block_count": 0}``) to build broken files.
    """
    if tensor_type not in FILE_TYPES:
        raise ValueError(f"unknown tensor_type {tensor_type!r}")
    if not header_only and tensor_type not in ("F32", "F16", "Q8_0"):
        raise ValueError(f"{tensor_type} weights can only be written with header_only=True")
    shape = Shape(n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, n_ctx_train)
    path = Path(path)
    w = gguf.GGUFWriter(str(path), arch)
    _add_metadata(w, shape, tensor_type, f"synthetic-{arch}-{n_layer}L-{n_embd}")
    for key, value in (metadata or {}).items():
        w.kv_data[0].pop(key, None)
        w.add_key_value(key, value, gguf.GGUFValueType.UINT64)
    plan = [(n, d, _type_for(n, d, tensor_type, n_layer)) for n, d in _tensor_plan(shape, arch)]
    if header_only:
        for name, dims, qtype in plan:
            w.add_tensor_info(name, dims, np.dtype(np.float32), _nbytes(dims, qtype), qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        assert w.fout is not None
        fout = w.fout[0]
        align = w.data_alignment
        data_start = w.ggml_pad(fout.tell(), align)
        data_size = sum(w.ggml_pad(_nbytes(d, t), align) for _, d, t in plan)
        fout.truncate(data_start + data_size)  # sparse: holes instead of weights
        w.close()
        return path
    _add_tokenizer(w, n_vocab)
    rng = np.random.default_rng(seed) if random_weights else None
    for name, dims, qtype in plan:
        data = _weights(dims, qtype, rng)
        w.add_tensor(name, data, raw_dtype=None if qtype in (GT.F32, GT.F16) else qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_qwen25_32b_q4_k_m(path: str | os.PathLike[str]) -> Path:
    """Header-only stand-in for Qwen2.5-32B-Instruct Q4_K_M (64 layers, ~19.9 GB)."""
    s = QWEN25_32B
    return write_llama_gguf(
        path,
        s.n_layer,
        s.n_embd,
        s.n_head,
        s.n_head_kv,
        s.n_ff,
        s.n_vocab,
        n_ctx_train=s.n_ctx_train,
        tensor_type="Q4_K_M",
        header_only=True,
        arch="qwen2",
    )
