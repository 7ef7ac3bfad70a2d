"""WER counts against hand-computed alignments, after the project's normaliser."""

import math

import pytest

from unique_asr.data.text_norm import normalize_text
from unique_asr.scoring.wer import score_recording, score_set


def test_one_sub_one_del_is_fifty_percent():
    r = score_recording("r1", "a b c d", "a x c")
    assert (r.sub, r.dels, r.ins, r.nref) == (1, 1, 0, 4)
    assert r.wer == pytest.approx(0.5)
    assert r.ops == [("C", "a", "a"), ("S", "b", "x"), ("C", "c", "c"), ("D", "d", "*")]


def test_insertion_and_perfect():
    r = score_recording("r", "the cat sat", "the cat sat down")
    assert (r.sub, r.dels, r.ins) == (0, 0, 1)
    assert r.wer == pytest.approx(1 / 3)
    assert r.ops[-1] == ("I", "*", "down")
    p = score_recording("p", "hello world", "hello world")
    assert p.wer == 0.0 and p.correct == 2


def test_normaliser_applied_to_both_sides():
    # "Mr. Smith paid $5" normalises to "mister smith paid five dollars" on both sides
    r = score_recording("n", "Mr. Smith paid $5!", "mister SMITH, paid five dollars")
    assert normalize_text("Mr. Smith paid $5!") == "mister smith paid five dollars"
    assert r.errors == 0 and r.nref == 5


def test_empty_sides():
    r = score_recording("e", "", "uh oh")
    assert (r.ins, r.nref) == (2, 0) and math.isinf(r.wer)
    r = score_recording("e", "two words", "")
    assert (r.dels, r.wer) == (2, 1.0)
    assert score_recording("e", "", "").wer == 0.0


def test_total_is_pooled_not_averaged():
    # rec a: 1 sub + 1 del over 4 words; rec b: 0 errors over 6 words -> 2 / 10 = 20%
    s = score_set([("b", "one two three four five six", "one two three four five six"),
                   ("a", "a b c d", "a x c")])
    assert [r.rec_id for r in s.recordings] == ["a", "b"]
    assert (s.sub, s.dels, s.ins, s.nref) == (1, 1, 0, 10)
    assert s.wer == pytest.approx(0.2)
    subs, dels, ins = s.error_counts()
    assert subs == {("b", "x"): 1} and dels == {"d": 1} and not ins


def test_duplicate_ids_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        score_set([("a", "x", "x"), ("a", "y", "y")])


def test_errors_split_by_speaker():
    # two turns of A around one of B; "x" inserted after B's last word counts for B
    turns = {"r": [("A", "Hello there."), ("B", "good day"), ("A", "bye now")],
             "q": [("B", "one two")]}
    s = score_set([("r", "Hello there. good day bye now", "hello their good day x bye"),
                   ("q", "one two", "one two")], turns=turns)
    r = s.recordings[1]
    assert (r.speakers["A"].sub, r.speakers["A"].dels, r.speakers["A"].nref) == (1, 1, 4)
    assert (r.speakers["B"].ins, r.speakers["B"].nref) == (1, 2)
    by_spk = s.speaker_counts()
    assert list(by_spk) == ["A", "B"]
    assert by_spk["A"].wer == pytest.approx(2 / 4)
    assert by_spk["B"].wer == pytest.approx(1 / 4)
    assert sum(c.errors for c in by_spk.values()) == s.errors


def test_speakers_left_out_when_turns_do_not_match_the_reference():
    s = score_set([("r", "a b c", "a b c")], turns={"r": [("A", "a b")]})
    assert s.recordings[0].speakers is None and s.speaker_counts() == {}
    # a recording without turns: no per-speaker table for the set
    s = score_set([("r", "a b", "a b"), ("q", "c", "c")], turns={"r": [("A", "a b")]})
    assert s.recordings[1].speakers is not None and s.speaker_counts() == {}
