"""The personas' next tokens of one decode step, sampled in one pass over the step's logits.

Every persona samples with its own llama.cpp sampler chain (``new_chain``): greedy at
temperature 0, else top-k 40, top-p, min-p 0.05, temperature and a seeded draw (the settings
``Llama.sample`` uses). ``llama_sampler_sample`` hands the chain a copy of the whole vocabulary
per call (32,000-150,000 candidates) and runs its first sampler over all of them: on an H200
host that was 70-105 us per persona per step, 12-18% of a three-persona batched step
(benchmarks/results/gpu_h200_issue18.json, "sampler").

``StepSampler`` reads the step's logits once, as one (outputs, vocabulary) array, and:

* greedy rows: one ``argmax`` over them (llama.cpp's greedy keeps the first maximum, as
  ``argmax`` does);
* top-k rows: one vectorised pass finds, per row, a threshold no higher than its k-th largest
  logit (the smallest of the maxima of k disjoint blocks: those k maxima are k logits at or
  above it), and only the logits at or above it (a superset of the top k, typically a few
  hundred) go to the persona's own chain through ``llama_sampler_apply``. The chain's top-k
  then picks the same k tokens from them that it would have picked from the whole vocabulary,
  and everything after it (top-p, min-p, temperature, the seeded draw, the chain's accept)
  runs unchanged in llama.cpp: the same tokens for the same seed.

Rows it cannot reduce (a NaN logit, fewer than k candidates) fall back to
``llama_sampler_sample``. Only the slot thread calls it, between one ``llama_decode`` and the
next: the logits it reads are the context's own buffer, overwritten by the next decode.

``DeviceTopK`` moves the first sampler into the decode itself (llama.cpp's backend sampling):
every KV sequence gets a chain of just ``top_k(40)``, which the device runs on its logits
inside the decode graph, so only 40 candidates per persona come back instead of the whole
vocabulary; ``StepSampler`` then hands them to the persona's own chain (its top-k keeps all
40, and top-p, min-p, temperature, the seeded draw and the accept run on the host as before):
the same tokens for the same seed. Only the top-k moves: the rest of the chain on the device
is dozens of tiny kernels per persona, which cost more than the host does on 40 candidates.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.engine import SEED_RANDOM, SamplingParams

TOP_K = 40  # the sampled chain's first sampler (Llama.sample's default)
MIN_P = 0.05


def new_chain(params: SamplingParams) -> Any:
    """A llama.cpp sampler chain for ``params`` (free it with ``llama_sampler_free``)."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    if is_greedy(params):
        add(chain, llama_cpp.llama_sampler_init_greedy())
    else:
        add(chain, llama_cpp.llama_sampler_init_top_k(TOP_K))
        add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        add(chain, llama_cpp.llama_sampler_init_min_p(MIN_P, 1))
        add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        seed = params.seed
        add(chain, llama_cpp.llama_sampler_init_dist(SEED_RANDOM if seed is None else seed))
    return chain


def is_greedy(params: SamplingParams) -> bool:
    return params.temperature <= 0


class DeviceTopK:
    """A ``top_k`` chain on each of a context's KV sequences, run by the device inside every
    decode (see the module). ``attach`` says whether the context took them all; ``detach``
    takes them off again (before the context or the chains go)."""

    def __init__(self, ctx: Any, seqs: int, top_k: int = TOP_K) -> None:
        import llama_cpp

        self._lc = llama_cpp
        self.ctx = ctx
        self.seqs = seqs
        self.top_k = top_k
        self._chains: list[Any] = []
        # llama-cpp-python 0.3.36 binds the backend-sampling getters but not the setter.
        fn = llama_cpp.llama_cpp._lib.llama_set_sampler
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p]
        fn.restype = ctypes.c_bool
        self._set = fn

    def attach(self) -> bool:
        lc = self._lc
        for seq in range(self.seqs):
            chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_k(self.top_k))
            self._chains.append(chain)
            if not self._set(self.ctx, seq, chain):
                self.detach()
                return False
        return True

    def detach(self) -> None:
        for seq in range(len(self._chains)):
            self._set(self.ctx, seq, None)
        for chain in self._chains:
            self._lc.llama_sampler_free(chain)
        self._chains = []


