"""The model side of the pool: one llama.cpp model, its multi-sequence context, its decoding.

A ``SeqRunner`` is only ever called on its slot's worker thread (llama contexts are not
thread-safe; the scheduler's one-thread executor serialises every call). It loads the model
with ``seqs`` KV sequences, prefills what a persona's sequence does not hold yet (longest
common prefix), decodes the seated personas together (batched or interleaved, chosen by
measurement), saves and restores a sequence's KV state, and hands pieces of text to the event
loop. ``Job`` is one persona's request as both sides see it; ``ModelStats`` holds the costs the
scheduler prices restore-vs-re-prefill with.

Size (over 500 lines): ``SeqRunner`` is one state machine over one llama context (KV
sequences, batch, sampler chains, saved states); its parts only make sense on the same thread
with the same state, so it stays one module.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from agents.engine import EngineError, Message, PromptTooLongError, SamplingParams
from agents.pool.prompt_limit import estimated_tokens_over
from agents.pool.queue import Request
from agents.pool.sampling import DeviceTopK, StepSampler, is_greedy, new_chain
from agents.specs import ModelSpec

LONG_PREFILL = 256  # prefills this long or longer measure the rate a re-prefill runs at


class ModelStats:
    """Exponential moving averages of measured speeds of one model (for decisions and ETAs)."""

    def __init__(self) -> None:
        self.prefill_tps: float | None = None
        # Prefills of at least LONG_PREFILL tokens only: what a re-prefill of a saved
        # conversation costs. On a GPU short prompts run far below the long-prompt rate (fixed
        # cost per call), so the all-prompts average overstates a long re-prefill several-fold.
        self.prefill_long_tps: float | None = None
        self.decode_tps: float | None = None
        self.restore_bps: float | None = None
        self.save_bps: float | None = None
        self.load_s: float | None = None
        # The first long prefill after a load runs cold (CUDA graphs captured, kernels and
        # mmap'd weights paged in): measured 2x slower than the next on an H200. It only
        # counts when nothing better is known, and the next sample replaces it.
        self._long_cold = False  # the next long prefill is the first since a load
        self._long_from_cold = False  # prefill_long_tps so far comes from a cold sample only

    def loaded(self, seconds: float) -> None:
        """The model was (re)loaded in ``seconds``."""
        self.load_s = seconds
        self._long_cold = True

    @staticmethod
    def _ema(old: float | None, new: float, alpha: float = 0.3) -> float:
        return new if old is None else (1 - alpha) * old + alpha * new

    def add_prefill(self, tokens: int, seconds: float) -> None:
        if tokens >= 8 and seconds > 0:
            self.prefill_tps = self._ema(self.prefill_tps, tokens / seconds)
        if tokens >= LONG_PREFILL and seconds > 0:
            rate = tokens / seconds
            if self._long_cold:
                self._long_cold = False
                if self.prefill_long_tps is None:
                    self.prefill_long_tps, self._long_from_cold = rate, True
            elif self._long_from_cold:
                self.prefill_long_tps, self._long_from_cold = rate, False
            else:
                self.prefill_long_tps = self._ema(self.prefill_long_tps, rate)

    def reprefill_s(self, tokens: int) -> float:
        """Estimated seconds to prefill ``tokens`` again (long-prompt rate when measured)."""
        return tokens / (self.prefill_long_tps or self.prefill_tps or 200.0)

    def restore_s(self, nbytes: int) -> float:
        """Estimated seconds to restore a saved state of ``nbytes``.

        Until a restore has been measured, the measured save rate stands in for it (a save
        always comes first and moves the same bytes the other way); 2 GB/s before either.
        """
        return nbytes / (self.restore_bps or self.save_bps or 2e9)

    def add_decode(self, tokens: int, seconds: float) -> None:
        if tokens >= 4 and seconds > 0:
            self.decode_tps = self._ema(self.decode_tps, tokens / seconds)

    def add_decode_step(self, tokens: int, seconds: float) -> None:
        """Accumulate small decode steps (1 token per persona) into decode_tps samples."""
        self._step_tokens = getattr(self, "_step_tokens", 0) + tokens
        self._step_s = getattr(self, "_step_s", 0.0) + seconds
        if self._step_tokens >= 16:
            self.add_decode(self._step_tokens, self._step_s)
            self._step_tokens, self._step_s = 0, 0.0

    def add_restore(self, nbytes: int, seconds: float) -> None:
        if seconds > 0:
            self.restore_bps = self._ema(self.restore_bps, nbytes / seconds)

    def add_save(self, nbytes: int, seconds: float) -> None:
        if seconds > 0:
            self.save_bps = self._ema(self.save_bps, nbytes / seconds)


class TextStream:
    """Bytes of tokens in, text out: incremental UTF-8 and stop strings held back until sure."""

    def __init__(self, stops: list[str]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self.stops = [s for s in stops if s]

    def feed(self, data: bytes) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop string was reached)."""
        self._pending += self._decoder.decode(data)
        hits = [i for i in (self._pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self._pending = self._pending[: min(hits)], ""
            return out, True
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self._pending)), 0, -1):
                if self._pending.endswith(stop[:k]):
                    hold = max(hold, k)
                    break
        cut = len(self._pending) - hold
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out, False

    def flush(self) -> str:
        out = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return out


