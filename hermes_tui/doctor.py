"""`hermes doctor`: what this installation can do and what is missing."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from hermes_tui.config import ConfigError, find_config, load_config
from sentinel import cpu_backend


def llama_build() -> dict[str, Any]:
    """The llama.cpp build behind llama-cpp-python and the backends compiled into it."""
    try:
        import llama_cpp
    except ImportError as exc:
        return {"ok": False, "error": f"llama-cpp-python is not importable: {exc}"}
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    backends = sorted(set(re.findall(r"(?:^|\|\s*)([A-Za-z][\w-]*) :", info)))
    cpu = cpu_backend.decide()  # probes (a child process) only where the CPU offers AMX
    return {
        "ok": True,
        "version": llama_cpp.__version__,
        "backends": backends or ["CPU"],
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "cpu_extra_buffers": cpu.extra_buffers,
        "cpu_extra_buffers_reason": cpu.reason,
        "system_info": info.strip(),
    }


def _nearest_dir(path: Path) -> Path:
    """The directory hermes would create ``path`` in: its parent, or the nearest ancestor that
    exists (hermes creates the missing ones)."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _write_problem(db: Path) -> str | None:
    """Why hermes could not save chats to ``db``, or None.

    A chat or batch run writes the file itself and creates ``-wal``, ``-shm`` and
    ``-writers`` beside it, so the directory must be writable too, not only the file.
    """
    if db.exists():
        if not os.access(db, os.W_OK):
            return (
                f"database {db} is read-only; chat and batch cannot save to it (fix its "
                "permissions or pass another --db; `hermes log` can still read it)"
            )
        where = db.parent
        if not os.access(where, os.W_OK | os.X_OK):
            return (
                f"directory {where} of database {db} is not writable; hermes must create "
                f"{db.name}-wal and {db.name}-shm there to save chats (fix its permissions or "
                "pass another --db)"
            )
        return None
    where = _nearest_dir(db)
    if not where.is_dir():
        return f"cannot create database {db}: {where} is not a directory; pass another --db"
    if not os.access(where, os.W_OK | os.X_OK):
        return f"cannot create database {db}: {where} is not writable; pass another --db"
    return None


def database(db: Path, source: str | None = None) -> dict[str, Any]:
    """The database part of the report: whether hermes can read and write ``db``.

    Opened read-only (nothing is created, migrated or recovered), so running doctor on a
    broken or foreign file leaves it exactly as it was. ``source`` says where the path came
    from (``--db X``, the config's ``storage.db``) for the problem a missing directory is:
    hermes creates only the default location's directories.
    """
    from hermes_tui.store import inspect_database, missing_directory

    if (missing := missing_directory(db)) is not None:
        return {
            "path": str(db),
            "exists": False,
            "writable_dir": False,
            "schema_version": None,
            "sessions": None,
            "problem": f"{source or db}: {missing}",
            "note": None,
            "write_problem": None,
        }
    exists = db.exists()
    where = db.parent if exists else _nearest_dir(db)
    info: dict[str, Any] = {
        "path": str(db),
        "exists": exists,
        "writable_dir": os.access(where, os.W_OK | os.X_OK),
    }
    info.update(inspect_database(db))
    info["write_problem"] = _write_problem(db)
    return info


