"""Training-time validation: the dev greedy WER's length cap follows the reference."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from unique_asr.training.validate import greedy_wer


class CharTokens:
    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_greedy_wer_caps_each_recording_at_twice_its_reference():
    seen = {}

    def greedy(model, feats, lens, max_new_tokens):  # a decoder that never stops
        seen[int(feats[0, 0, 0])] = max_new_tokens
        return [[ord("a")] * max_new_tokens]

    refs = {"r1": "hello world", "r2": "a much longer reference sentence"}
    recs = {rid: ([SimpleNamespace(text=t)], None) for rid, t in refs.items()}
    # an hour of frames each: a cap per second of audio would allow ~100k tokens
    feats = {rid: torch.full((360_000, 4), float(i)) for i, rid in enumerate(sorted(refs))}
    model = torch.nn.Linear(1, 1)
    wer, rows = greedy_wer(model, greedy, feats, recs, CharTokens(), "cpu")
    assert seen == {0: 2 * len(refs["r1"]) + 16, 1: 2 * len(refs["r2"]) + 16}
    assert wer > 0.99 and [r[0] for r in rows] == ["r1", "r2"]
