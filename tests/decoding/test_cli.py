"""bin.decode then bin.score, as run.sh stages 5 and 6 call them, on a random tiny checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from decoding_helpers import make_tiny_recipe

TEXTS = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine",
         "all that glitters is not gold", "hello world good bye"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    return make_tiny_recipe(tmp_path_factory.mktemp("recipe"), TEXTS,
                            [("rec1", 3.0, TEXTS[:2]), ("rec2", 2.0, TEXTS[2:])])


def _run(module, root, *extra):
    cmd = [sys.executable, "-m", f"unique_asr.bin.{module}", f"recipe_dir={root}",
           f"data_dir={root}/data", f"exp_dir={root}/exp", "train.tag=tiny",
           "decode.max_tokens_per_second=2", "decode.min_new_tokens=2", *extra]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=240)


def test_decode_then_score(recipe):
    res = _run("decode", recipe)
    assert res.returncode == 0, res.stderr[-3000:]
    out = recipe / "exp" / "tiny" / "decode" / "last"
    rows = [json.loads(x) for x in (out / "hyps-test-greedy-ctc0.9-dense.jsonl").read_text().split("\n")
            if x]
    assert [r["id"] for r in rows] == ["rec1", "rec2"]
    assert rows[0]["ref"] == " ".join(TEXTS[:2])
    meta = json.loads((out / "meta-test-greedy-ctc0.9-dense.json").read_text())
    assert meta["attention"] == "dense" and meta["speed"]["rtfx"] > 0
    assert "decode.max_tokens_per_second=2" in meta["command"]

    res = _run("score", recipe)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "test greedy-ctc0.9-dense: WER" in res.stdout
    for kind in ("recogs", "errs", "wer-summary"):
        assert (out / f"{kind}-test-greedy-ctc0.9-dense.txt").is_file()
    row = (recipe / "RESULTS.md").read_text().splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:6] == ["test", "tiny (last.pt)", "dense", "-", "greedy-ctc0.9"]
    assert float(cells[6]) >= 0 and float(cells[11]) > 0  # WER, RTFx
    assert "python -m unique_asr.bin.decode" in cells[-1]


def test_unknown_attention_method_is_a_clear_error(recipe):
    res = _run("decode", recipe, "decode.sparse.method=sparse")
    assert res.returncode != 0
    assert "decode.sparse.method='sparse': use one of dense, unique" in res.stderr


def test_run_sh_stages_5_and_6(recipe):
    """Both decodings of stages 5-6: the main one and --decode-also (ctc_beam with the LM of
    the lang dir's lm_text.txt), each with its own files and RESULTS.md row."""
    root = Path(__file__).resolve().parents[2]
    cmd = [str(root / "run.sh"), "--recipe", str(recipe), "--stage", "5", "--stop-stage", "6",
           "--setup", "false", "--decode-also", "decode.method=ctc_beam decode.beam=3",
           "--", "train.tag=tiny", "decode.max_tokens_per_second=2", "decode.min_new_tokens=2"]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=240, cwd=root)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "stage 5 (decode): done" in res.stdout and "stage 6 (score): done" in res.stdout
    out = recipe / "exp" / "tiny" / "decode" / "last"
    assert (out / "wer-summary-test-greedy-ctc0.9-dense.txt").is_file()
    assert (out / "wer-summary-test-ctc_beam3-lm9w1b1-dense.txt").is_file()
    rows = (recipe / "RESULTS.md").read_text()
    assert "| test | tiny (last.pt) | dense | - | ctc_beam3-lm9w1b1 |" in rows


def test_ctc_beam_without_lm_text_is_a_clear_error(recipe, tmp_path):
    res = _run("decode", recipe, "decode.method=ctc_beam", f"decode.lm_text={tmp_path}/none.txt")
    assert res.returncode != 0
    assert "none.txt not found: run stage 3 again" in res.stderr


def test_pretrained_tokenizer_reads_the_recipes_lm_text(tmp_path):
    """A model with its LLM's own tokenizer (no lang dir: bpe_path None) gets stage 3's
    lm_text.txt of the recipe for ctc_beam; a given decode.lm_text or a lang-dir BPE wins."""
    from omegaconf import OmegaConf

    from unique_asr.bin.decode import with_lm_text
    from unique_asr.decoding.config import DecodeConfig

    cfg = OmegaConf.create({"recipe_dir": str(tmp_path), "data_dir": str(tmp_path / "data"),
                            "data": {"lang": {"vocab_size": 500, "model_type": "char"}}})
    d = DecodeConfig(method="ctc_beam")
    assert with_lm_text(d, cfg, None).lm_text == str(tmp_path / "data/lang_char/lm_text.txt")
    assert with_lm_text(DecodeConfig(lm_text="x.txt"), cfg, None).lm_text == "x.txt"
    assert with_lm_text(d, cfg, tmp_path / "lang_bpe_500/bpe.model").lm_text is None
