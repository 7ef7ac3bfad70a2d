"""decode.sparse.method=unique from the command line (as run.sh stage 5/6 call it) on a random tiny
checkpoint: a budget above the context gives dense's transcripts; a small budget runs and its
scoring row names the attention and the budget."""

import json
import subprocess
import sys

import pytest
from decoding_helpers import make_tiny_recipe

TEXTS = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    return make_tiny_recipe(tmp_path_factory.mktemp("sparse_recipe"), TEXTS,
                            [("rec1", 6.0, TEXTS), ("rec2", 3.0, TEXTS[1:])])


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
    _run("decode", recipe, "decode.sparse.method=unique", "decode.sparse.budget=4096")
    dense = _hyps(recipe, "greedy-ctc0.9-dense")
    assert _hyps(recipe, "greedy-ctc0.9-unique-b4096") == dense and any(dense)
    small = ["decode.sparse.method=unique", "decode.sparse.budget=8", "decode.sparse.sink_pages=1"]
    _run("decode", recipe, *small)
    meta = json.loads((recipe / "exp" / "tiny" / "decode" / "last" /
                       "meta-test-greedy-ctc0.9-unique-b8.json").read_text())
    assert meta["attention"] == "unique" and meta["budget"] == 8
    assert meta["decode_cfg"]["sparse"]["sink_pages"] == 1
    res = _run("score", recipe, *small)
    assert "test greedy-ctc0.9-unique-b8: WER" in res.stdout
    row = (recipe / "RESULTS.md").read_text().splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:5] == ["unique", "8"]
