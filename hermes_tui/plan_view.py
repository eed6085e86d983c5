"""`hermes plan`: how a GGUF would be placed on the GPUs and the CPU."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agents.models import ModelFileError, resolve_model_path
from agents.pool.devices import Device, cpu_device, parse_size
from agents.pool.gguf_info import GGUFInfoError, read_gguf_info
from agents.pool.planner import plan, render_table
from hermes_tui.config import ConfigError, load_config
from hermes_tui.errors import Fail


def _model_path(model: str, config_path: str | None) -> Path:
    """MODEL is a GGUF path, ``embedded:NAME``, or a model name from the config."""
    if not Path(model).expanduser().exists() and not model.startswith("embedded:"):
        try:
            config = load_config(config_path)
        except ConfigError:
            config = None
        if config and model in config.models and config.models[model].path:
            return config.models[model].path
    try:
        return resolve_model_path(model)
    except ModelFileError as exc:
        raise Fail(str(exc), 2) from None


def _device(spec: str, index: int) -> Device:
    name, sep, size = spec.partition("=")
    if not sep or not name:
        raise Fail(f"--device {spec!r}: expected NAME=SIZE, e.g. cuda:0=8GiB", 2)
    try:
        budget = parse_size(size)
    except ValueError as exc:
        raise Fail(f"--device {spec!r}: {exc}", 2) from None
    kind = "vulkan" if name.startswith("vulkan") else "cuda"
    match = re.search(r"(\d+)$", name)
    return Device(name, kind, budget, index=int(match.group(1)) if match else index)


def render(
    model: str,
    config_path: str | None,
    devices: tuple[str, ...],
    ram: str | None,
    n_ctx: int,
    as_json: bool,
) -> tuple[str, bool]:
    """The plan as a table (or JSON) and whether it fits."""
    path = _model_path(model, config_path)
    try:
        info = read_gguf_info(path)
    except GGUFInfoError as exc:
        raise Fail(str(exc), 2) from None
    gpus = [_device(spec, i) for i, spec in enumerate(devices)]
    try:
        # An explicit --ram plans for that machine (maybe not this one): no "free now" cap.
        cpu = Device("cpu", "cpu", parse_size(ram)) if ram else cpu_device()
    except ValueError as exc:
        raise Fail(f"--ram: {exc}", 2) from None
    result = plan(info, gpus, n_ctx, cpu)
    fits = bool(result.as_dict().get("fits", True))
    if as_json:
        return json.dumps(result.as_dict(), indent=2) + "\n", fits
    return render_table(result) + "\n", fits