@dataclass(eq=False)
class Job:
    """One ``generate`` call travelling through the pool (async side and worker thread)."""

    persona: str
    model: str
    key: str
    messages: list[Message]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    # OpenAI ``tools`` / ``tool_choice`` of an API request (agents/tool_prompt.py puts them in
    # the prompt); None: no tools.
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    out: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)
    request: Request | None = None
    granted: asyncio.Future[Any] | None = None
    turn: asyncio.Future[bool] | None = None  # True: finished; False: gave its seat up (re-queue)
    prompt: list[int] | None = None
    stop_ids: frozenset[int] = frozenset()
    text: TextStream | None = None
    sampler: Any = None  # llama_sampler chain, owned by the slot thread
    greedy: bool = False  # the chain is the greedy one (StepSampler's argmax path)
    seq: int | None = None  # KV sequence while seated
    seated: bool = False
    served: int = 0  # tokens produced since it was last seated (who gives way first)
    generated: list[int] = field(default_factory=list)
    done: bool = False
    slices: int = 0
    prefilled: int = 0  # prompt tokens evaluated (not reused from the KV cache) over all turns
    first_token_s: float | None = None  # seconds from admission to the first token
    created: float = field(default_factory=time.perf_counter)

    def emit(self, item: Any) -> None:
        """Thread-safe hand-off of a piece (or an exception / DONE) to the consumer."""
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)

    @property
    def remaining_tokens(self) -> int:
        return max(0, self.params.max_tokens - len(self.generated))


@dataclass
class SavedState:
    tokens: list[int]
    state: Any  # ctypes byte buffer from llama_state_seq_get_data
    nbytes: int


@dataclass
class Flags:
    """What the async side wants from a running round (read by the slot thread each step)."""

    newcomer: bool = False  # a job was seated: stop the round so it can be prepared
    memory: bool = False  # the model must be freed: everyone yields after a slice
    seat_wanted: bool = False  # someone waits for a seat: the most served yields after a slice


def _find_chat_formatter(llama: Any) -> Any:
    """The ChatFormatter behind the model's chat handler, or None (then no time slicing).

    llama-cpp-python keeps only handler closures; the formatter that turns messages into a
    prompt string is the closure's ``chat_formatter`` cell (both for GGUF Jinja templates and
    for registered formats such as chatml / llama-2).
    """
    from llama_cpp import llama_chat_format

    handler = llama.chat_handler or llama._chat_handlers.get(llama.chat_format)
    if handler is None:
        with contextlib.suppress(Exception):
            handler = llama_chat_format.get_chat_completion_handler(llama.chat_format)
    code = getattr(handler, "__code__", None)
    if code is None or "chat_formatter" not in code.co_freevars or not handler.__closure__:
        return None
    return handler.__closure__[code.co_freevars.index("chat_formatter")].cell_contents


