"""Memory devices the model pool can place layers on: GPUs and the CPU's RAM.

GPU detection shells out to ``nvidia-smi`` (present wherever the NVIDIA driver is) instead of
importing a CUDA binding, so it works with any llama.cpp build and costs nothing when absent.
The parser is a pure function so it can be tested on captured output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Literal

DeviceKind = Literal["cpu", "cuda", "vulkan"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")

NVIDIA_SMI_QUERY = [
    "nvidia-smi",
    "--query-gpu=index,name,memory.total,memory.free",
    "--format=csv,noheader,nounits",
]


@dataclass(frozen=True)
class Device:
    """A memory pool: ``budget_bytes`` is what we may use, ``free_bytes`` what is free now."""

    name: str
    kind: DeviceKind
    budget_bytes: int
    free_bytes: int | None = None
    index: int | None = None  # the backend's device index (CUDA ordinal) for GPUs

    @property
    def usable_bytes(self) -> int:
        """The budget, capped by what is actually free when that is known."""
        if self.free_bytes is None:
            return self.budget_bytes
        return min(self.budget_bytes, self.free_bytes)


def parse_size(text: str | int) -> int:
    """``"8GiB"`` → 8589934592; accepts B/KB/MB/GB/TB (powers of 1000) and KiB..TiB (1024).

    Plain numbers are bytes. Raises ``ValueError`` naming the bad input otherwise.
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid size {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"invalid size {text!r}: must not be negative")
        return text
    m = _SIZE_RE.match(str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ValueError(
            f"invalid size {text!r}: expected a number with a unit such as 512MiB, 8GiB or 1.5GB"
        )
    return int(float(m.group(1)) * _UNITS[unit])


def format_size(n: int) -> str:
    """Bytes as a short human string in binary units (``"7.50 GiB"``)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} GiB"  # pragma: no cover


def parse_nvidia_smi(output: str) -> list[Device]:
    """Parse ``nvidia-smi --query-gpu=index,name,memory.total,memory.free`` CSV (MiB values)."""
    devices = []
    for line in output.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            raise ValueError(f"unexpected nvidia-smi line: {line.strip()!r}")
        index, total, free = parts[0], parts[-2], parts[-1]
        name = ",".join(parts[1:-2])  # GPU names may themselves contain commas
        try:
            idx = int(index)
            total_b = int(float(total)) * 1024**2
            free_b = int(float(free)) * 1024**2 if free not in ("[N/A]", "N/A") else None
        except ValueError:
            raise ValueError(f"unexpected nvidia-smi line: {line.strip()!r}") from None
        devices.append(Device(f"cuda{idx} {name}", "cuda", total_b, free_b, idx))
    return devices


def detect_nvidia_gpus(timeout: float = 10.0) -> list[Device]:
    """NVIDIA GPUs with total and free memory; empty when there is no driver or it fails."""
    if shutil.which(NVIDIA_SMI_QUERY[0]) is None:
        return []
    try:
        res = subprocess.run(NVIDIA_SMI_QUERY, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if res.returncode != 0:
        return []
    try:
        return parse_nvidia_smi(res.stdout)
    except ValueError:
        return []


def parse_meminfo(text: str) -> tuple[int, int | None]:
    """(MemTotal, MemAvailable) in bytes from /proc/meminfo text."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key.strip()] = int(fields[0]) * 1024  # kB
    if "MemTotal" not in values:
        raise ValueError("no MemTotal in /proc/meminfo")
    return values["MemTotal"], values.get("MemAvailable")


def system_memory() -> tuple[int, int | None]:
    """(total, available) RAM in bytes: /proc/meminfo, else ``os.sysconf``."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            return parse_meminfo(fh.read())
    except (OSError, ValueError):
        pass
    page = os.sysconf("SC_PAGE_SIZE")
    total = page * os.sysconf("SC_PHYS_PAGES")
    try:
        avail: int | None = page * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        avail = None
    return total, avail


def cpu_device(budget: str | int | None = None) -> Device:
    """The CPU/RAM device: the configured budget, or the machine's RAM (free = available)."""
    total, avail = system_memory()
    return Device("cpu", "cpu", parse_size(budget) if budget is not None else total, avail)
