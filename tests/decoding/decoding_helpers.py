"""Helpers of the decoding tests: a stand-in for the speech LLM with the decoding API (its
next-token logits are a deterministic function of (audio row, tokens so far), given by a Python
callable, so a test can say exactly what greedy and beam search must return), CTC brute force,
tiny audio, cuts and recipes. Fixtures are in conftest.py."""

import itertools
import math
from types import SimpleNamespace

import torch


def ctc_collapse(path, blank) -> list:
    """A CTC alignment's output: repeats merged, blanks dropped."""
    out, prev = [], None
    for p in path:
        if p != prev and p != blank:
            out.append(p)
        prev = p
    return out


def ctc_brute_force(logp, blank) -> dict:
    """{collapsed output: probability} over all C^T alignments of one sequence [T, C]."""
    T, C = logp.shape
    p = torch.as_tensor(logp).double().exp()
    probs = {}
    for path in itertools.product(range(C), repeat=T):
        out = tuple(ctc_collapse(path, blank))
        probs[out] = probs.get(out, 0.0) + math.prod(float(p[t, k]) for t, k in enumerate(path))
    return probs


class FakeCache:
    def __init__(self, batch, max_len):
        self.lens = torch.zeros(batch, dtype=torch.long)
        self.max_len = max_len
        self.rows = [None] * batch  # (audio row, history) per sequence
        self.reorders = 0

    def reorder(self, index):
        self.rows = [(self.rows[i][0], list(self.rows[i][1])) for i in index.tolist()]
        self.lens = self.lens.index_select(0, index)
        self.reorders += 1


class FakeModel:
    """logits_fn(audio [Ta, D], history list[int]) -> FloatTensor[V]."""

    def __init__(self, logits_fn, n_text=10):
        self.cfg = SimpleNamespace(n_text=n_text, task_id=n_text, eos_id=n_text + 1,
                                   vocab_size=n_text + 2, max_positions=4096)
        self.eos_id, self.suppress_ids = n_text + 1, (n_text,)
        self.logits_fn = logits_fn
        self.caches = []
        self.steps = 0

    def new_cache(self, batch, max_len, device, dtype=None, sparse=None):
        assert sparse is None or sparse.method == "dense"
        c = FakeCache(batch, max_len)
        self.caches.append(c)
        return c

    def _logits(self, cache):
        return torch.stack([self.logits_fn(a, h) for a, h in cache.rows])

    def prefill(self, audio_emb, audio_lens, cache):
        for b in range(audio_emb.shape[0]):
            cache.rows[b] = (audio_emb[b, : audio_lens[b]], [])
        cache.lens = audio_lens + 1
        assert int(cache.lens.max()) <= cache.max_len
        return self._logits(cache)

    def decode_step(self, tokens, cache):
        self.steps += 1
        for b, t in enumerate(tokens.tolist()):
            cache.rows[b][1].append(t)
        cache.lens = cache.lens + 1
        assert int(cache.lens.max()) <= cache.max_len, "cache overflow"
        return self._logits(cache)


def copy_logits(n_text=10):
    """The 'transcript' is the audio's first feature of each token, truncated to Ta // 2 tokens."""
    eos = n_text + 1

    def fn(audio, hist):
        logits = torch.zeros(n_text + 2)
        target = audio[: audio.shape[0] // 2, 0].long().tolist()
        nxt = target[len(hist)] if len(hist) < len(target) else eos
        logits[nxt] = 5.0
        logits[n_text] = 10.0  # the task token is always the most likely: must be suppressed
        return logits

    return fn


class WordTokenizer:
    """ids -> 'w<id>' words; enough for the runner, which only decodes ids to text."""

    def __init__(self, n):
        self.n = n

    def decode(self, ids):
        return " ".join(f"w{i}" for i in ids)

    def get_piece_size(self):
        return self.n


def write_audio(path, seconds, sr=16000, seed=0, channels=1):
    """Tone bursts (0.8 s) separated by 0.4 s silences: pauses a splitter can find. Stereo: the
    second channel is the first, quieter, plus its own noise. The suffix picks the format."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * t) + 0.05 * rng.standard_normal(n)
    x[(t % 1.2) >= 0.8] *= 0.01
    if channels == 2:
        x = np.stack([x, 0.5 * x + 0.02 * rng.standard_normal(n)], axis=1)
    sf.write(path, x.astype("float32"), sr)
    return path


def make_cut(tmp_path, rec_id, seconds, sr=16000, texts=("hello world", "good bye")):
    """A whole-recording lhotse cut with supervisions and no stored features."""
    from lhotse import Recording, SupervisionSegment
    from lhotse.cut import MonoCut

    rec = Recording.from_file(write_audio(tmp_path / f"{rec_id}.wav", seconds, sr), rec_id)
    step = seconds / len(texts)
    sups = [SupervisionSegment(f"{rec_id}-{i}", rec_id, i * step, step * 0.9, text=t)
            for i, t in enumerate(texts)]
    return MonoCut(rec_id, 0.0, rec.duration, 0, recording=rec, supervisions=sups)


def make_tiny_model(root, texts):
    """What stages 3-4 leave: data/lang_bpe_30 (a BPE model trained on `texts`, lm_text.txt) and
    a random-init tiny checkpoint at exp/tiny/last.pt."""
    import sentencepiece as spm

    from unique_asr.models import ModelConfig, build_model

    lang = root / "data" / "lang_bpe_30"
    lang.mkdir(parents=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts) * 10), model_prefix=str(lang / "bpe"),
        vocab_size=30, model_type="bpe", hard_vocab_limit=False, minloglevel=2,
    )
    (lang / "lm_text.txt").write_text("\n".join(texts) + "\n")   # stage 3's LM text
    sp = spm.SentencePieceProcessor(model_file=str(lang / "bpe.model"))
    torch.manual_seed(0)
    cfg = ModelConfig(n_text=sp.get_piece_size())
    (root / "exp" / "tiny").mkdir(parents=True)
    torch.save({"model": build_model(cfg).state_dict(), "model_cfg": cfg.to_dict(),
                "bpe_model": str(lang / "bpe.model")}, root / "exp" / "tiny" / "last.pt")
    return root


def make_tiny_recipe(root, texts, recordings):
    """A recipe dir as stages 2-4 leave it: make_tiny_model's BPE and checkpoint and test cuts
    `recordings` = [(rec_id, seconds, texts)]."""
    from lhotse import CutSet

    make_tiny_model(root, texts)
    (root / "audio").mkdir()
    cuts = CutSet.from_cuts([make_cut(root / "audio", rid, sec, texts=tx)
                             for rid, sec, tx in recordings])
    (root / "data" / "fbank").mkdir()
    cuts.to_file(root / "data" / "fbank" / "cuts_test.jsonl.gz")
    return root
