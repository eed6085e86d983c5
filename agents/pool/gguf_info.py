"""Read what memory planning needs from a GGUF file, without touching the weights.

``gguf.GGUFReader`` memory-maps the file and only builds array *views* of the tensor data, so
reading a 20 GB model costs a few milliseconds and no RAM. Everything a planner needs is here:
the hyper-parameters (layers, heads, context) and the byte size of every tensor, grouped by the
transformer block (``blk.N.``) it belongs to.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import gguf

from agents.errors import HermesError

MAX_LAYERS = 10_000
MAX_CTX = 1 << 24  # 16M tokens: well above any real model's training context
MAX_EMBD = 1 << 20
MAX_FF = 1 << 24  # widest real FFNs are ~10^5
MAX_VOCAB = 1 << 24

_BLOCK_RE = re.compile(r"^blk\.(\d+)\.")


class GGUFInfoError(HermesError):
    """The file is not a usable GGUF model; the message is one line, fit for a status bar."""

    code = "E_MODEL_FILE"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type_name: str
    shape: tuple[int, ...]  # ggml order: ne0 (row length) first
    n_bytes: int
    layer: int | None  # the N of ``blk.N.``; None for token_embd / output / output_norm


@dataclass(frozen=True)
class GGUFInfo:
    """Hyper-parameters and tensor sizes of one model file."""

    path: Path
    architecture: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_ctx_train: int
    n_vocab: int
    n_ff: int
    file_type: str
    file_size: int
    tensors: tuple[TensorInfo, ...] = field(repr=False)

    @property
    def head_dim(self) -> int:
        return self.head_dim_k

    @property
    def n_embd_k_gqa(self) -> int:
        """Width of one token's K row in the cache (all KV heads of one layer)."""
        return self.n_head_kv * self.head_dim_k

    @property
    def n_embd_v_gqa(self) -> int:
        return self.n_head_kv * self.head_dim_v

    def layer_bytes(self) -> list[int]:
        """Weight bytes of each transformer block, index = layer number."""
        sizes = [0] * self.n_layer
        for t in self.tensors:
            if t.layer is not None and t.layer < self.n_layer:
                sizes[t.layer] += t.n_bytes
        return sizes

    def tensor_bytes(self, name: str) -> int:
        return sum(t.n_bytes for t in self.tensors if t.name == name)

    @property
    def input_bytes(self) -> int:
        """token_embd: always kept in CPU memory by llama.cpp (only one row is read per token)."""
        return self.tensor_bytes("token_embd.weight")

    @property
    def output_bytes(self) -> int:
        """The output head (norm + output matrix); tied-embedding models reuse token_embd."""
        out = self.tensor_bytes("output.weight") or self.input_bytes
        return out + self.tensor_bytes("output_norm.weight")

    @property
    def other_bytes(self) -> int:
        """Non-layer tensors other than input/output (rope factors etc.): kept on the CPU."""
        named = {"token_embd.weight", "output.weight", "output_norm.weight"}
        return sum(t.n_bytes for t in self.tensors if t.layer is None and t.name not in named)

    @property
    def total_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)


def _scalar(reader: gguf.GGUFReader, key: str) -> int | float | str | None:
    f = reader.get_field(key)
    if f is None or not f.data:
        return None
    if f.types and f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8", errors="replace")
    if f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
        return None
    value = f.parts[f.data[0]][0]
    out: int | float | str | None = value.item() if hasattr(value, "item") else value
    return out


def _int(reader: gguf.GGUFReader, key: str) -> int | None:
    v = _scalar(reader, key)
    if v is None or isinstance(v, str):
        return None
    return int(v)


def _file_type_name(code: int | None) -> str:
    if code is None:
        return "unknown"
    try:
        return gguf.LlamaFileType(code).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        return f"type{code}"


def _check_range(name: str, value: int, lo: int, hi: int, path: Path) -> None:
    if not lo <= value <= hi:
        raise GGUFInfoError(f"{path.name}: implausible {name}={value} (expected {lo}..{hi})")


def read_gguf_info(path: str | os.PathLike[str]) -> GGUFInfo:
    """Parse metadata and tensor infos; raise ``GGUFInfoError`` for anything unusable."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as e:
        raise GGUFInfoError(f"{path}: cannot read ({e.strerror or e})") from None
    if magic != b"GGUF":
        raise GGUFInfoError(f"{path.name}: not a GGUF file (bad magic {magic!r})")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # noqa: BLE001 - the reader raises anything from a short/corrupt file
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GGUFInfoError(
            f"{path.name}: truncated or corrupt GGUF ({size} bytes): {detail[:120]}"
        ) from None

    tensors: list[TensorInfo] = []
    data_end = 0
    for t in reader.tensors:
        m = _BLOCK_RE.match(t.name)
        tensors.append(
            TensorInfo(
                name=t.name,
                type_name=t.tensor_type.name,
                shape=tuple(int(d) for d in t.shape),
                n_bytes=int(t.n_bytes),
                layer=int(m.group(1)) if m else None,
            )
        )
        data_end = max(data_end, int(t.data_offset) + int(t.n_bytes))
    if data_end > size:
        raise GGUFInfoError(f"{path.name}: truncated: tensor data ends at {data_end}, file {size}")

    arch = _scalar(reader, "general.architecture")
    if not isinstance(arch, str) or not arch:
        raise GGUFInfoError(f"{path.name}: missing general.architecture")

    def need(key: str) -> int:
        v = _int(reader, f"{arch}.{key}")
        if v is None:
            raise GGUFInfoError(f"{path.name}: missing metadata {arch}.{key}")
        return v

    n_layer = need("block_count")
    _check_range("block_count", n_layer, 1, MAX_LAYERS, path)
    n_embd = need("embedding_length")
    _check_range("embedding_length", n_embd, 1, MAX_EMBD, path)
    n_head = need("attention.head_count")
    _check_range("head_count", n_head, 1, n_embd, path)
    n_head_kv = _int(reader, f"{arch}.attention.head_count_kv") or n_head
    _check_range("head_count_kv", n_head_kv, 1, n_head, path)
    n_ctx_train = need("context_length")
    _check_range("context_length", n_ctx_train, 1, MAX_CTX, path)
    head_k = _int(reader, f"{arch}.attention.key_length") or n_embd // n_head
    head_v = _int(reader, f"{arch}.attention.value_length") or head_k
    _check_range("key_length", head_k, 1, MAX_EMBD, path)
    _check_range("value_length", head_v, 1, MAX_EMBD, path)
    n_ff = _int(reader, f"{arch}.feed_forward_length") or 0
    _check_range("feed_forward_length", n_ff, 0, MAX_FF, path)

    n_vocab = 0
    for info in tensors:
        if info.name == "token_embd.weight" and len(info.shape) >= 2:
            n_vocab = info.shape[1]
    if not n_vocab:
        n_vocab = _int(reader, f"{arch}.vocab_size") or 0
    if not n_vocab:
        tok = reader.get_field("tokenizer.ggml.tokens")
        n_vocab = len(tok.data) if tok is not None else 0
    _check_range("n_vocab", n_vocab, 1, MAX_VOCAB, path)

    return GGUFInfo(
        path=path,
        architecture=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_k,
        head_dim_v=head_v,
        n_ctx_train=n_ctx_train,
        n_vocab=n_vocab,
        n_ff=n_ff,
        file_type=_file_type_name(_int(reader, "general.file_type")),
        file_size=size,
        tensors=tuple(tensors),
    )
