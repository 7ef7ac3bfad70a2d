"""Training data: load features of whole recordings once, check them, cut windows, batch them.

Features of all training recordings are held in memory (2 h of 80-dim fbank is ~250 MB), so a
window is a slice, not a file read. Audio without precomputed features is read and turned into
fbank here (resampled to 16 kHz when needed). Bad input is handled by bad_input.BadInputStats.
"""

from __future__ import annotations

import logging

import torch
from tqdm import tqdm

from unique_asr.training.bad_input import BadInputError, BadInputStats
from unique_asr.training.windows import Segment, Window

log = logging.getLogger(__name__)

FRAME_SHIFT = 0.01
AUDIO_TOKEN_S = 0.08  # one audio token of the decoder (4x subsampling, then 2 frames stacked)
SAMPLE_RATE = 16000
MIN_AUDIO_TOKENS = 8  # one page of audio tokens (UNIQUE page size); shorter audio is skipped


def audio_tokens(num_frames: int) -> int:
    """Audio tokens (80 ms) the model makes from num_frames fbank frames."""
    return max(0, ((num_frames - 1) // 2 - 1) // 2) // 2


def _source_paths(cut) -> str:
    paths = []
    if cut.has_features:
        paths.append(f"{cut.features.storage_path}/{cut.features.storage_key}")
    if cut.has_recording:
        paths += [str(s.source) for s in cut.recording.sources]
    return ", ".join(paths) or "<no source>"


def _load_feats(cut, num_mel_bins: int, stats: BadInputStats) -> torch.Tensor:
    if cut.has_features:
        return torch.from_numpy(cut.load_features()).float()
    from lhotse import Fbank, FbankConfig

    if cut.sampling_rate != SAMPLE_RATE:
        stats.add("resampled", f"{cut.id} ({cut.sampling_rate} Hz)")
        cut = cut.resample(SAMPLE_RATE)
    audio = cut.load_audio()
    fb = Fbank(FbankConfig(num_mel_bins=num_mel_bins))
    return torch.from_numpy(fb.extract(audio, SAMPLE_RATE)).float()


def load_recordings(cuts, skip_bad: bool = False, num_mel_bins: int = 80,
                    stats: BadInputStats | None = None, desc: str = "load"):
    """Load and check every cut (one cut = one recording).

    Returns (feats: rec_id -> FloatTensor[T, n_mels], recordings: rec_id -> (segments, duration,
    breaks), stats). Unreadable input raises BadInputError naming cut and path unless skip_bad;
    empty transcripts, too-short recordings and non-finite features are skipped and counted.
    """
    stats = stats or BadInputStats()
    feats, recs = {}, {}
    for cut in tqdm(list(cuts), desc=desc, leave=False):
        try:
            f = _load_feats(cut, num_mel_bins, stats)
        except Exception as e:
            msg = f"cut {cut.id}: cannot read {_source_paths(cut)}: {type(e).__name__}: {e}"
            if not skip_bad:
                raise BadInputError(msg + "  (set data.skip_bad=true to skip such cuts)") from e
            stats.add("unreadable", msg)
            continue
        if f.dim() != 2 or f.shape[1] != num_mel_bins:
            raise BadInputError(f"cut {cut.id}: features of shape {tuple(f.shape)}, expected "
                                f"[T, {num_mel_bins}] ({_source_paths(cut)})")
        if not torch.isfinite(f).all():
            stats.add("nan_features", cut.id)
            continue
        if audio_tokens(f.shape[0]) < MIN_AUDIO_TOKENS:
            stats.add("too_short", f"{cut.id} ({cut.duration:.2f} s)")
            continue
        dur = f.shape[0] * FRAME_SHIFT
        segs, breaks = [], set()
        for s in sorted(cut.supervisions, key=lambda s: s.start):
            text = (s.text or "").strip()
            if not text:
                stats.add("empty_transcript", f"{cut.id}/{s.id}")
                breaks.add(len(segs))  # no window may contain this untranscribed speech
                continue
            start, end = max(0.0, s.start), min(dur, s.end)
            if end - start <= 0:
                stats.add("supervision_outside_audio", f"{cut.id}/{s.id}")
                continue
            segs.append(Segment(start, end, text))
        if not segs:
            stats.add("no_transcribed_speech", cut.id)
            continue
        feats[cut.id] = f
        recs[cut.id] = (segs, dur, frozenset(breaks))
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
    """Turns a CutSet batch of windows into padded tensors (feats, feat_lens, tokens, token_lens)."""

    def __init__(self, feats: dict, sp, with_align: bool = False, with_segments: bool = False):
        self.feats = feats
        self.sp = sp
        self.with_align = with_align  # coarse token times for the alignment guide (align_weight)
        self.with_segments = with_segments  # per-sentence CTC targets (model.ctc_segments)

    def __call__(self, cuts) -> dict:
        xs, toks, aligns, segs = [], [], [], []
        for i, c in enumerate(cuts):
            f = self.feats[c.custom["rec"]]
            a = round(c.start / FRAME_SHIFT)
            xs.append(f[a: a + round(c.duration / FRAME_SHIFT)])
            ids = self.sp.encode(c.custom["text"])
            toks.append(torch.tensor(ids, dtype=torch.long))
            if self.with_align:
                aligns.append(token_audio_index(piece_lengths(self.sp, ids),
                                                c.custom.get("spans")))
            if self.with_segments:
                segs += [(i, t0, t1, self.sp.encode(text)) for t0, t1, text
                         in sentence_spans(c.custom["text"], c.custom.get("spans"))]
        out = collate(xs, toks, [c.id for c in cuts], aligns if self.with_align else None)
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


def piece_lengths(sp, ids: list[int]) -> list[int]:
    """Characters each sentencepiece token stands for (the word-boundary mark counts as a space);
    one each for a tokenizer without pieces."""
    piece = getattr(sp, "id_to_piece", None)
    return [max(1, len(piece(i))) for i in ids] if piece else [1] * len(ids)


def token_audio_index(piece_lens: list[int], spans) -> torch.Tensor:
    """Coarse audio-token position (80 ms units, float) of every text token of a window.

    The window's sentences have known times (spans: (start, end, characters) each); inside a
    sentence characters are spread evenly over its duration. Good to a few hundred ms: enough
    to tell the decoder's guided head where to look (model.align_weight). -1 when unknown."""
    n = len(piece_lens)
    if not spans or n == 0:
        return torch.full((n,), -1.0)
    lens = torch.tensor(piece_lens, dtype=torch.float64)
    sent = torch.tensor([float(x[2]) for x in spans], dtype=torch.float64).clamp_min(1)
    start = torch.tensor([float(x[0]) for x in spans], dtype=torch.float64)
    end = torch.tensor([float(x[1]) for x in spans], dtype=torch.float64)
    off = torch.cumsum(sent + 1, 0) - (sent + 1)  # first character of each sentence
    text_len = float(off[-1] + sent[-1])
    mid = (torch.cumsum(lens, 0) - lens / 2) * (text_len / float(lens.sum()))  # token centres
    k = (torch.searchsorted(off, mid, right=True) - 1).clamp(0, len(spans) - 1)
    frac = ((mid - off[k]) / sent[k]).clamp(0, 1)
    t = start[k] + frac * (end[k] - start[k])
    return (t / AUDIO_TOKEN_S).float()


def collate(xs: list[torch.Tensor], toks: list[torch.Tensor], ids: list[str],
            aligns: list[torch.Tensor] | None = None) -> dict:
    B = len(xs)
    feat_lens = torch.tensor([len(x) for x in xs])
    token_lens = torch.tensor([len(t) for t in toks])
    feats = torch.zeros(B, int(feat_lens.max()), xs[0].shape[1])
    tokens = torch.zeros(B, max(1, int(token_lens.max())), dtype=torch.long)
    for i, (x, t) in enumerate(zip(xs, toks)):
        feats[i, : len(x)] = x
        tokens[i, : len(t)] = t
    out = {"feats": feats, "feat_lens": feat_lens, "tokens": tokens, "token_lens": token_lens,
           "ids": ids}
    if aligns is not None:  # audio-token position of every text token (-1: padding/unknown)
        align = torch.full(tokens.shape, -1.0)
        for i, a in enumerate(aligns):
            align[i, : len(a)] = a
        out["align"] = align
    return out


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


def cmvn_stats(feats: dict, transform=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Global mean and std of all frames (float64 accumulation), after `transform` (a function of
    a [T, F] tensor, e.g. the model's cepstral smoothing) if given."""
    tot, sq, n = 0.0, 0.0, 0
    for f in feats.values():
        f64 = (f if transform is None else transform(f)).double()
        tot = tot + f64.sum(0)
        sq = sq + (f64 * f64).sum(0)
        n += f.shape[0]
    mean = tot / n
    std = (sq / n - mean * mean).clamp_min(1e-10).sqrt()
    return mean.float(), std.float()
