"""Decode tags (decoding/layout.py): every setting that changes the output names its files."""

from __future__ import annotations

import pytest

from unique_asr.decoding.config import DecodeConfig
from unique_asr.decoding.layout import method_name, run_tag


def _d(**kw):
    base = {"lm_weight": 0.0, "token_bonus": 0.0}
    return DecodeConfig.from_dict({**base, **kw})


def test_tags_name_the_settings_that_change_the_output():
    assert method_name(_d()) == "greedy-ctc0.9"
    assert method_name(_d(ctc_candidates=8)) == "greedy-ctc0.9c8"     # two runs, two tags
    assert method_name(_d(method="beam", ctc_weight=0.0)) == "beam4"
    assert method_name(_d(method="ctc_greedy", ctc_candidates=8)) == "ctc_greedy"
    assert method_name(_d(method="ctc_beam", beam=32, lm_weight=1.0, token_bonus=1.0)) == \
        "ctc_beam32-lm9w1b1"
    assert method_name(_d(method="ctc_beam", beam=8, oov_penalty=-2.0)) == "ctc_beam8-oov2"
    assert run_tag(_d(sparse={"method": "unique"})) == "greedy-ctc0.9-unique-b512"
    assert run_tag(_d(sparse={"method": "unique", "stats_dtype": "fp8"})) == \
        "greedy-ctc0.9-unique-b512-fp8"
    assert run_tag(_d(sparse={"method": "quest", "stats_dtype": "fp8"})) == \
        "greedy-ctc0.9-quest-b512"
    assert run_tag(_d(tag="mine")) == "mine"


def test_from_dict_rejects_unknown_keys_naming_them_and_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown config key decode\.budget; valid keys of decode: "
                                         r"method, beam, .*sparse"):
        DecodeConfig.from_dict({"budget": 256})
    with pytest.raises(ValueError, match=r"unknown config key decode\.sparse\.budgett; valid "
                                         r"keys of decode\.sparse: method, budget, page_size"):
        DecodeConfig.from_dict({"sparse": {"method": "unique", "budgett": 256}})
    with pytest.raises(ValueError, match=r"decode\.sparse\.method='sparse'.*dense, unique"):
        DecodeConfig.from_dict({"sparse": {"method": "sparse"}})
    cfg = DecodeConfig.from_dict({"beam": 8, "sparse": {"method": "quest", "budget": 64,
                                                        "dense_layers": [0]}})
    assert (cfg.beam, cfg.sparse.method, cfg.sparse.budget, cfg.sparse.dense_layers) == \
        (8, "quest", 64, [0])
    assert DecodeConfig.from_dict({}) == DecodeConfig()
