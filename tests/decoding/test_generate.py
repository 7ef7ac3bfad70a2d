"""Greedy and beam search on a stand-in model whose right answers are known."""

import math

import pytest
import torch

from unique_asr.decoding.generate import beam_search, greedy_search


def test_greedy_copies_targets_batched(fake_model, copy_batch):
    emb, lens, targets = copy_batch
    hyps, stats = greedy_search(fake_model, emb, lens, max_new=20)
    assert hyps == targets  # task token suppressed, eos stripped, per-sequence lengths
    assert stats.tokens == sum(map(len, targets))
    # stops as soon as every sequence has ended: longest target 5 tokens + its eos
    assert stats.steps == max(map(len, targets)) + 1


def test_greedy_respects_per_sequence_limits(fake_model, copy_batch):
    emb, lens, targets = copy_batch
    hyps, _ = greedy_search(fake_model, emb, lens, max_new=[2, 3, 0])
    assert hyps == [targets[0][:2], targets[1][:3], []]
    assert all(c.max_len >= int(lens.max()) + 1 + 3 for c in fake_model.caches)


@pytest.mark.parametrize("beam", [1, 3])
def test_beam_copies_targets(fake_model, copy_batch, beam):
    emb, lens, targets = copy_batch
    hyps, stats = beam_search(fake_model, emb, lens, max_new=20, beam=beam)
    assert hyps == targets
    assert stats.tokens == sum(map(len, targets))


def test_beam_limits(fake_model, copy_batch):
    emb, lens, targets = copy_batch
    hyps, _ = beam_search(fake_model, emb, lens, max_new=[2, 3, 0], beam=2)
    assert hyps == [targets[0][:2], targets[1][:3], []]


def _garden_path(audio, hist):
    """Greedy takes token 1 (p=.6) and then faces a flat distribution; 2 then 3 is better.

    p(1)=.6, p(2)=.4 at the start; after [1] each of 10 tokens has p~.1; after [2], token 3
    has p~1; then eos. Best sequence: [2, 3] (p=.4) beats [1, x] (p=.06).
    """
    V = 12
    lp = torch.full((V,), -1e9)
    if not hist:
        lp[1], lp[2] = math.log(0.6), math.log(0.4)
    elif hist == [1]:
        lp[:10] = math.log(0.1) - 1e-3 * torch.arange(10.0)  # no ties: token 0 first
    elif hist == [2]:
        lp[3] = 0.0
    else:
        lp[11] = 0.0  # eos
    return lp


def test_beam_beats_greedy_on_garden_path(make_fake):
    m = make_fake(_garden_path)
    emb, lens = torch.zeros(2, 3, 4), torch.tensor([3, 2])
    greedy, _ = greedy_search(m, emb, lens, max_new=5)
    assert greedy == [[1, 0], [1, 0]]
    beam, _ = beam_search(m, emb, lens, max_new=5, beam=2)
    assert beam == [[2, 3], [2, 3]]
    assert beam_search(m, emb, lens, max_new=5, beam=1)[0] == greedy


def test_greedy_drops_finished_sequences(fake_model, copy_batch):
    emb, lens, targets = copy_batch  # targets of 3, 5 and 1 tokens
    hyps, _ = greedy_search(fake_model, emb, lens, max_new=20)
    assert hyps == targets
    (cache,) = fake_model.caches
    # the 1-token sequence ends at step 1 and the 3-token one at step 3: two compactions, and
    # the last decode steps run on the one live row only
    assert cache.reorders == 2 and len(cache.rows) == 1