class StepSampler:
    """Samples the output rows of one decode step of one llama context (see the module).

    ``on_device``: the context runs a ``DeviceTopK`` (each row is then 40 candidates that
    ``llama_sampler_sample`` gives the persona's chain)."""

    def __init__(
        self, ctx: Any, n_vocab: int, top_k: int = TOP_K, *, on_device: bool = False
    ) -> None:
        import llama_cpp

        self._lc = llama_cpp
        self.ctx = ctx
        self.on_device = on_device
        self.n_vocab = n_vocab
        self.top_k = top_k
        self._block = n_vocab // top_k  # top_k blocks of this many logits per row
        self._view: npt.NDArray[np.float32] | None = None
        self._view_key: tuple[int, int] = (0, 0)
        # One candidate buffer (llama_token_data: id, logit, p), reused by every row.
        self._cand = (llama_cpp.llama_token_data * n_vocab)()
        cand = np.ctypeslib.as_array(self._cand)
        self._ids = cand["id"]
        self._logits = cand["logit"]
        self._p = cand["p"]
        self._arr = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._cand, ctypes.POINTER(llama_cpp.llama_token_data)),
            size=0,
            selected=-1,
            sorted=False,
        )
        self._arr_ref = ctypes.byref(self._arr)
        self.fallbacks = 0  # rows sampled over the whole vocabulary (llama_sampler_sample)

    def rows(self, n: int) -> npt.NDArray[np.float32]:
        """The logits of the step's first ``n`` outputs as an (n, vocabulary) view.

        Waits for the decode (``llama_get_logits`` synchronizes). The view is rebuilt only when
        llama.cpp moved its buffer (it grows it for a batch with more outputs).
        """
        ptr = self._lc.llama_get_logits(self.ctx)
        addr = ctypes.cast(ptr, ctypes.c_void_p).value or 0
        if (addr, n) != self._view_key or self._view is None:
            if not addr:
                raise RuntimeError("llama_get_logits returned no logits")
            view: npt.NDArray[np.float32] = np.ctypeslib.as_array(ptr, shape=(n, self.n_vocab))
            self._view = view
            self._view_key = (addr, n)
        return self._view

    def sample(self, chains: Sequence[Any], greedy: Sequence[bool]) -> list[int]:
        """Row i's next token from ``chains[i]`` (greedy[i]: the chain is the greedy one)."""
        n = len(chains)
        lc = self._lc
        if self.on_device:  # llama.cpp hands the device's 40 candidates to each chain
            return [int(lc.llama_sampler_sample(chains[i], self.ctx, i)) for i in range(n)]
        rows = self.rows(n)
        out = [0] * n
        if all(greedy):
            for i, tok in enumerate(np.argmax(rows, axis=1).tolist()):
                lc.llama_sampler_accept(chains[i], tok)
                out[i] = tok
            return out
        idx = [i for i in range(n) if not greedy[i]]
        for i in range(n):
            if greedy[i]:
                out[i] = int(np.argmax(rows[i]))
                lc.llama_sampler_accept(chains[i], out[i])
        sub = rows if len(idx) == n else rows[idx]
        k, b = self.top_k, self._block
        if b < 1:  # a vocabulary smaller than k: nothing to reduce
            for i in idx:
                out[i] = self._fallback(chains[i], i)
            return out
        # (rows, k, block) over the first k*block logits of each row: no copy
        blocks = np.lib.stride_tricks.as_strided(
            sub, shape=(len(idx), k, b), strides=(sub.strides[0], b * 4, 4), writeable=False
        )
        limit = blocks.max(axis=2).min(axis=1)
        for j, i in enumerate(idx):
            row = sub[j]
            ids = np.flatnonzero(row >= limit[j])
            m = len(ids)
            if m < k:  # NaN somewhere: let llama.cpp see the whole row
                out[i] = self._fallback(chains[i], i)
                continue
            self._ids[:m] = ids
            self._logits[:m] = row[ids]
            self._p[:m] = 0.0
            arr = self._arr
            arr.size, arr.selected, arr.sorted = m, -1, False
            lc.llama_sampler_apply(chains[i], self._arr_ref)
            sel = arr.selected
            if not 0 <= sel < arr.size:
                raise RuntimeError(f"sampler selected candidate {sel} of {arr.size}")
            tok = int(self._ids[sel])
            lc.llama_sampler_accept(chains[i], tok)
            out[i] = tok
        return out

    def _fallback(self, chain: Any, i: int) -> int:
        self.fallbacks += 1
        return int(self._lc.llama_sampler_sample(chain, self.ctx, i))
