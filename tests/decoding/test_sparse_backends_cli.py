"""decode.attention=unique from the command line (as run.sh stage 5/6 call it) on a random tiny
checkpoint: a budget above the context gives dense's transcripts; a small budget runs and its
scoring row names the attention and the budget."""

import json
import subprocess
import sys

import pytest
import sentencepiece as spm
import torch
from conftest import make_cut
from lhotse import CutSet

from unique_asr.models import ModelConfig, build_model

TEXTS = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse_recipe")
    lang = root / "data" / "lang_bpe_30"
    lang.mkdir(parents=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXTS * 10), model_prefix=str(lang / "bpe"), vocab_size=30,
        model_type="bpe", hard_vocab_limit=False, minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(lang / "bpe.model"))
    torch.manual_seed(0)
    cfg = ModelConfig(n_text=sp.get_piece_size())
    (root / "exp" / "tiny").mkdir(parents=True)
    torch.save({"model": build_model(cfg).state_dict(), "model_cfg": cfg.to_dict(),
                "bpe_model": str(lang / "bpe.model")}, root / "exp" / "tiny" / "last.pt")
    (root / "audio").mkdir()
    cuts = CutSet.from_cuts([make_cut(root / "audio", "rec1", 6.0, texts=TEXTS),
                             make_cut(root / "audio", "rec2", 3.0, texts=TEXTS[1:])])
    (root / "data" / "fbank").mkdir()
    cuts.to_file(root / "data" / "fbank" / "cuts_test.jsonl.gz")
    return root


def _run(module, root, *extra):
    cmd = [sys.executable, "-m", f"unique_asr.bin.{module}", f"recipe_dir={root}",
           f"data_dir={root}/data", f"exp_dir={root}/exp", "train.tag=tiny",
           "decode.max_tokens_per_second=6", "decode.min_new_tokens=8", *extra]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _hyps(root, tag):
    path = root / "exp" / "tiny" / "decode" / "last" / f"hyps-test-{tag}.jsonl"
    return [json.loads(x)["hyp"] for x in path.read_text().splitlines() if x]


def test_unique_cli_equals_dense_then_small_budget_scores(recipe):
    _run("decode", recipe)
    _run("decode", recipe, "decode.attention=unique", "decode.budget=4096")
    dense = _hyps(recipe, "greedy-dense")
    assert _hyps(recipe, "greedy-unique-b4096") == dense and any(dense)
    small = ["decode.attention=unique", "decode.budget=8", "decode.sink_pages=1"]
    _run("decode", recipe, *small)
    meta = json.loads((recipe / "exp" / "tiny" / "decode" / "last" /
                       "meta-test-greedy-unique-b8.json").read_text())
    assert meta["attention"] == "unique" and meta["budget"] == 8
    assert meta["model_cfg"]["attention_cfg"]["sink_pages"] == 1
    res = _run("score", recipe, *small)
    assert "test greedy-unique-b8: WER" in res.stdout
    row = (recipe / "RESULTS.md").read_text().splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:5] == ["unique", "8"]
