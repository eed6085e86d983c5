"""Which device and which llama.cpp build the judge's own process uses (no GPU here: the CPU
build stands in; the Vulkan path itself is measured on a lent GPU, benchmarks/bench_vulkan_judge.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.models import resolve_model_path
from sentinel.judge import JudgeError, JudgeRequest, JudgeWorker, judge_devices, judge_env
from sentinel.judge_worker import device_settings


def _real_build_dir() -> str:
    import llama_cpp

    return str(Path(llama_cpp.__file__).resolve().parent.parent)


def test_a_judge_on_vulkan_sees_only_its_vulkan_device_and_no_cuda() -> None:
    kwargs, env = device_settings("vulkan:1")
    assert kwargs == {"n_gpu_layers": -1, "main_gpu": 0}
    assert env == {"GGML_VK_VISIBLE_DEVICES": "1", "CUDA_VISIBLE_DEVICES": ""}
    child = judge_env(env, None)
    assert child["GGML_VK_VISIBLE_DEVICES"] == "1" and child["CUDA_VISIBLE_DEVICES"] == ""


def test_the_judges_own_build_comes_first_on_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere/cuda-build")
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", "/somewhere/cuda-build/llama_cpp/lib")
    env = judge_env({}, "/opt/vulkan-build")
    parts = env["PYTHONPATH"].split(":")
    assert parts[1:] == ["/opt/vulkan-build", "/somewhere/cuda-build"]
    assert Path(parts[0], "sentinel").is_dir()  # this very package first
    assert "LLAMA_CPP_LIB_PATH" not in env  # the other build's libraries are not loaded


def test_a_judge_build_directory_without_llama_cpp_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(JudgeError, match=r"llama_cpp_path .*: no llama_cpp package there"):
        JudgeWorker("model.gguf", device="vulkan:0", llama_cpp_path=str(tmp_path))


async def test_the_judge_process_imports_llama_cpp_from_its_own_build(tmp_path: Path) -> None:
    """A stand-in build whose llama_cpp cannot load (as a Vulkan build without a driver):
    the judge fails to start with that build's own error, so it was the one imported."""
    (tmp_path / "llama_cpp").mkdir()
    (tmp_path / "llama_cpp" / "__init__.py").write_text(
        "raise ImportError('stand-in Vulkan build: no driver')\n"
    )
    model = str(resolve_model_path("embedded:smollm2-135m"))
    worker = JudgeWorker(model, device="cpu", llama_cpp_path=str(tmp_path), start_timeout_s=60)
    with pytest.raises(JudgeError, match="stand-in Vulkan build: no driver"):
        await worker.start()
    await worker.close()


async def test_a_judge_started_from_a_named_build_answers() -> None:
    model = str(resolve_model_path("embedded:smollm2-135m"))
    worker = JudgeWorker(model, device="cpu", llama_cpp_path=_real_build_dir(), n_ctx=1024)
    try:
        await worker.start()
        result = await worker.judge(
            JudgeRequest("code", "write a python function", "def f():\n    return 1\n"), 60
        )
        assert result is not None and isinstance(result.on_task, bool)
    finally:
        await worker.close()


def test_the_judges_devices_are_listed_from_its_own_process() -> None:
    devices = judge_devices("cpu", _real_build_dir())
    assert any(d["type"] == "cpu" and d["total_bytes"] > 0 for d in devices), devices
    assert all(d["name"] and "description" in d for d in devices)


def test_listing_devices_of_a_broken_build_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "llama_cpp").mkdir()
    (tmp_path / "llama_cpp" / "__init__.py").write_text(
        "raise OSError('libvulkan.so.1: missing')\n"
    )
    with pytest.raises(JudgeError, match=r"cannot list the judge's devices: .*libvulkan.so.1"):
        judge_devices("vulkan:0", str(tmp_path))
