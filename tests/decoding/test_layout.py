"""Decode tags (decoding/layout.py): every setting that changes the output names its files."""

from __future__ import annotations

from unique_asr.decoding.layout import method_name, run_tag


def _d(**kw):
    base = {"method": "greedy", "beam": 4, "ctc_weight": 0.9, "ctc_candidates": 32,
            "lm_weight": 0.0, "lm_order": 9, "token_bonus": 0.0, "oov_penalty": 0.0,
            "attention": "dense", "budget": 512, "tag": None}
    return {**base, **kw}


def test_tags_name_the_settings_that_change_the_output():
    assert method_name(_d()) == "greedy-ctc0.9"
    assert method_name(_d(ctc_candidates=8)) == "greedy-ctc0.9c8"     # two runs, two tags
    assert method_name(_d(method="beam", ctc_weight=0.0)) == "beam4"
    assert method_name(_d(method="ctc_greedy", ctc_candidates=8)) == "ctc_greedy"
    assert method_name(_d(method="ctc_beam", beam=32, lm_weight=1.0, token_bonus=1.0)) == \
        "ctc_beam32-lm9w1b1"
    assert method_name(_d(method="ctc_beam", beam=8, oov_penalty=-2.0)) == "ctc_beam8-oov2"
    assert run_tag(_d(attention="unique")) == "greedy-ctc0.9-unique-b512"
    assert run_tag(_d(tag="mine")) == "mine"
