"""StepSampler's top-k reduction (agents/pool/sampling.py, ``_candidates``) keeps every token
the persona's chain could pick: for any logits, the candidates of a row hold its top 40.

Property tests over vocabularies that do and do not divide into the threshold's grid, with
ties, -inf (masked) logits and NaN; the llama.cpp side is tested in test_sampling.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.pool.sampling import TOP_K, StepSampler

pytest.importorskip("llama_cpp")


def _sampler(n_vocab: int) -> StepSampler:
    return StepSampler(None, n_vocab)  # _candidates reads only the array it is given


@settings(max_examples=60, deadline=None)
@given(
    n_vocab=st.sampled_from([32_000, 49_152, 50_257, 151_936, 2_000]),
    rows=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    ties=st.booleans(),
    masked=st.floats(0.0, 0.999),
)
def test_every_top_k_token_is_a_candidate(n_vocab, rows, seed, ties, masked):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((rows, n_vocab)).astype(np.float32) * 3
    if ties:  # many equal logits, as a quantised model gives
        logits = np.round(logits)
    logits[rng.random((rows, n_vocab)) < masked] = -np.inf
    got = _sampler(n_vocab)._candidates(logits)
    assert len(got) == rows
    for row, (ids, vals) in zip(logits, got, strict=True):
        assert np.all(np.diff(ids) > 0)  # ascending, no duplicates (what llama.cpp got before)
        assert np.array_equal(vals, row[ids])
        kth = np.sort(row)[-TOP_K]
        assert set(np.flatnonzero(row > kth)) <= set(ids.tolist())
        assert np.count_nonzero(vals >= kth) >= TOP_K  # enough ties at the k-th value too


def test_few_candidates_come_back_for_a_peaked_row():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((3, 49_152)).astype(np.float32)
    ids, _ = _sampler(49_152)._candidates(logits)[0]
    assert TOP_K <= len(ids) <= 4 * TOP_K  # the chain sees tens, not thousands


def test_a_row_with_a_nan_logit_gets_no_candidates_so_llama_cpp_sees_it_whole():
    logits = np.random.default_rng(2).standard_normal((2, 32_000)).astype(np.float32)
    logits[1, 12_345] = np.nan
    first, second = _sampler(32_000)._candidates(logits)
    assert len(first[0]) >= TOP_K
    assert len(second[0]) == 0
