"""egs/earnings21 on a mock Earnings-21: stage 0 (lhotse's prepare_earnings21; MP3 at 24 and
44.1 kHz -> 16 kHz FLAC, one whole-call supervision), stage 1 (numbers and money spelled out),
the recipe's default run (stages 0-2 and 5-6, decoding a model trained elsewhere), and the
errors for a missing or incomplete corpus."""

from __future__ import annotations

import shutil

import pytest
import soundfile as sf
from earnings21_mock import CALLS, NORMALISED
from lhotse.serialization import load_jsonl

RECIPE = "earnings21"


@pytest.fixture(scope="module")
def prepared(mock_earnings21, recipe_tools, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("earn_run")
    r = recipe_tools["run_recipe"](RECIPE, tmp, "--stop-stage", "1", "--",
                                   f"corpus.path={mock_earnings21}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return tmp


def test_whole_calls_at_16k_with_spelled_out_references(prepared, mock_earnings21):
    manifests = prepared / "data" / "manifests"
    recs = {r["id"]: r for r in load_jsonl(manifests / "recordings_test.jsonl.gz")}
    assert sorted(recs) == sorted(CALLS)
    sups = {s["recording_id"]: s for s in load_jsonl(manifests / "supervisions_test.jsonl.gz")}
    assert sups[CALLS[0]]["text"] == NORMALISED
    assert sups[CALLS[1]]["text"] == "thank you"
    for call, rec in recs.items():
        assert rec["sampling_rate"] == 16000
        src = sf.info(mock_earnings21 / "media" / f"{call}.mp3").duration
        assert rec["duration"] == pytest.approx(src, abs=0.06)
        assert sups[call]["start"] == 0 and sups[call]["duration"] == pytest.approx(rec["duration"])


def test_default_run_decodes_with_a_model_trained_elsewhere(prepared, mock_earnings21,
                                                            recipe_tools):
    from unique_asr.data.bpe import train_bpe

    elsewhere = prepared / "other_recipe"
    lang = elsewhere / "lang_bpe_30"
    train_bpe(prepared / "data" / "manifests" / "supervisions_test.jsonl.gz", lang, 30)
    recipe_tools["random_checkpoint"](elsewhere, lang / "bpe.model")
    r = recipe_tools["run_recipe"](RECIPE, prepared, "--decode-also", "", "--",
                                   f"corpus.path={mock_earnings21}", "train.tag=tiny",
                                   f"decode.model_dir={elsewhere}/tiny",
                                   *recipe_tools["decode_fast"](prepared))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "| test | tiny (last.pt) |" in (prepared / "RESULTS.md").read_text()
    assert "stage 2 (features): done in" in r.stdout
    assert "stage 3" not in r.stdout and "stage 4" not in r.stdout
    assert "stage 6 (score): done in" in r.stdout
    summary = elsewhere / "tiny" / "decode" / "last" / "wer-summary-test-greedy-ctc0.9-dense.txt"
    assert f"\t{len(CALLS)}\t" in summary.read_text()   # recordings scored


def test_missing_corpus_path_names_the_layout(recipe_tools, tmp_path):
    r = recipe_tools["run_recipe"](RECIPE, tmp_path, "--stop-stage", "0", "--",
                                   f"corpus.path={tmp_path}/nowhere")
    assert r.returncode != 0 and f"{tmp_path}/nowhere not found" in r.stderr
    assert "transcripts/nlp_references/<file_id>.nlp" in r.stderr


def test_missing_audio_and_missing_calls_are_named(mock_earnings21, recipe_tools, tmp_path):
    root = tmp_path / "earnings21"
    shutil.copytree(mock_earnings21, root)
    mp3 = root / "media" / f"{CALLS[5]}.mp3"
    mp3.unlink()
    r = recipe_tools["run_recipe"](RECIPE, tmp_path, "--stop-stage", "0", "--",
                                   f"corpus.path={root}")
    assert r.returncode != 0 and f"{mp3} not found" in r.stderr
    (root / "transcripts" / "nlp_references" / f"{CALLS[5]}.nlp").unlink()
    r = recipe_tools["run_recipe"](RECIPE, tmp_path, "--stop-stage", "0", "--",
                                   f"corpus.path={root}")
    assert r.returncode != 0 and "has 43 calls with references, not 44" in r.stderr