def collect(config_path: str | None, db_path: str | None) -> dict[str, Any]:
    from agents.pool.devices import detect_nvidia_gpus
    from hermes_tui.store import default_db_path

    problems: list[str] = []
    report: dict[str, Any] = {"llama_cpp": llama_build()}
    if not report["llama_cpp"]["ok"]:
        problems.append(report["llama_cpp"]["error"])
    path = find_config(config_path)
    report["config"] = {"path": str(path)}
    config = None
    try:
        config = load_config(config_path)
        report["config"]["ok"] = True
    except ConfigError as exc:
        report["config"].update(ok=False, error=str(exc))
        problems.append(str(exc))
    if config is not None:
        report["models"] = {
            name: {
                "path": str(m.path) if m.path else None,
                "url": m.url,
                "bytes": m.path.stat().st_size if m.path else None,
                "n_ctx": m.n_ctx,
                "n_gpu_layers": m.n_gpu_layers,
            }
            for name, m in config.models.items()
        }
        problems += check_models(config, report["models"])
        report["personas"] = {n: p.model for n, p in config.personas.items()}
        report["devices"] = [
            {"name": d.name, "budget_bytes": d.memory_bytes} for d in config.pool.devices
        ]
        report["sentinel"] = {
            "device": config.sentinel.device,
            "judge_model": config.sentinel_model,
            "llama_cpp_path": config.sentinel.judge_llama_cpp_path,
        }
        judge_on_gpu = bool(config.sentinel_model) and config.sentinel.device != "cpu"
        if judge_on_gpu:  # what the judge's own process sees: its build, its device limits
            from sentinel.judge import JudgeError, judge_devices

            try:
                report["sentinel"]["devices"] = judge_devices(
                    config.sentinel.device, config.sentinel.judge_llama_cpp_path
                )
            except JudgeError as exc:
                report["sentinel"]["devices"] = []
                report["sentinel"]["devices_error"] = str(exc)
            gpus = [d for d in report["sentinel"]["devices"] if d.get("type") != "cpu"]
            own_build = config.sentinel.judge_llama_cpp_path
            if not gpus and (own_build or report["llama_cpp"].get("gpu_offload")):
                why = report["sentinel"].get("devices_error") or "its build has no such backend"
                problems.append(f"the judge on {config.sentinel.device} sees no GPU ({why})")
        # A judge with a build of its own (llama_cpp_path) was checked above.
        judge_here = judge_on_gpu and not config.sentinel.judge_llama_cpp_path
        wants_gpu = judge_here or any(m.n_gpu_layers != 0 for m in config.models.values())
        if wants_gpu and report["llama_cpp"].get("ok") and not report["llama_cpp"]["gpu_offload"]:
            problems.append(
                "config asks for a GPU (n_gpu_layers, or a judge on "
                f"{config.sentinel.device!r}) but this llama-cpp-python is a CPU-only build "
                "(reinstall with CMAKE_ARGS, see README)"
            )
    report["server"] = server_status(config)
    if report["server"].get("problem"):
        problems.append(report["server"]["problem"])
    report["gpus"] = [g.__dict__ if hasattr(g, "__dict__") else g for g in detect_nvidia_gpus()]
    if db_path:
        db, source = Path(db_path).expanduser(), f"--db {db_path}"
    elif config is not None and config.db_path is not None:
        db = config.db_path.expanduser()
        source = f"{config.path}: storage.db: {config.db_path}"  # as chat would say it
    else:
        db, source = default_db_path(), None
    report["database"] = database(db, source)
    for key in ("problem", "write_problem"):
        if report["database"][key]:
            problems.append(report["database"][key])
    report["problems"] = problems
    report["ok"] = not problems
    return report


PROBE_S = 1.5  # how long doctor waits for a remote model's server


def check_models(config: Any, models: dict[str, dict[str, Any]]) -> list[str]:
    """Read every local model's header (a truncated file is a problem), price it with the
    pool's own estimate and budgets (a model that can never fit is a problem, the same text
    the pool would refuse it with), and ask every remote model's server whether it answers."""
    from agents.pool.gguf_info import GGUFInfoError, read_gguf_info
    from agents.pool.pool import never_fits, placement_bytes, pool_budgets
    from agents.remote import RemoteEngine

    problems: list[str] = []
    budgets = pool_budgets(config.pool)
    for name, spec in config.models.items():
        entry = models[name]
        if spec.path is not None:
            try:
                read_gguf_info(spec.path)
            except (GGUFInfoError, OSError) as exc:
                entry["problem"] = str(exc)
                problems.append(f"model {name}: {exc}")
                continue
            placement = (
                placement_bytes(spec, config.pool.seqs_per_model, budgets)
                if spec.device in budgets
                else {}
            )
            entry["estimate_bytes"] = sum(placement.values())
            entry["device"] = spec.device
            why = never_fits(name, spec, placement, budgets)
            if why is not None:
                entry["problem"] = why
                problems.append(why)
        elif spec.url:
            why = RemoteEngine.from_spec(spec).probe(PROBE_S)
            entry["answers"] = why is None
            if why is not None:
                entry["problem"] = f"server does not answer: {why}"
                problems.append(f"model {name}: server does not answer: {why}")
    return problems


