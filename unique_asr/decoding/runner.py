"""Decode a test set: cuts -> features -> pieces -> batches -> encoder + generate -> transcripts.

Every recording is decoded whole when it fits the model's context (longform.py says how longer
ones are split and joined). Pieces of all recordings are sorted by length and batched across
recordings (at most `batch_size` pieces and `max_batch_seconds` of audio per batch), so padding
stays small. Timings cover everything after the model is loaded: feature reading, encoder,
prefill and decode steps (see scoring.speed for RTF/RTFx/tokens per second). Each recording's
`seconds` is its feature reading plus its share (by frames) of the batches its pieces were in.

Stage 5 decodes a test set as one group; bin.transcribe decodes a user's recordings in groups
of `group_seconds` of audio and writes each group's results before the next is read, so memory
holds one group and a later bad file loses nothing already written. Batching does not change a
recording's transcript (padding is masked), so both give the same tokens.

decode.engine=continuous decodes each batch's pieces as a queue through decode.slots cache rows
(engine.py); with batch_size > slots a finished piece's row is refilled at once.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from unique_asr.data.features import BadInputError, load_features
from unique_asr.data.references import join_supervisions, speaker_turns
from unique_asr.decoding.config import CTC_ONLY, DecodeConfig
from unique_asr.decoding.ctc_beam import ctc_prefix_beam_search
from unique_asr.decoding.engine import continuous_greedy
from unique_asr.decoding.generate import GenStats, JointCTC, beam_search, greedy_search, sync
from unique_asr.decoding.longform import (
    max_new_tokens,
    max_piece_frames,
    min_frames,
    pad_short,
    split_points,
    supervision_gaps,
)
from unique_asr.models.ctc import ctc_greedy
from unique_asr.scoring.speed import Speed

log = logging.getLogger(__name__)


@dataclass
class AudioInput:
    """How test recordings are read (the data config: data.sample_rate,
    data.fbank.num_mel_bins, data.skip_bad; the model's stage-2 extractor)."""

    sample_rate: int = 16000
    num_mel_bins: int = 80  # the feature width (fbank bins, or the model's input_dim)
    skip_bad: bool = False  # skip recordings that cannot be read instead of failing
    # builds the model's stage-2 extractor for cuts without stored features (None: fbank); called
    # once, when the first such cut comes (a cached Whisper encoder is not loaded otherwise)
    make_extractor: Callable[[], Any] | None = None
    _extractor: Any = field(default=None, init=False, repr=False)

    def extractor(self):
        if self._extractor is None and self.make_extractor is not None:
            self._extractor = self.make_extractor()
        return self._extractor


@dataclass
class Piece:
    rec: int  # index of the recording
    index: int  # position of the piece in its recording
    feats: torch.Tensor


@dataclass
class DecodeResult:
    rows: list[dict]  # id, ref, hyp, duration, pieces, tokens (scoring.hyps format)
    speed: Speed
    skipped: list[dict] = field(default_factory=list)  # id, error
    notes: Counter = field(default_factory=Counter)


def _batches(pieces: list[Piece], batch_size: int, max_frames: int) -> list[list[Piece]]:
    order = sorted(pieces, key=lambda p: -p.feats.shape[0])
    out, cur = [], []
    for p in order:
        longest = cur[0].feats.shape[0] if cur else p.feats.shape[0]
        if cur and (len(cur) >= batch_size or longest * (len(cur) + 1) > max_frames):
            out.append(cur)
            cur = []
        cur.append(p)
    if cur:
        out.append(cur)
    return out


@dataclass
class TestRecording:
    """One recording to decode: its whole features and what scoring needs."""

    id: str
    feats: torch.Tensor  # [T, num_mel_bins]
    ref: str
    duration: float  # seconds
    gaps: list[tuple[float, float]] = field(default_factory=list)  # supervision gaps (s)
    load_seconds: float = 0.0  # reading (or computing) its features
    turns: list[tuple[str, str]] = field(default_factory=list)  # (speaker, text) in time order


def load_recordings(cuts, audio: AudioInput, notes: Counter, skipped: list[dict]):
    """Features and references of every cut, sorted by id; bad ones raise or are skipped."""
    out = []
    for cut in tqdm(sorted(cuts, key=lambda c: c.id), desc="features", leave=False):
        t0 = time.perf_counter()
        try:
            feats = load_features(cut, audio.num_mel_bins, audio.sample_rate, notes,
                                  None if cut.has_features else audio.extractor())
        except BadInputError as e:
            if not audio.skip_bad:
                raise
            log.warning("skipping: %s", e)
            skipped.append({"id": cut.id, "error": str(e)})
            continue
        out.append(TestRecording(cut.id, feats, join_supervisions(cut.supervisions),
                                 float(cut.duration), supervision_gaps(cut),
                                 time.perf_counter() - t0, speaker_turns(cut.supervisions)))
    if skipped:
        log.warning("skipped %d bad recordings (data.skip_bad=true)", len(skipped))
    return out


def _groups(cuts: list, group_seconds: float | None) -> list[list]:
    """Consecutive runs of cuts of at most `group_seconds` of audio (at least one cut each)."""
    if not group_seconds:
        return [cuts] if cuts else []
    out, cur, total = [], [], 0.0
    for c in cuts:
        if cur and total + c.duration > group_seconds:
            out.append(cur)
            cur, total = [], 0.0
        cur.append(c)
        total += c.duration
    return out + [cur] if cur else out


def decode_cuts(model, cuts, tokenizer, opts: DecodeConfig, device, lm=None, lexicon=None,
                audio: AudioInput | None = None, group_seconds: float | None = None,
                on_group: Callable[[DecodeResult], None] | None = None) -> DecodeResult:
    """Decode every cut (recording) of `cuts`; tokenizer: sentencepiece processor (ids -> text).
    group_seconds: decode the cuts (sorted by id) in groups of about this much audio, calling
    on_group with each group's result as soon as it is decoded (None: one group)."""
    audio = audio or AudioInput()
    total = DecodeResult([], Speed(), [], Counter())
    cuts = sorted(cuts, key=lambda c: c.id)
    bar = tqdm(total=len(cuts), desc="recordings", unit="rec")
    for group in _groups(cuts, group_seconds):
        notes: Counter = Counter()
        skipped: list[dict] = []
        t0 = time.perf_counter()
        recordings = load_recordings(group, audio, notes, skipped)
        t_load = time.perf_counter() - t0
        res = decode_recordings(model, recordings, tokenizer, opts, device, notes, lm, lexicon)
        res.skipped = skipped
        res.speed.wall_seconds += t_load  # feature reading counts toward RTF
        if on_group is not None:
            on_group(res)
        total.rows += res.rows
        total.skipped += res.skipped
        total.notes.update(res.notes)
        total.speed = total.speed.add(res.speed)
        bar.update(len(group))
    bar.close()
    return total


def _search(model, opts: DecodeConfig, audio, audio_lens, limits, ctc, lm, lexicon):
    """One batch's search by decode.method: (hyps, GenStats, the JointCTC or None).
    ctc: the pieces' (CTC log-probs, lengths), or None when no method needs them."""
    joint = None
    if opts.joint_ctc_weight > 0:
        # the window is given in 40 ms frames; an upsampling CTC head has more per second
        window = int(opts.ctc_window) * model.ctc.upsample
        joint = JointCTC(*ctc, model.ctc_blank, opts.joint_ctc_weight,
                         int(opts.ctc_candidates), window, int(opts.ctc_lookahead))
    if opts.method == "ctc_greedy":  # diagnoses the encoder apart from the decoder
        hyps = ctc_greedy(*ctc, model.ctc_blank)
        return hyps, GenStats(tokens=sum(len(h) for h in hyps)), joint
    if opts.method == "ctc_beam":
        t1 = time.perf_counter()
        logp = ctc[0].float().cpu().numpy()
        hyps = [ctc_prefix_beam_search(logp[b, :n], model.ctc_blank, opts.beam, lm,
                                       opts.lm_weight, opts.token_bonus, lexicon=lexicon,
                                       oov_penalty=opts.oov_penalty)
                for b, n in enumerate(ctc[1].tolist())]
        st = GenStats(step_seconds=time.perf_counter() - t1, tokens=sum(len(h) for h in hyps))
        return hyps, st, joint
    if opts.method == "greedy" and opts.engine == "continuous":
        slots = opts.slots or opts.batch_size
        return (*continuous_greedy(model, audio, audio_lens, limits, slots, opts.sparse,
                                   ctc=joint, pool_pages=opts.kv_pool_pages,
                                   cuda_graphs=opts.cuda_graphs), joint)
    if opts.method == "greedy":
        return (*greedy_search(model, audio, audio_lens, limits, opts.sparse, ctc=joint,
                               cuda_graphs=opts.cuda_graphs), joint)
    return (*beam_search(model, audio, audio_lens, limits, opts.beam, opts.length_penalty,
                         opts.sparse, ctc=joint), joint)


def decode_recordings(model, recordings: list[TestRecording], tokenizer, opts: DecodeConfig,
                      device, notes: Counter | None = None, lm=None,
                      lexicon=None) -> DecodeResult:
    """Split (if needed), batch across recordings, generate, join pieces per recording.
    lm, lexicon: the token n-gram and word list of method ctc_beam (decoding/ngram_lm.py), used
    when lm_weight > 0 and oov_penalty < 0."""
    notes = Counter() if notes is None else notes
    fs = model.input_frame_seconds  # seconds per feature frame
    tps = opts.tokens_per_second(model.tokenizer is not None)
    if opts.method in CTC_ONLY:
        # no decoder context to fit (the chunked encoder takes any length): a recording stays
        # whole unless decode.max_segment_seconds asks for pieces
        max_frames = (int(opts.max_segment_seconds / fs) if opts.max_segment_seconds
                      else sys.maxsize)
    else:
        max_frames = max_piece_frames(
            model.cfg.llm.max_positions, tps, opts.min_new_tokens,
            opts.max_segment_seconds, frames_per_token=model.frames_per_token, frame_seconds=fs,
            prompt_tokens=model.prompt_ids.numel(),
        )
    shortest = min_frames(opts.sparse.page_size, model.frames_per_token)
    recs, pieces = [], []
    t_split = time.perf_counter()
    for rec in recordings:
        feats = pad_short(rec.feats, shortest, notes)
        spans = split_points(feats, max_frames, opts.split_at, rec.gaps, fs)
        if len(spans) > 1:
            notes["split_recordings"] += 1
        for i, (s, e) in enumerate(spans):
            pieces.append(Piece(len(recs), i, feats[s:e]))
        recs.append({"id": rec.id, "ref": rec.ref, "ref_turns": rec.turns,
                     "duration": rec.duration,
                     "pieces": len(spans), "hyp_pieces": [None] * len(spans), "tokens": 0,
                     "seconds": rec.load_seconds})
    speed = Speed(wall_seconds=time.perf_counter() - t_split)

    batches = _batches(pieces, opts.batch_size, int(opts.max_batch_seconds / fs))
    for batch in tqdm(batches, desc=f"decode {opts.method}/{opts.sparse.method}", leave=False):
        t0 = time.perf_counter()
        lens = torch.tensor([p.feats.shape[0] for p in batch])
        feats = torch.nn.utils.rnn.pad_sequence([p.feats for p in batch], batch_first=True)
        feats, lens = feats.to(device), lens.to(device)
        dtype = next(model.parameters()).dtype
        # each piece (split at pauses) is encoded on its own, so it gets its own CTC log-probs
        need_ctc = opts.method in CTC_ONLY or opts.joint_ctc_weight > 0
        with torch.inference_mode():
            if need_ctc:
                audio, audio_lens, ctc_logp, ctc_lens = model.encode_with_ctc(feats.to(dtype), lens)
            else:
                audio, audio_lens = model.encode(feats.to(dtype), lens)
        sync(device)
        t_enc = time.perf_counter() - t0
        limits = [max_new_tokens(int(n), tps, opts.min_new_tokens,
                                 frames_per_token=model.frames_per_token, frame_seconds=fs)
                  for n in audio_lens.tolist()]
        hyps, st, joint = _search(model, opts, audio, audio_lens, limits,
                                  (ctc_logp, ctc_lens) if need_ctc else None, lm, lexicon)
        if joint is not None:
            notes["ctc_seconds"] += round(st.ctc_seconds, 3)
            notes["ctc_full_window_calls"] += st.ctc_full_steps
        for p, ids, lim in zip(batch, hyps, limits):
            recs[p.rec]["hyp_pieces"][p.index] = tokenizer.decode(ids)
            recs[p.rec]["tokens"] += len(ids)
            if len(ids) >= lim and opts.method not in CTC_ONLY:  # CTC outputs have no limit
                notes["pieces_hit_token_limit"] += 1
        wall = time.perf_counter() - t0
        frames = sum(p.feats.shape[0] for p in batch)
        for p in batch:  # each piece's share of the batch's time, by its frames
            recs[p.rec]["seconds"] += wall * p.feats.shape[0] / frames
        speed = speed.add(Speed(
            wall_seconds=wall,
            prefill_seconds=t_enc + st.prefill_seconds, step_seconds=st.step_seconds,
            tokens=st.tokens,
        ))
    # audio seconds: the recordings' real durations (padding and frame rounding excluded)
    speed.audio_seconds = sum(r["duration"] for r in recs)
    rows = []
    for r in recs:
        hyp = " ".join(h.strip() for h in r.pop("hyp_pieces") if h and h.strip())
        rows.append({**r, "hyp": hyp})
    return DecodeResult(rows, speed, [], notes)
