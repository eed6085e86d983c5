"""Typed settings the agents layer runs on (built from config.toml by ``hermes_tui.config``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    """A model the pool can load: a local GGUF, or a remote OpenAI-compatible endpoint."""

    name: str
    path: Path | None = None  # local GGUF (resolved, exists)
    n_ctx: int = 2048
    n_gpu_layers: int = 0
    chat_format: str | None = None
    device: str = "cpu"
    tensor_split: tuple[float, ...] = ()
    url: str | None = None  # remote endpoint base URL, e.g. http://127.0.0.1:8080/v1
    remote_model: str | None = None
    api_key_env: str | None = None
    max_concurrency: int = 1
    timeout_s: float = 120.0  # remote: give up when the server sends nothing for this long
    keep_alive_s: float = 300.0

    @property
    def remote(self) -> bool:
        return self.url is not None


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    memory_bytes: int


@dataclass(frozen=True)
class PoolSpec:
    queue_size: int = 16
    slice_tokens: int = 32
    devices: tuple[DeviceSpec, ...] = field(default_factory=tuple)
    seqs_per_model: int = 3  # personas decoding at once on one loaded model (own KV sequence)
    decode_mode: str = "auto"  # "auto" (measured) | "batched" | "interleaved"
    # Saved KV states (agents/pool/state_cache.py): bytes they may hold in host memory (None:
    # whatever the host device's budget leaves), and an optional spill directory on disk.
    state_cache_bytes: int | None = None
    state_cache_dir: Path | None = None
    state_cache_disk_bytes: int = 8 * 1024**3
