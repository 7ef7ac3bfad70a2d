"""Interleaved decoder layout (model.interleave_s > 0): a window's or recording's audio and its
transcript alternate in chunks, one sequence for the whole of it:

    [audio 1][prompt][text 1][eos] [audio 2][prompt][text 2][eos] ... [audio n][prompt][text n][eos]

Each transcript piece follows its own stretch of audio, so the decoder reads a few seconds of
audio tokens back instead of finding its place in minutes of them, and what it learns on short
training windows holds for whole recordings (decoding appends chunk after chunk to one KV cache:
decoding/generate.interleaved_greedy). Training chunks group consecutive sentences spanning at
most `limit_s` seconds and end in the middle of the pause after their last sentence; decoding
chunks end in pauses found in the audio (decoding/longform.split_points).
"""

from __future__ import annotations

import torch


def sentence_chunks(spans: list[tuple[float, float]], limit_s: float,
                    duration: float) -> list[tuple[int, int, float, float]]:
    """Group sentences (start, end seconds, in time order) into chunks of at most `limit_s`
    seconds of speech (a longer sentence is a chunk of its own) -> (first sentence, last + 1,
    chunk start s, chunk end s); chunks cover [0, duration] and meet in mid-pause."""
    groups, i = [], 0
    while i < len(spans):
        j = i + 1
        while j < len(spans) and spans[j][1] - spans[i][0] <= limit_s:
            j += 1
        groups.append((i, j))
        i = j
    out = []
    for g, (i, j) in enumerate(groups):
        start = 0.0 if g == 0 else out[-1][3]
        end = duration if g == len(groups) - 1 else (spans[j - 1][1] + spans[j][0]) / 2
        out.append((i, j, start, max(start, end)))
    return out


def pack_interleaved(audio: torch.Tensor, audio_lens: torch.Tensor, seg: dict,
                     token_seconds: float, limit_s: float, prompt: list[int], eos: int):
    """Training layout of a batch: where each decoder position reads from and what it predicts.

    audio [B, Ta, D] audio tokens, audio_lens [B]; seg: the batch's sentences (row, start, end
    seconds from the window start, tokens [S, U], token_lens [S]; training/data.collate_segments).
    -> (src [B, L] audio token index or -1, tok [B, L] token id where src < 0, tgt [B, L] target
    or -100, is_text [B, L] transcript input positions)."""
    B = audio.shape[0]
    rows = seg["row"].tolist()
    starts, ends = seg["start"].tolist(), seg["end"].tolist()
    toks = seg["tokens"].tolist()
    n_toks = seg["token_lens"].tolist()
    per_row: list[list[int]] = [[] for _ in range(B)]
    for s, r in enumerate(rows):
        per_row[r].append(s)
    seqs = []
    for b in range(B):
        n_audio = int(audio_lens[b])
        sents = sorted(per_row[b], key=lambda s: starts[s])
        chunks = sentence_chunks([(starts[s], ends[s]) for s in sents], limit_s,
                                 n_audio * token_seconds) if sents else []
        src, tok, tgt, text = [], [], [], []
        for c, (i, j, t0, t1) in enumerate(chunks):
            a0 = min(n_audio, round(t0 / token_seconds))
            a1 = n_audio if c == len(chunks) - 1 else min(n_audio, round(t1 / token_seconds))
            words = [t for s in sents[i:j] for t in toks[s][: n_toks[s]]]
            if c > 0:  # the previous chunk's end token, read as input
                src.append(-1), tok.append(eos), tgt.append(-100), text.append(False)
            src += range(a0, a1)
            tok += [0] * (a1 - a0)
            tgt += [-100] * (a1 - a0)
            text += [False] * (a1 - a0)
            src += [-1] * len(prompt)
            tok += prompt
            tgt += [-100] * (len(prompt) - 1)
            text += [False] * len(prompt)
            src += [-1] * len(words)
            tok += words
            text += [True] * len(words)
            tgt += words + [eos]  # the last prompt token predicts the first word
        seqs.append((src, tok, tgt, text))
    L = max(1, max(len(x[0]) for x in seqs))
    out = (torch.full((B, L), -1, dtype=torch.long), torch.zeros(B, L, dtype=torch.long),
           torch.full((B, L), -100, dtype=torch.long), torch.zeros(B, L, dtype=torch.bool))
    for b, parts in enumerate(seqs):
        for t, x in zip(out, parts):
            t[b, : len(x)] = torch.tensor(x, dtype=t.dtype)
    return tuple(t.to(audio.device) for t in out)