class ModeChooser:
    """Pick batched or interleaved decode by measured seconds per token (auto mode).

    Each mode is tried for ``probe`` multi-persona steps, the faster one is used, and the other
    is re-tried every ``reprobe`` steps because load from other processes changes the answer.
    """

    def __init__(self, mode: str, probe: int = 4, reprobe: int = 400) -> None:
        self.fixed = None if mode == "auto" else mode
        self.probe, self.reprobe = probe, reprobe
        self.cost: dict[str, float | None] = {"batched": None, "interleaved": None}
        self.steps = 0

    def choose(self, ahead: int = 0) -> str:
        """The mode for the next step (``ahead``: for the step after that many more)."""
        if self.fixed:
            return self.fixed
        phase = (self.steps + ahead) % self.reprobe
        if phase < self.probe:
            return "batched"
        if phase < 2 * self.probe:
            return "interleaved"
        b, i = self.cost["batched"], self.cost["interleaved"]
        return "interleaved" if b is not None and i is not None and i < b else "batched"

    def record(self, mode: str, tokens: int, seconds: float) -> None:
        self.steps += 1
        per = seconds / max(1, tokens)
        old = self.cost[mode]
        self.cost[mode] = per if old is None else 0.7 * old + 0.3 * per


class SeqRunner:
    """Thread-side owner of one model, its multi-sequence context and a token batch.

    Only ever called on the slot's thread. ``seq_tokens[s]`` mirrors what sequence ``s`` holds
    in the KV cache, so a turn re-evaluates only what is not cached (longest common prefix).
    """

    # Context settings used when the model is offloaded to a GPU (n_gpu_layers != 0 on a build
    # that can offload); the CPU keeps llama-cpp-python's defaults. Measured on an H200 with
    # benchmarks/gpu_probe.py (benchmarks/results/gpu_h200.json, "probe"):
    # * flash attention: fewer kernels per layer, and a much smaller compute buffer for a
    #   large ubatch;
    # * one unified KV stream: the batch of one token per persona is then one attention over
    #   one stream, and a step that decodes a different sequence keeps the same graph, so
    #   llama.cpp's CUDA graph stays valid (per-sequence streams re-captured it);
    # * ubatch 2048: a re-prefill of a long history is a few large matrix products instead of
    #   one per 512 tokens, which is what makes re-prefilling cheaper than restoring a saved
    #   state on a GPU.
    # DEVICE_TOP_K: the first sampler (top-k 40) runs on the device inside the decode graph
    # (DeviceTopK, llama.cpp's backend sampling): 40 candidates per persona come back instead
    # of the vocabulary's logits, and the host's one-pass top-k threshold is skipped. True /
    # False: always / never; None: on a GPU only. Off: measured on two H200s
    # (benchmarks/results/gpu_h200_issue18_run3.json, `device_top_k`) it was no faster for
    # sampled personas (1.01x the host path, pool/cap 0.86-0.87 vs 0.85) and slower for greedy
    # ones (0.84-0.85 of the cap vs the host's 0.95-0.96): the top-k inside the graph costs
    # the device about what it saves the host. On the CPU it only moves work between threads.
    # The whole chain on the device was measured earlier: batched +2.5% at best, interleaved
    # -20% (llama.cpp then rebuilt the sampler graph whenever the sequence changed).
    DEVICE_TOP_K: bool | None = False
    # Greedy text on a GPU already depends on batch shape (different kernels), so the CPU's
    # reason for separate KV streams does not hold there.
    GPU_FLASH_ATTN = True
    GPU_KV_UNIFIED = True
    GPU_N_BATCH = 2048
    GPU_THREADS: int | None = None  # None: llama-cpp-python's default
    # Interleaved decode on the CPU gives each persona this many tokens in a row before the
    # next one's turn: with one KV stream per sequence, llama.cpp rebuilds its graph whenever
    # the sequence changes, which cost 5% per token when switching every token (SmolLM2 on
    # 2 cores: 6.75 ms/token switching each token, 6.45 switching every 8; one sequence 6.44).
    INTERLEAVE_BURST = 8
    # Pieces reach the event loop at most this often (seconds; 0: after every step), and
    # always when a persona finishes or the round ends. Each hand-off wakes the loop thread,
    # which then competes for the GIL with this thread: on an H200 a batched step of three
    # personas is ~2 ms, and handing off every step cost 2-2.5% of throughput
    # (gpu_h200.json, "breakdown"). 8 ms is far below what a reader or the sentinel notices.
    DELIVER_S = 0.008
    # A model's first steps after a load run cold: on an H200 a persona's first 128 tokens ran
    # at 187 tok/s against 800 on its second round (kernels loaded and CUDA graphs captured on
    # first use). ``warm_up`` runs those shapes once, right after the load, on the slot's
    # thread, in steps the scheduler can stop between: a turn that arrives meanwhile waits for
    # one step at most. Only on a GPU: on the CPU the cold cost is small and the cores shared.
    WARM_UP_STEPS = 4  # decode steps per batch width (1 .. seqs)

    def __init__(
        self, spec: ModelSpec, stats: ModelStats, seqs: int = 3, decode_mode: str = "auto"
    ) -> None:
        self.spec = spec
        self.stats = stats
        self.seqs = max(1, seqs)
        if decode_mode == "auto" and spec.n_gpu_layers == 0:
            # On the CPU decode is compute bound: batching three sequences measured 0.82-0.89x
            # of interleaving them (benchmarks/results/pool.json), and probing costs a little.
            decode_mode = "interleaved"
        self.chooser = ModeChooser(decode_mode)
        self.llama: Any = None
        self.ctx: Any = None  # llama_context pointer
        self._ctx_obj: Any = None
        self._mem: Any = None
        self._batch: Any = None
        self.n_batch = 512
        self.on_gpu = False
        self.formatter: Any = None
        self.seq_tokens: list[list[int]] = [[] for _ in range(self.seqs)]
        self._outbox: list[tuple[Job, str]] = []
        self._delivered_at = 0.0
        self.sampler: StepSampler | None = None
        self._device_top_k: DeviceTopK | None = None
        self._vocab: Any = None
        self._eog: dict[int, bool] = {}  # llama_vocab_is_eog, per token, remembered
        self._pieces: dict[int, bytes] = {}

    def load(self) -> None:
        import llama_cpp
        from llama_cpp import _internals

        from agents.engine import quiet_llama

        # llama_cpp.Llama has no n_seq_max: load through it (tokenizer, chat template) with a
        # tiny throwaway context, then give it a multi-sequence context of our own.
        kwargs: dict[str, Any] = {
            "model_path": str(self.spec.path),
            "n_ctx": 64,
            "n_gpu_layers": self.spec.n_gpu_layers,
        }
        if self.spec.chat_format:
            kwargs["chat_format"] = self.spec.chat_format
        if self.spec.tensor_split:
            kwargs["tensor_split"] = list(self.spec.tensor_split)
        t0 = time.perf_counter()
        try:
            self.llama = quiet_llama(**kwargs)
            self.llama._ctx.close()
            self.on_gpu = self.spec.n_gpu_layers != 0 and llama_cpp.llama_supports_gpu_offload()
            params = self.llama.context_params
            params.n_ctx = self.spec.n_ctx * self.seqs
            params.n_seq_max = self.seqs
            # Prompts and batched steps on the decode thread count too: on a shared CPU a
            # second spinning thread made prefill 5-10x slower (measured, load average 4-5).
            params.n_threads_batch = params.n_threads
            if self.on_gpu:
                self.n_batch = self.GPU_N_BATCH
                params.kv_unified = self.GPU_KV_UNIFIED
                params.flash_attn_type = (
                    llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
                    if self.GPU_FLASH_ATTN
                    else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
                )
                if self.GPU_THREADS:
                    params.n_threads = params.n_threads_batch = self.GPU_THREADS
            else:
                # One KV stream per sequence: every persona keeps the full n_ctx, and a
                # sequence's attention never sees another's cells (unified KV changes greedy
                # text on the CPU, measured).
                params.kv_unified = False
            params.n_batch = params.n_ubatch = self.n_batch
            self._ctx_obj = _internals.LlamaContext(
                model=self.llama._model, params=params, verbose=False
            )
        except (ValueError, RuntimeError, OSError) as exc:
            self.close()
            raise EngineError(f"cannot load model {self.spec.name!r}: {exc}") from exc
        self.ctx = self._ctx_obj.ctx
        self._mem = llama_cpp.llama_get_memory(self.ctx)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._vocab = self.llama._model.vocab
        on_device = self.on_gpu if self.DEVICE_TOP_K is None else self.DEVICE_TOP_K
        if on_device:
            self._device_top_k = DeviceTopK(self.ctx, self.seqs)
            if not self._device_top_k.attach():  # a backend without the ops: the host does it
                self._device_top_k = None
        self.sampler = StepSampler(
            self.ctx,
            int(llama_cpp.llama_vocab_n_tokens(self._vocab)),
            on_device=self._device_top_k is not None,
        )
        self.stats.loaded(time.perf_counter() - t0)
        self.formatter = _find_chat_formatter(self.llama)

    @property
    def device_top_k(self) -> bool:
        """Whether the device samples each persona's top-k inside the decode (DEVICE_TOP_K)."""
        return self._device_top_k is not None

    def close(self) -> None:
        import llama_cpp

        self.sampler, self._vocab = None, None
        if self._device_top_k is not None:
            self._device_top_k.detach()
            self._device_top_k = None
        self._eog, self._pieces = {}, {}
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        ctx_obj, self._ctx_obj, self.ctx = self._ctx_obj, None, None
        if ctx_obj is not None:
            with contextlib.suppress(Exception):
                ctx_obj.close()
        llama, self.llama = self.llama, None
        if llama is not None:
            with contextlib.suppress(Exception):
                llama.close()

    def warm_up(self, stop: threading.Event) -> tuple[int, bool]:
        """Run a short prefill and decode steps of every batch width once, then forget them.

        Stops before the next step as soon as ``stop`` is set (a turn was seated, or the model
        goes). Returns (steps run, whether it ran to the end). Leaves every KV sequence empty
        and no measured speed changed: the turns that follow see a fresh model.
        """
        import llama_cpp

        if not self.on_gpu or self.ctx is None:
            return 0, False
        if any(self.seq_tokens):  # someone's conversation is already here: leave it alone
            return 0, False
        seed = self.llama.tokenize(b"Warm-up: the quick brown fox jumps over the lazy dog.")
        prompt = (seed * (32 // max(1, len(seed)) + 1))[:32]
        lengths = [len(prompt)] + [8] * (self.seqs - 1)  # only seq 0 gets the longer prefill
        steps = 0
        pos = [0] * self.seqs
        try:
            for seq, n in enumerate(lengths):
                if stop.is_set():
                    return steps, False
                part = prompt[:n]
                self._decode([(t, i, seq, i == n - 1) for i, t in enumerate(part)])
                pos[seq] = n
                steps += 1
            for width in range(1, self.seqs + 1):
                for k in range(self.WARM_UP_STEPS):
                    if stop.is_set():
                        return steps, False
                    tok = prompt[k % len(prompt)]
                    self._decode([(tok, pos[s], s, True) for s in range(width)])
                    for s in range(width):
                        pos[s] += 1
                    steps += 1
            llama_cpp.llama_synchronize(self.ctx)
            return steps, True
        finally:
            for seq in range(self.seqs):
                llama_cpp.llama_memory_seq_rm(self._mem, seq, -1, -1)

    # -- prompts -------------------------------------------------------------------------
    def prepare(self, job: Job) -> None:
        """Format and tokenize the job's messages and build its sampler (once per job)."""
        if self.formatter is None:
            raise EngineError(f"{self.spec.name}: no chat formatter for this model")
        messages: list[Any] = job.messages
        extra: dict[str, Any] = {}
        if job.tools or any(m.get("role") == "tool" or m.get("tool_calls") for m in messages):
            from agents.tool_prompt import render_messages, template_uses_tools

            native = template_uses_tools(getattr(self.formatter, "template", "") or "")
            messages, extra = render_messages(messages, job.tools, job.tool_choice, native)
        result = self.formatter(messages=messages, **extra)
        data = result.prompt.encode("utf-8")

        def tokenize(part: bytes) -> list[int]:
            return list(self.llama.tokenize(part, add_bos=not result.added_special, special=True))

        if (about := estimated_tokens_over(tokenize, data, self.spec.n_ctx)) is not None:
            raise PromptTooLongError(
                f"{self.spec.name}: prompt of about {about:,} tokens ({len(data):,} bytes) "
                f"does not fit n_ctx={self.spec.n_ctx}"
            )
        job.prompt = tokenize(data)
        stops = result.stop if isinstance(result.stop, list) else [result.stop]
        job.text = TextStream([s for s in stops if s] + list(job.params.stop))
        job.stop_ids = frozenset(getattr(self.formatter, "stop_token_ids", None) or ())
        job.sampler = new_chain(job.params)
        job.greedy = is_greedy(job.params)

    # -- KV sequences --------------------------------------------------------------------
    def clear_seq(self, seq: int) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._mem, seq, -1, -1)
        self.seq_tokens[seq] = []

    def seq_state_size(self, seq: int) -> int:
        import llama_cpp

        return int(llama_cpp.llama_state_seq_get_size(self.ctx, seq))

    def save(self, seq: int) -> SavedState:
        import llama_cpp

        t0 = time.perf_counter()
        size = self.seq_state_size(seq)
        buf = (ctypes.c_uint8 * size)()
        n = int(llama_cpp.llama_state_seq_get_data(self.ctx, buf, size, seq))
        self.stats.add_save(n, time.perf_counter() - t0)
        return SavedState(list(self.seq_tokens[seq]), buf, n)

    def restore(self, saved: SavedState, seq: int) -> bool:
        import llama_cpp

        t0 = time.perf_counter()
        self.clear_seq(seq)
        ok = bool(llama_cpp.llama_state_seq_set_data(self.ctx, saved.state, saved.nbytes, seq) > 0)
        if ok:
            self.seq_tokens[seq] = list(saved.tokens)
            self.stats.add_restore(saved.nbytes, time.perf_counter() - t0)
        else:
            self.clear_seq(seq)
        return ok

    # -- decoding ------------------------------------------------------------------------
    def _decode(self, items: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, sequence, wants_logits) items."""
        import llama_cpp

        b = self._batch
        b.n_tokens = len(items)
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
        rc = llama_cpp.llama_decode(self.ctx, b)
        if rc != 0:
            raise EngineError(f"{self.spec.name}: llama_decode failed ({rc})")

    def _sync(self, job: Job) -> None:
        """Make the job's sequence hold everything but its last token (prefill what's missing)."""
        import llama_cpp

        assert job.prompt is not None and job.seq is not None
        wanted = job.prompt + job.generated
        if len(wanted) >= self.spec.n_ctx:
            raise PromptTooLongError(
                f"{self.spec.name}: prompt of {len(wanted)} tokens does not fit "
                f"n_ctx={self.spec.n_ctx}"
            )
        cached = self.seq_tokens[job.seq]
        keep = min(lcp(cached, wanted), len(wanted) - 1)
        if keep < len(cached):
            llama_cpp.llama_memory_seq_rm(self._mem, job.seq, keep, -1)
            del cached[keep:]
        todo = wanted[keep:-1]
        t0 = time.perf_counter()
        for at in range(0, len(todo), self.n_batch):
            chunk = todo[at : at + self.n_batch]
            base = len(cached)
            items = [(t, base + i, job.seq, i == len(chunk) - 1) for i, t in enumerate(chunk)]
            self._decode(items)
            cached.extend(chunk)
        self.stats.add_prefill(len(todo) + 1, time.perf_counter() - t0)
        job.prefilled += len(todo) + 1

    def _accept(self, job: Job, token: int) -> bool:
        """Take the job's sampled next ``token``; True when the job is done."""
        assert job.seq is not None and job.text is not None
        if token in job.stop_ids or self._is_eog(token):
            return self._finish(job)
        job.generated.append(token)
        job.served += 1
        if job.first_token_s is None:
            job.first_token_s = time.perf_counter() - job.created
        piece, stopped = job.text.feed(self._piece(token))
        if piece:
            self._outbox.append((job, piece))
        if stopped:
            return True
        total = len(job.prompt or []) + len(job.generated)
        if len(job.generated) >= job.params.max_tokens or total + 1 >= self.spec.n_ctx:
            return self._finish(job)
        return False

    def _sample(self, jobs: list[Job]) -> list[int]:
        """The next token of each of ``jobs`` from the last decode's outputs 0..len-1."""
        assert self.sampler is not None
        return self.sampler.sample([j.sampler for j in jobs], [j.greedy for j in jobs])

    def _is_eog(self, token: int) -> bool:
        eog = self._eog.get(token)
        if eog is None:
            import llama_cpp

            eog = self._eog[token] = bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))
        return eog

    def _piece(self, token: int) -> bytes:
        """The token's bytes (llama-cpp-python's detokenize of it alone, remembered)."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self.llama.detokenize([token])
        return piece

    def _finish(self, job: Job) -> bool:
        assert job.text is not None
        rest = job.text.flush()
        if rest:
            self._outbox.append((job, rest))
        return True

    def _deliver(self, force: bool = True) -> None:
        """Hand the pieces of every persona to the event loop in one wake-up (unless not
        ``force``d and the last hand-off was less than ``DELIVER_S`` ago)."""
        now = time.perf_counter()
        if not force and now - self._delivered_at < self.DELIVER_S:
            return
        self._delivered_at = now
        if self._outbox:
            batch, self._outbox = self._outbox, []
            batch[0][0].loop.call_soon_threadsafe(_put_all, batch)

    def run_round(
        self, jobs: list[Job], slice_tokens: int, flags: Flags
    ) -> dict[Job, bool | Exception]:
        """Decode for the seated ``jobs`` together until one finishes or yields its seat.

        Returns {job: True (done) / False (yields its seat) / exception}; jobs not in the
        result keep their seats (the round also ends early when a newcomer must be seated).
        Each job's last token is evaluated at the start of its next step, so a job can stop
        anywhere and resume exactly where it was.
        """
        out: dict[Job, bool | Exception] = {}
        active: list[Job] = []
        for job in jobs:
            job.slices += 1
            if job.cancel.is_set():
                out[job] = True
                continue
            try:
                self._sync(job)
            except EngineError as exc:
                out[job] = exc
                continue
            active.append(job)
        try:
            self._steps(active, out, slice_tokens, flags)
        finally:
            self._deliver()  # before the scheduler hears the round's results (or its error)
        return out

    def _steps(
        self, active: list[Job], out: dict[Job, bool | Exception], slice_tokens: int, flags: Flags
    ) -> None:
        """The decode steps of one round (see ``run_round``).

        Batched steps are pipelined: once every persona's next token is sampled and none of
        them ends on it (end of generation, a stop token, max_tokens, n_ctx) and nothing asks
        the round to stop, the next step's ``llama_decode`` is started before the tokens'
        text is handled (detokenize, stop strings, hand-off): on a GPU that host work then
        runs while the device computes. A decode started for a round that then ends anyway
        (a stop string, a cancel) is waited for and its outputs dropped; the KV sequences
        hold its tokens and ``seq_tokens`` says so, so the next turn re-uses or trims them
        like any other cached token.
        """
        inflight: list[Job] | None = None  # a batched decode of these jobs, not yet sampled
        try:
            while active and not out:
                if inflight is not None:
                    mode = "batched"
                else:
                    mode = self.chooser.choose() if len(active) > 1 else "interleaved"
                t0 = time.perf_counter()
                done: list[Job] = []
                if mode == "batched":
                    if inflight is None:
                        self._decode_step(active, [_last(job) for job in active])
                    inflight = None
                    picked = self._sample(active)
                    if self._may_pipeline(active, picked, flags):
                        self._decode_step(active, picked)
                        inflight = list(active)
                    done = [
                        job
                        for job, tok in zip(active, picked, strict=True)
                        if self._accept(job, tok)
                    ]
                    tokens = len(active)
                else:
                    tokens = self._interleaved(active, done, flags)
                dt = time.perf_counter() - t0
                self._deliver(force=bool(done))
                if len(active) > 1:
                    self.chooser.record(mode, tokens, dt)
                self.stats.add_decode_step(tokens, dt)
                for job in done:
                    out[job] = True
                active = [j for j in active if j not in out]
                for job in active:
                    if job.cancel.is_set():
                        out[job] = True
                active = [j for j in active if j not in out]
                if flags.memory:
                    for job in active:
                        if job.served >= slice_tokens:
                            out[job] = False
                elif flags.seat_wanted and active:
                    top = max(active, key=lambda j: j.served)
                    if top.served >= slice_tokens:
                        out[top] = False
                if flags.newcomer:
                    break
                if inflight is not None and [j for j in active if j not in out] != inflight:
                    break  # someone left after all: the decode started for everyone is dropped
        finally:
            if inflight is not None and self.ctx is not None:
                import llama_cpp

                llama_cpp.llama_synchronize(self.ctx)  # finished before anyone reads the KV

    def _decode_step(self, jobs: list[Job], tokens: list[int]) -> None:
        """One batched decode of each job's token at the end of its sequence; the sequences
        (and ``seq_tokens``) hold the tokens from now on."""
        items: list[tuple[int, int, int, bool]] = []
        for job, tok in zip(jobs, tokens, strict=True):
            assert job.seq is not None
            items.append((tok, len(self.seq_tokens[job.seq]), job.seq, True))
        self._decode(items)
        for job, tok in zip(jobs, tokens, strict=True):
            assert job.seq is not None
            self.seq_tokens[job.seq].append(tok)

    def _may_pipeline(self, jobs: list[Job], picked: list[int], flags: Flags) -> bool:
        """Whether the next batched step of exactly ``jobs`` may start before their text is
        handled: nobody ends on its token or is cancelled, nothing asks the round to stop,
        and the next step is batched."""
        if flags.newcomer or flags.memory or flags.seat_wanted:
            return False
        if self.chooser.choose(ahead=1) != "batched":
            return False
        for job, tok in zip(jobs, picked, strict=True):
            if job.cancel.is_set() or tok in job.stop_ids or self._is_eog(tok):
                return False
            made = len(job.generated) + 1
            if made >= job.params.max_tokens or len(job.prompt or []) + made + 1 >= self.spec.n_ctx:
                return False
        return True

    def _interleaved(self, active: list[Job], done: list[Job], flags: Flags) -> int:
        """One interleaved step: each job decodes alone (a burst of tokens on the CPU)."""
        burst = self.INTERLEAVE_BURST if len(active) > 1 and not self.on_gpu else 1
        tokens = 0
        for job in active:
            assert job.seq is not None
            # A job's first token comes at once: a newcomer just prefilled does not
            # wait for everyone's burst (the last of three clients started 16 steps late).
            for _ in range(burst if job.generated else 1):
                self._decode_step([job], [_last(job)])
                tokens += 1
                if self._accept(job, self._sample([job])[0]):
                    done.append(job)
                    break
                if job.cancel.is_set() or flags.newcomer:
                    break
            if burst > 1:
                self._deliver()  # each persona's burst reaches its reader at once
            if flags.newcomer:
                # Someone was seated: prefill them now rather than after everyone's
                # burst (3 clients asked at once: the last one's first token waited
                # up to 16 decode steps per arrival).
                break
        return tokens


def _last(job: Job) -> int:
    """The job's newest token: the one its next decode step evaluates."""
    assert job.prompt is not None
    return job.generated[-1] if job.generated else job.prompt[-1]


def _put_all(batch: list[tuple[Job, str]]) -> None:
    for job, piece in batch:
        job.out.put_nowait(piece)


def lcp(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