def server_status(config: Any) -> dict[str, Any]:
    """Which pool chat and batch will use: a running ``hermes serve`` or in-process."""
    import asyncio

    from hermes_tui.errors import Fail
    from hermes_tui.server.client import locate, probe

    try:
        address = locate(None, config.server_url if config is not None else None)
    except Fail as exc:
        return {"uses": "in-process", "problem": str(exc)}
    if address is None:
        return {"uses": "in-process", "detail": "no hermes serve running"}
    why = asyncio.run(probe(address))
    if why is None:
        return {"uses": "server", "address": address.shown, "source": address.source}
    if address.source == "default socket":
        return {"uses": "in-process", "detail": why}
    return {"uses": "in-process", "address": address.shown, "problem": f"{why} ({address.source})"}


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def render(report: dict[str, Any]) -> str:
    lines = []
    ll = report["llama_cpp"]
    if ll["ok"]:
        lines.append(
            f"llama.cpp     llama-cpp-python {ll['version']}, backends: "
            f"{', '.join(ll['backends'])}, GPU offload: {'yes' if ll['gpu_offload'] else 'no'}"
        )
        state = "on" if ll["cpu_extra_buffers"] else "OFF"
        lines.append(
            f"llama.cpp     extra CPU buffer types (AMX, repacked weights) {state}: "
            f"{ll['cpu_extra_buffers_reason']}"
        )
    else:
        lines.append(f"llama.cpp     MISSING: {ll['error']}")
    cfg = report["config"]
    lines.append(f"config        {cfg['path']} ({'ok' if cfg.get('ok') else 'BROKEN'})")
    for name, m in report.get("models", {}).items():
        where = m["path"] or m["url"]
        what = f"{_size(m['bytes'])}, n_ctx {m['n_ctx']}" if m["path"] else "remote"
        if m.get("estimate_bytes") is not None:
            what += f", needs ~{_size(m['estimate_bytes'])} on {m['device']}"
        if m.get("answers"):
            what += ", answers"
        if m.get("problem"):
            what += f": PROBLEM: {m['problem']}"
        lines.append(f"model         {name}: {where} ({what})")
    for d in report.get("devices", []):
        lines.append(f"device        {d['name']}: budget {_size(d['budget_bytes'])}")
    for g in report.get("gpus", []):
        lines.append(f"gpu           {g}")
    if "sentinel" in report:
        s = report["sentinel"]
        lines.append(f"sentinel      judge {s['judge_model'] or 'off'} on {s['device']}")
        if s.get("llama_cpp_path"):
            lines.append(f"sentinel      judge's llama-cpp-python: {s['llama_cpp_path']}")
        for d in s.get("devices", []):
            if d.get("type") != "cpu":
                lines.append(
                    f"sentinel      judge sees {d['name']}: {d['description']} "
                    f"({_size(d['total_bytes'])}, {_size(d['free_bytes'])} free)"
                )
    srv = report.get("server", {})
    if srv.get("uses") == "server":
        lines.append(f"pool          hermes serve at {srv['address']} ({srv['source']})")
    else:
        lines.append(f"pool          in-process ({srv.get('detail') or srv.get('problem', '')})")
    db = report["database"]
    if not db["exists"] and db.get("problem"):
        state = "CANNOT BE CREATED"
    elif not db["exists"]:
        state = "will be created"
    elif db.get("problem"):
        state = "UNUSABLE"
    else:
        state = f"schema {db.get('schema_version')}"
        if db.get("sessions") is not None:
            state += f", {db['sessions']} session(s)"
        if db.get("note"):
            state += f", {db['note']}"
        if db.get("write_problem"):
            state += ", NOT WRITABLE"
    lines.append(f"database      {db['path']} ({state})")
    for p in report["problems"]:
        lines.append(f"PROBLEM       {p}")
    lines.append("ok" if report["ok"] else f"{len(report['problems'])} problem(s)")
    return "\n".join(lines)
