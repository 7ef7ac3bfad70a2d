"""Training data: load features of whole recordings once, check them, cut windows, batch them.

Features of all training recordings are held in memory (2 h of 80-dim fbank is ~250 MB), so a
window is a slice, not a file read. Features are read (or computed from the audio) by
data.features.load_features, whose BadInputError policy decoding shares: unusable input raises
naming the cut and the file, or is skipped and counted with data.skip_bad=true. Everything is
checked while the data is loaded up front, so a bad file never stops an epoch half-way; the
counts are logged and written next to the checkpoints.
"""

from __future__ import annotations

import logging
from collections import Counter

import torch
from tqdm import tqdm

from unique_asr.data.features import BadInputError, BadInputStats, load_features
from unique_asr.models.config import FEATURE_FRAME_SECONDS, ModelConfig
from unique_asr.models.projector import audio_token_count, input_frame_seconds
from unique_asr.training.windows import Segment, Window

log = logging.getLogger(__name__)

FRAME_SHIFT = FEATURE_FRAME_SECONDS  # fbank / log-mel; cached encoder outputs: input_frame_seconds
SAMPLE_RATE = 16000
MIN_AUDIO_TOKENS = 8  # one page of audio tokens (UNIQUE page size); shorter audio is skipped


def _read(cut, model_cfg: ModelConfig, num_mel_bins: int, skip_bad: bool,
          stats: BadInputStats) -> torch.Tensor | None:
    """The cut's features, or None (counted) when they are unusable and skip_bad is set."""
    notes: Counter = Counter()
    try:
        f = load_features(cut, num_mel_bins, SAMPLE_RATE, notes)
    except BadInputError as e:
        if not skip_bad:
            raise
        stats.add(e.kind, str(e))
        return None
    for kind in notes:
        stats.add(kind, cut.id)
    if audio_token_count(model_cfg, f.shape[0]) < MIN_AUDIO_TOKENS:
        stats.add("too_short", f"{cut.id} ({cut.duration:.2f} s)")
        return None
    return f


def _segments(cut, dur: float, stats: BadInputStats):
    """The cut's transcribed sentences, and the indices no window may span (untranscribed
    speech lies there)."""
    segs, breaks = [], set()
    for s in sorted(cut.supervisions, key=lambda s: s.start):
        text = (s.text or "").strip()
        if not text:
            stats.add("empty_transcript", f"{cut.id}/{s.id}")
            breaks.add(len(segs))
            continue
        start, end = max(0.0, s.start), min(dur, s.end)
        if end - start <= 0:
            stats.add("supervision_outside_audio", f"{cut.id}/{s.id}")
            continue
        segs.append(Segment(start, end, text))
    return segs, frozenset(breaks)


def load_recordings(cuts, model_cfg: ModelConfig, skip_bad: bool = False,
                    num_mel_bins: int | None = None, stats: BadInputStats | None = None,
                    desc: str = "load"):
    """Load and check every cut (one cut = one recording) for training `model_cfg`.

    num_mel_bins: the feature width (default model_cfg.input_dim).
    Returns (feats: rec_id -> FloatTensor[T, n_mels], recordings: rec_id -> (segments, duration,
    breaks), stats). Unusable input raises BadInputError naming cut and file unless skip_bad;
    recordings shorter than one page of the model's audio tokens and empty transcripts are
    skipped and counted.
    """
    stats = stats or BadInputStats()
    n_mels = num_mel_bins or model_cfg.input_dim
    shift = input_frame_seconds(model_cfg)
    feats, recs = {}, {}
    for cut in tqdm(list(cuts), desc=desc, leave=False):
        f = _read(cut, model_cfg, n_mels, skip_bad, stats)
        if f is None:
            continue
        dur = f.shape[0] * shift
        segs, breaks = _segments(cut, dur, stats)
        if not segs:
            stats.add("no_transcribed_speech", cut.id)
            continue
        feats[cut.id] = f
        recs[cut.id] = (segs, dur, breaks)
    if stats.counts:
        log.warning("%s: bad input handled: %s", desc, stats.summary())
    return feats, recs, stats


def windows_to_cuts(windows: list[Window]):
    """Light lhotse cuts (no audio) so DynamicBucketingSampler can bucket windows by duration."""
    from lhotse import CutSet, MonoCut

    cuts = [
        MonoCut(id=f"{w.rec_id}_{int(w.start * 100):07d}_{int(w.end * 100):07d}", start=w.start,
                duration=round(w.duration, 2), channel=0,
                custom={"rec": w.rec_id, "text": w.text, "spans": [list(x) for x in w.spans]})
        for w in windows
    ]
    return CutSet.from_cuts(cuts)


