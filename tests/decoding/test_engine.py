"""Continuous batching (decoding/engine.py) and the caches' slot reset: the engine's greedy
transcripts equal a cache-free forward decoder, the batch-free greedy search of each recording
alone, and dense decoding when a sparse budget covers the context; a reused slot decodes as a
fresh cache. The tiny speech LLM's decoder weights are scaled up so that its tokens depend on
the audio and on the history (a copy of one token would hide cache errors)."""

import pytest
import torch

from unique_asr.attention.api import SparseConfig
from unique_asr.decoding.config import DecodeConfig
from unique_asr.decoding.engine import continuous_greedy
from unique_asr.decoding.generate import JointCTC, greedy_search
from unique_asr.models import ModelConfig, build_model
from unique_asr.models.attention import SlotRows

LENS = [30, 9, 21, 14, 40]  # audio tokens of five recordings
LIMITS = [12, 5, 9, 3, 7]   # their token caps
DENSE, SPARSE = SparseConfig(), SparseConfig("unique", 16)  # 16 tokens: 2 of up to 7 pages


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(ModelConfig(n_text=40)).eval()
    with torch.no_grad():
        for p in m.decoder.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return m


def _audio(model, lens=LENS, seed=0):
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor(lens)
    return torch.randn(len(lens), int(lens.max()), model.cfg.llm.dim, generator=g) * 2, lens


def _forward_greedy(model, audio, limit):
    """Greedy decoding with no cache: the whole [audio][prompt][tokens] sequence is run through
    the decoder at every step."""
    with torch.no_grad():
        prompt = model.decoder.embed(model.prompt_ids)
        out = []
        while len(out) < limit:
            toks = model.decoder.embed(torch.tensor(out, dtype=torch.long))
            x = torch.cat([audio, prompt, toks])[None]
            h = model.decoder.hidden(x, torch.arange(x.shape[1]))
            logits = model.decoder.logits(h[0, -1]).float()
            logits[list(model.suppress_ids)] = float("-inf")
            tok = int(logits.argmax())
            if tok == model.eos_id:
                break
            out.append(tok)
    return out


def _one_at_a_time(model, emb, lens, limits, sparse, ctc=None):
    return [greedy_search(model, emb[b:b + 1, :lens[b]], lens[b:b + 1], limits[b], sparse)[0][0]
            for b in range(len(limits))]


def test_dense_engine_equals_cache_free_forward(model):
    emb, lens = _audio(model)
    hyps, stats = continuous_greedy(model, emb, lens, LIMITS, 2)
    want = [_forward_greedy(model, emb[b, :lens[b]], LIMITS[b]) for b in range(len(LENS))]
    assert hyps == want
    assert len({t for h in hyps for t in h}) > 10  # the tokens vary: a real check
    assert stats.tokens == sum(map(len, hyps)) and stats.prefill_seconds > 0


def test_unique_with_budget_above_context_equals_dense(model):
    emb, lens = _audio(model)
    dense, _ = continuous_greedy(model, emb, lens, LIMITS, 2, DENSE)
    for method in ("unique", "quest"):
        assert continuous_greedy(model, emb, lens, LIMITS, 2, SparseConfig(method, 1024))[0] \
            == dense
    fp8 = SparseConfig("unique", 1024, stats_dtype="fp8")
    assert continuous_greedy(model, emb, lens, LIMITS, 2, fp8)[0] == dense


@pytest.mark.parametrize("sparse", [DENSE, SPARSE], ids=["dense", "unique16"])
def test_continuous_equals_one_recording_at_a_time(model, sparse):
    """2 slots for 5 recordings of different lengths and caps (slots are refilled 3 times),
    and 1 or 5 slots, give each recording the tokens it gets decoded alone."""
    emb, lens = _audio(model)
    alone = _one_at_a_time(model, emb, lens, LIMITS, sparse)
    for slots in (2, 1, 5):
        assert continuous_greedy(model, emb, lens, LIMITS, slots, sparse)[0] == alone, slots


