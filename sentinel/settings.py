"""Sentinel settings (built from the ``[sentinel]`` table of config.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sentinel.verdict import Severity

# A judge on the personas' GPU gives way to them while they stream: with this share of the time
# the primary kept >= 0.97 of its tokens/s on an H200 (benchmarks/results/vulkan_judge_h200.json).
BUSY_SHARE_GPU = 0.05


@dataclass(frozen=True)
class SentinelSettings:
    device: str = "cpu"
    judge_model_path: str | None = None  # resolved GGUF path; None = no judge
    # A second llama-cpp-python build the judge's process imports first (e.g. Vulkan beside a
    # CUDA build for the personas); None: the same build as hermes.
    judge_llama_cpp_path: str | None = None
    judge_every_chars: int = 400  # ask the judge again after this much new text
    # How long one judge request may go unanswered: then the turn goes on unjudged (and says
    # so) and the judge's process drops it; a process that also sent no progress for as long
    # is deemed hung, killed and restarted (a slow one, e.g. on a loaded CPU, is not).
    judge_timeout_s: float = 5.0
    # While the personas stream, a judge on a GPU keeps its device work to this share of the
    # time (sentinel.judge_yield), for at most half of judge_timeout_s per request; 1: never
    # gives way. None: BUSY_SHARE_GPU on a GPU, 1 on the CPU.
    judge_busy_share: float | None = None
    max_corrections: int = 2
    stall_warn_s: float = 10.0
    stall_halt_s: float = 30.0
    loop_minor_repeats: int = 3
    loop_critical_repeats: int = 5
    # Tools whose repeated identical calls are never a loop (E_TOOL_LOOP), e.g. pollers.
    tool_loop_exempt: tuple[str, ...] = ()
    queue_size: int = 256  # bounded feed queue between the stream and the checks
    # per-code overrides ([sentinel.severity]): given to every check, applied by the monitor
    severity: dict[str, Severity] = field(default_factory=dict)

    @property
    def busy_share(self) -> float:
        """The judge's device share while the personas stream (see ``judge_busy_share``)."""
        if self.judge_busy_share is not None:
            return self.judge_busy_share
        return 1.0 if self.device == "cpu" else BUSY_SHARE_GPU