class WindowBatcher:
    """Turns a CutSet batch of windows into padded tensors (feats, feat_lens, tokens, token_lens),
    with per-sentence CTC targets when `with_segments` (model.ctc_segments). frame_shift: seconds
    per feature frame (the model's input_frame_seconds)."""

    def __init__(self, feats: dict, sp, with_segments: bool = False,
                 frame_shift: float = FRAME_SHIFT):
        self.feats = feats
        self.sp = sp
        self.with_segments = with_segments
        self.frame_shift = frame_shift

    def __call__(self, cuts) -> dict:
        xs, toks, segs = [], [], []
        for i, c in enumerate(cuts):
            f = self.feats[c.custom["rec"]]
            a = round(c.start / self.frame_shift)
            xs.append(f[a: a + round(c.duration / self.frame_shift)])
            toks.append(torch.tensor(self.sp.encode(c.custom["text"]), dtype=torch.long))
            if self.with_segments:
                # a sentence after the window's first keeps the space before it: a byte-level
                # BPE (a pretrained LLM's tokenizer) gives its first word another token without
                # it, and the CTC would teach the decoder words glued to the sentence before
                segs += [(i, t0, t1, self.sp.encode(text if k == 0 else " " + text))
                         for k, (t0, t1, text)
                         in enumerate(sentence_spans(c.custom["text"], c.custom.get("spans")))]
        out = collate(xs, toks, [c.id for c in cuts])
        if self.with_segments:
            out["ctc_segments"] = collate_segments(segs)
        return out


def sentence_spans(text: str, spans) -> list[tuple[float, float, str]]:
    """(start s, end s, sentence text) of each sentence of a window: `text` is its sentences
    joined by one space, `spans` their (start, end, characters) (training/windows.py)."""
    out, off = [], 0
    for a, b, n in spans or ():
        out.append((float(a), float(b), text[off: off + int(n)]))
        off += int(n) + 1
    return out


def collate_segments(segs: list[tuple[int, float, float, list[int]]]) -> dict:
    """Per-sentence CTC targets of a batch: window row, start and end (seconds from the window
    start), padded token ids and their counts."""
    n = len(segs)
    lens = torch.tensor([len(s[3]) for s in segs], dtype=torch.long)
    tokens = torch.zeros(n, max(1, int(lens.max()) if n else 1), dtype=torch.long)
    for k, s in enumerate(segs):
        tokens[k, : len(s[3])] = torch.tensor(s[3], dtype=torch.long)
    return {"row": torch.tensor([s[0] for s in segs], dtype=torch.long),
            "start": torch.tensor([s[1] for s in segs]), "end": torch.tensor([s[2] for s in segs]),
            "tokens": tokens, "token_lens": lens}


def collate(xs: list[torch.Tensor], toks: list[torch.Tensor], ids: list[str]) -> dict:
    B = len(xs)
    feat_lens = torch.tensor([len(x) for x in xs])
    token_lens = torch.tensor([len(t) for t in toks])
    feats = torch.zeros(B, int(feat_lens.max()), xs[0].shape[1])
    tokens = torch.zeros(B, max(1, int(token_lens.max())), dtype=torch.long)
    for i, (x, t) in enumerate(zip(xs, toks)):
        feats[i, : len(x)] = x
        tokens[i, : len(t)] = t
    return {"feats": feats, "feat_lens": feat_lens, "tokens": tokens, "token_lens": token_lens,
            "ids": ids}


def make_sampler(window_cuts, max_duration: float, num_buckets: int, seed: int, epoch: int,
                 world_size: int = 1, rank: int = 0, shuffle: bool = True):
    import warnings

    from lhotse.dataset import DynamicBucketingSampler

    # windows live in memory (eager CutSet) and whole recordings may exceed max_duration (they
    # then form a batch of one): both are intended, so lhotse's warnings about them are noise
    warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
    warnings.filterwarnings("ignore", message=".*exceeded the max_duration.*")
    # lhotse refuses more buckets than cuts (a tiny corpus, or an epoch of whole recordings)
    num_buckets = max(1, min(num_buckets, len(window_cuts)))
    s = DynamicBucketingSampler(
        window_cuts, max_duration=max_duration, num_buckets=num_buckets, shuffle=shuffle,
        seed=seed, drop_last=False, world_size=world_size, rank=rank,
        num_cuts_for_bins_estimate=min(len(window_cuts), 5000), buffer_size=20000,
        quadratic_duration=None,
    )
    s.set_epoch(epoch)
    return s


def cmvn_stats(feats: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Global mean and std of all frames (float64 accumulation)."""
    tot, sq, n = 0.0, 0.0, 0
    for f in feats.values():
        f64 = f.double()
        tot = tot + f64.sum(0)
        sq = sq + (f64 * f64).sum(0)
        n += f.shape[0]
    mean = tot / n
    std = (sq / n - mean * mean).clamp_min(1e-10).sqrt()
    return mean.float(), std.float()
