"""`hermes plan`: how a GGUF would be placed on the GPUs and the CPU."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agents.models import ModelFileError, resolve_model_path
from agents.pool.devices import Device, cpu_device, parse_size
from agents.pool.gguf_info import GGUFInfoError, read_gguf_info
from agents.pool.planner import plan, render_table
from agents.pool.pool import can_offload
from agents.pool.runner import SeqRunner
from agents.specs import ModelSpec, PoolSpec
from hermes_tui.config import ConfigError, load_config
from hermes_tui.errors import Fail

DEFAULT_N_CTX = 4096  # for a GGUF given by path (a config model plans with its own n_ctx)


def _config_model(
    model: str, config_path: str | None
) -> tuple[ModelSpec | None, PoolSpec | None, ConfigError | None]:
    """The config's entry for MODEL when MODEL names one (and the config's pool), else None;
    and the config's error when it could not be read."""
    if Path(model).expanduser().exists() or model.startswith("embedded:"):
        return None, None, None
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return None, None, exc
    spec = config.models.get(model)
    if spec is not None and spec.path:
        return spec, config.pool, None
    if spec is not None:  # it said "model file not found: NAME"
        raise Fail(
            f"model {model} in {config.path} is served by {spec.url}: "
            "hermes plan places local GGUF files only",
            2,
        )
    if "/" not in model and not model.lower().endswith(".gguf"):  # meant as a name
        known = ", ".join(config.models) or "none"
        raise Fail(
            f"{model}: no such file, and no model {model} in {config.path} (its models: {known})",
            2,
        )
    return None, None, None


def _model_path(model: str, spec: ModelSpec | None, config_error: ConfigError | None) -> Path:
    """MODEL is a GGUF path, ``embedded:NAME``, or a model name from the config."""
    if spec is not None:
        return spec.path
    try:
        return resolve_model_path(model)
    except ModelFileError as exc:
        # Not a file: MODEL was meant as a config name, and the config's own problem is the
        # one to fix (it used to say "model file not found: smollm2" for a typo in the config).
        raise Fail(str(config_error or exc), 2) from None


def _config_devices(pool: PoolSpec) -> tuple[list[Device], Device | None]:
    """The GPUs and CPU budget the config gives the pool (what it would really plan with)."""
    gpus = [
        _gpu(d.name, d.memory_bytes, i)  # names come from the config: checked there
        for i, d in enumerate(x for x in pool.devices if x.name != "cpu")
    ]
    cpu = next((d for d in pool.devices if d.name == "cpu"), None)
    return gpus, (cpu_device(cpu.memory_bytes) if cpu else None)


def _device(spec: str, index: int) -> Device:
    name, sep, size = spec.partition("=")
    if not sep or not name:
        raise Fail(f"--device {spec!r}: expected NAME=SIZE, e.g. cuda:0=8GiB", 2)
    try:
        budget = parse_size(size)
    except ValueError as exc:
        raise Fail(f"--device {spec!r}: {exc}", 2) from None
    if name == "cpu":
        raise Fail(f"--device {spec!r}: the CPU's budget is --ram, e.g. --ram 16GiB", 2)
    if not re.fullmatch(r"(cuda|vulkan):\d+", name):
        raise Fail(f"--device {spec!r}: expected cuda:N or vulkan:N (e.g. cuda:0=8GiB)", 2)
    return _gpu(name, budget, index)


def _gpu(name: str, budget: int, index: int) -> Device:
    kind = "vulkan" if name.startswith("vulkan") else "cuda"
    match = re.search(r"(\d+)$", name)
    return Device(name, kind, budget, index=int(match.group(1)) if match else index)


def render(
    model: str,
    config_path: str | None,
    devices: tuple[str, ...],
    ram: str | None,
    n_ctx: int | None,
    as_json: bool,
) -> tuple[str, bool]:
    """The plan as a table (or JSON) and whether it fits.

    For a model named in the config, ``n_ctx`` defaults to the model's and, when neither
    ``--device`` nor ``--ram`` is given, the devices and budgets are the config's pool's.
    """
    spec, pool, config_error = _config_model(model, config_path)
    seqs = 1
    if n_ctx is None and spec is not None and pool is not None:
        # What the pool allocates: one KV sequence of n_ctx per persona decoding at once
        # (the same estimate the pool and `hermes doctor` use, so the numbers agree).
        n_ctx, seqs = spec.n_ctx, max(1, pool.seqs_per_model)
    elif n_ctx is None:
        n_ctx = DEFAULT_N_CTX
    if n_ctx < 1:
        raise Fail(f"--n-ctx {n_ctx}: expected a positive number of tokens", 2)
    path = _model_path(model, spec, config_error)
    try:
        info = read_gguf_info(path)
    except GGUFInfoError as exc:
        raise Fail(str(exc), 2) from None
    gpus = [_device(d, i) for i, d in enumerate(devices)]
    names = [g.name for g in gpus]
    if dup := next((n for n in names if names.count(n) > 1), None):
        raise Fail(f"--device {dup} is given twice; name each GPU once", 2)
    cpu: Device | None = None
    if pool is not None and not devices and not ram:
        gpus, cpu = _config_devices(pool)
    try:
        # An explicit --ram plans for that machine (maybe not this one): no "free now" cap.
        if ram:
            cpu = Device("cpu", "cpu", parse_size(ram))
    except ValueError as exc:
        raise Fail(f"--ram: {exc}", 2) from None
    cpu = cpu or cpu_device()
    offload = bool(gpus) and can_offload()
    result = plan(
        info,
        gpus,
        n_ctx * seqs,
        cpu,
        n_batch=SeqRunner.GPU_N_BATCH if offload else 512,
        flash_attn=SeqRunner.GPU_FLASH_ATTN if offload else False,
    )
    fits = bool(result.as_dict().get("fits", True))
    if as_json:
        data = result.as_dict()
        data["sequences"] = seqs
        return json.dumps(data, indent=2) + "\n", fits
    note = (
        f"n_ctx {n_ctx} × {seqs} sequences = {n_ctx * seqs} (the pool's seqs_per_model)\n"
        if seqs > 1
        else ""
    )
    return note + render_table(result) + "\n", fits