def test_small_budget_is_sparse(model):
    """Budget 16 changes some transcript: the sparse test above is not dense in disguise."""
    emb, lens = _audio(model)
    assert continuous_greedy(model, emb, lens, LIMITS, 2, SPARSE)[0] \
        != continuous_greedy(model, emb, lens, LIMITS, 2, DENSE)[0]


def _steps(model, cache, tokens):
    return torch.stack([model.decode_step(tokens[:, t], cache) for t in range(tokens.shape[1])], 1)


@pytest.mark.parametrize("sparse", [DENSE, SPARSE], ids=["dense", "unique16"])
def test_reused_slot_equals_fresh_cache(model, sparse):
    """Row 0 decodes recording A for 6 steps, then takes recording C while row 1 goes on with
    B: the logits of both rows equal those of fresh caches; a paged row's pages go back to the
    pool."""
    emb, lens = _audio(model, [40, 21, 14])
    g = torch.Generator().manual_seed(3)
    tok = torch.randint(0, 40, (2, 12), generator=g)
    with torch.inference_mode():
        cache = model.new_cache(2, 60, sparse=sparse)
        model.prefill(emb[:2], lens[:2], cache)
        _steps(model, cache, tok[:, :6])
        paged = hasattr(cache, "kv")
        if paged:
            free_before = cache.kv.free_pages
            pages_a = len(cache.kv._pages[cache.slots[0]])
        first = model.prefill(emb[2:3, :14], lens[2:3], SlotRows(cache, torch.tensor([0])))
        if paged:  # A's pages came back, C's were taken
            assert cache.kv.free_pages == free_before + pages_a - (-(-int(cache.lens[0]) // 8))
        assert cache.lens.tolist() == [14 + 1, 21 + 1 + 6]
        got = _steps(model, cache, tok[:, 6:])
        fresh_c = model.new_cache(1, 60, sparse=sparse)
        want_first = model.prefill(emb[2:3, :14], lens[2:3], fresh_c)
        want_c = _steps(model, fresh_c, tok[:1, 6:])
        fresh_b = model.new_cache(1, 60, sparse=sparse)
        model.prefill(emb[1:2, :21], lens[1:2], fresh_b)
        want_b = _steps(model, fresh_b, tok[1:, :])[:, 6:]
    torch.testing.assert_close(first, want_first, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got[:1], want_c, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got[1:], want_b, rtol=1e-4, atol=1e-4)


def test_joint_ctc_per_slot(model):
    """Joint CTC/attention greedy with 2 slots gives the batched greedy search's transcripts
    (each slot's CTC state is reset when it takes a new recording)."""
    emb, lens = _audio(model)
    g = torch.Generator().manual_seed(4)
    T = 20
    logp = torch.log_softmax(torch.randn(len(LENS), T, 41, generator=g) * 3, -1)
    ctc_lens = torch.tensor([18, 6, 14, 9, 20])
    for window in (0, 4):
        joint = JointCTC(logp, ctc_lens, model.ctc_blank, 0.5, 8, window)
        want, _ = greedy_search(model, emb, lens, LIMITS, DENSE, ctc=joint)
        got, stats = continuous_greedy(model, emb, lens, LIMITS, 2, DENSE, ctc=joint)
        assert got == want and stats.ctc_seconds > 0
    plain = continuous_greedy(model, emb, lens, LIMITS, 2)[0]
    assert got != plain  # the CTC term changes the search


def test_config_engine_keys():
    assert DecodeConfig().engine == "static"
    DecodeConfig(engine="continuous", slots=2)
    with pytest.raises(ValueError, match="decode.engine"):
        DecodeConfig(engine="paged")
    with pytest.raises(ValueError, match="greedy only"):
        DecodeConfig(engine="continuous", method="beam")
    with pytest.raises(ValueError, match="decode.slots"):
        DecodeConfig(engine="continuous", slots=0)


def test_decode_cuts_continuous_equals_static(tmp_path, tiny_model):
    """The runner's continuous engine (2 slots, a batch of 3 pieces) gives the static
    engine's transcripts."""
    from decoding_helpers import WordTokenizer, make_cut
    from lhotse import CutSet

    from unique_asr.decoding.runner import decode_cuts

    cuts = CutSet.from_cuts([make_cut(tmp_path, "long", 6.0)])
    base = {"max_tokens_per_second": 3.0, "min_new_tokens": 2, "max_segment_seconds": 2.5,
            "batch_size": 4, "ctc_weight": 0.0}
    static = decode_cuts(tiny_model, cuts, WordTokenizer(40), DecodeConfig(**base), "cpu")
    cont = decode_cuts(tiny_model, cuts, WordTokenizer(40),
                       DecodeConfig(**base, engine="continuous", slots=2), "cpu")
    assert static.rows[0]["pieces"] == 3
    assert cont.rows[0]["hyp"] == static.rows[0]["hyp"]
    assert cont.rows[0]["tokens"] == static.rows[0]["tokens"] > 0


# ---------------------------------------------------------------- page budget (kv_pool_pages)
# pages of 8 tokens per run ([audio][task][tokens]): LENS + LIMITS + 1 -> [6, 2, 4, 3, 6]; with
# no budget 5 slots reserve 5 x 6 = 30 pages


def _schedule_steps(hyps, limits, slots):
    """Decode steps of the unbudgeted engine: each recording's picks (its tokens, plus the end
    token unless its limit cut it) laid on `slots` rows in queue order, a row taking the next
    recording as soon as it ends."""
    import heapq

    free = [0] * slots
    for h, lim in zip(hyps, limits):
        heapq.heapreplace(free, free[0] + (len(h) if len(h) >= lim else len(h) + 1))
    return max(free)


@pytest.fixture
def reorders(monkeypatch):
    """The index of every PagedAttentionCache.reorder call."""
    from unique_asr.models.paged_attention_cache import PagedAttentionCache

    seen, orig = [], PagedAttentionCache.reorder

    def spy(self, index):
        seen.append(index.tolist())
        return orig(self, index)

    monkeypatch.setattr(PagedAttentionCache, "reorder", spy)
    return seen


@pytest.mark.parametrize("pool, grows", [(6, True), (10, False)])
def test_page_budget_waits_and_equals_one_at_a_time(model, pool, grows, reorders, caplog):
    """5 slots sharing 6 or 10 pages (of the 30 five full slots reserve): recordings wait for
    pages, the batch shrinks (and with 6 pages grows back with empty rows: recording 0's 6 pages
    let recordings 1 and 2 in at once), and every recording still gets the tokens it gets
    decoded alone (an allocation error would raise)."""
    emb, lens = _audio(model)
    alone = _one_at_a_time(model, emb, lens, LIMITS, SPARSE)
    caplog.set_level("INFO", logger="unique_asr.decoding.engine")
    got, stats = continuous_greedy(model, emb, lens, LIMITS, 5, SPARSE, pool_pages=pool)
    assert got == alone
    assert any(-1 in ix for ix in reorders) == grows
    assert min(map(len, reorders)) < 3        # and the batch had shrunk
    assert stats.steps > _schedule_steps(alone, LIMITS, 5)  # fewer rows at once than slots
    assert "recordings waited in the queue for free pages" in caplog.text


def test_page_budget_joint_ctc(model, reorders):
    """Rows that come back empty get fresh CTC states: joint CTC with a budget gives the
    batched greedy search's transcripts."""
    emb, lens = _audio(model)
    g = torch.Generator().manual_seed(4)
    logp = torch.log_softmax(torch.randn(len(LENS), 20, 41, generator=g) * 3, -1)
    joint = JointCTC(logp, torch.tensor([18, 6, 14, 9, 20]), model.ctc_blank, 0.5, 8, 4)
    want, _ = greedy_search(model, emb, lens, LIMITS, SPARSE, ctc=joint)
    got, _ = continuous_greedy(model, emb, lens, LIMITS, 5, SPARSE, ctc=joint, pool_pages=6)
    assert got == want and any(-1 in ix for ix in reorders)


def test_page_budget_unset_or_ample_is_unchanged(model, reorders, caplog):
    """No budget: the transcripts of each recording alone in the list schedule's steps; a budget
    that covers every slot changes nothing (same tokens, steps, no waiting)."""
    emb, lens = _audio(model)
    alone = _one_at_a_time(model, emb, lens, LIMITS, SPARSE)
    caplog.set_level("INFO", logger="unique_asr.decoding.engine")
    for slots in (2, 5):
        got, stats = continuous_greedy(model, emb, lens, LIMITS, slots, SPARSE)
        assert got == alone and stats.steps == _schedule_steps(alone, LIMITS, slots)
        ample, st = continuous_greedy(model, emb, lens, LIMITS, slots, SPARSE, pool_pages=30)
        assert ample == alone and st.steps == stats.steps
    assert not any(-1 in ix for ix in reorders) and "waited" not in caplog.text


def test_recording_larger_than_pool_raises(model):
    emb, lens = _audio(model, [9, 14, 40])  # runs of 2, 3 and 6 pages
    with pytest.raises(ValueError, match=r"kv_pool_pages=5: recording 2 needs 6 pages"):
        continuous_greedy(model, emb, lens, [5, 3, 7], 2, SPARSE, pool_pages=5)
    assert continuous_greedy(model, emb, lens, [5, 3, 7], 2, SPARSE, pool_pages=6)[0] \
        == _one_at_a_time(model, emb, lens, [5, 3, 7], SPARSE)
    with pytest.raises(ValueError, match="dense KV cache has no page pool"):
        continuous_greedy(model, emb, lens, [5, 3, 7], 2, DENSE, pool_pages=6)


def test_config_kv_pool_pages():
    assert DecodeConfig().kv_pool_pages is None
    DecodeConfig(engine="continuous", kv_pool_pages=64, sparse=SparseConfig("unique", 16))
    for bad, kw in (("must be >= 1", {"engine": "continuous", "kv_pool_pages": 0,
                                      "sparse": SparseConfig("unique", 16)}),
                    ("engine=continuous only", {"kv_pool_pages": 64,
                                                "sparse": SparseConfig("unique", 16)}),
                    ("dense KV cache", {"engine": "continuous", "kv_pool_pages": 64})):
        with pytest.raises(ValueError, match=f"decode.kv_pool_pages=.*{bad}"):
            DecodeConfig(**kw)


def test_decode_cuts_kv_pool_pages(tmp_path, tiny_model, caplog):
    """decode.kv_pool_pages reaches the engine: 3 pieces (5 pages each at most) in 3 slots
    sharing 6 pages wait for each other and give the static engine's transcripts."""
    from decoding_helpers import WordTokenizer, make_cut
    from lhotse import CutSet

    from unique_asr.decoding.runner import decode_cuts

    cuts = CutSet.from_cuts([make_cut(tmp_path, "long", 6.0)])
    base = {"max_tokens_per_second": 3.0, "min_new_tokens": 2, "max_segment_seconds": 2.5,
            "batch_size": 4, "ctc_weight": 0.0, "sparse": SparseConfig("unique", 16)}
    static = decode_cuts(tiny_model, cuts, WordTokenizer(40), DecodeConfig(**base), "cpu")
    caplog.set_level("INFO", logger="unique_asr.decoding.engine")
    pooled = decode_cuts(tiny_model, cuts, WordTokenizer(40),
                         DecodeConfig(**base, engine="continuous", slots=3, kv_pool_pages=6),
                         "cpu")
    assert pooled.rows[0]["hyp"] == static.rows[0]["hyp"]
    assert "2 of 3 recordings waited" in caplog.text
