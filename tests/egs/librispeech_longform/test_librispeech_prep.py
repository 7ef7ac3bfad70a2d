"""egs/librispeech_longform on a mock LibriSpeech: stage 0 (chapter joining checked against the
source utterances: order, times, samples), stage 1, stages 2-3, a short decode and scoring with
a random tiny model, and the errors for a missing or incomplete corpus."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse.serialization import load_jsonl
from librispeech_mock import PARTS, UTTERANCES

from unique_asr.data.text_norm import normalize_text

RECIPE = "librispeech_longform"
LONGFORM = {"dev_clean": "dev-clean", "dev_other": "dev-other", "test_clean": "test-clean",
            "test_other": "test-other"}


@pytest.fixture(scope="module")
def prepared(mock_librispeech, recipe_tools, tmp_path_factory):
    root, utts = mock_librispeech
    tmp = tmp_path_factory.mktemp("ls_run")
    r = recipe_tools["run_recipe"](RECIPE, tmp, "--stop-stage", "1", "--", f"corpus.path={root}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return tmp, root, utts, r


def test_stage_0_and_1_run(prepared):
    tmp, _, _, r = prepared
    for n, name in (("0", "prepare"), ("1", "manifests")):
        assert f"stage {n} ({name}): done in" in r.stdout
    manifests = tmp / "data" / "manifests"
    for split in ["train", *LONGFORM]:
        for kind in ("recordings", "supervisions"):
            assert (manifests / f"{kind}_{split}.jsonl.gz").is_file()


def test_longform_recordings_join_each_chapter_in_order(prepared):
    tmp, _, utts, _ = prepared
    manifests = tmp / "data" / "manifests"
    for split, part in LONGFORM.items():
        chapters = {f"{spk}-{ch}" for spk, chs in PARTS[part].items() for ch in chs}
        recs = {r["id"]: r for r in load_jsonl(manifests / f"recordings_{split}.jsonl.gz")}
        assert set(recs) == chapters
        sups = list(load_jsonl(manifests / f"supervisions_{split}.jsonl.gz"))
        for chapter in chapters:
            mine = sorted((s for s in sups if s["recording_id"] == chapter),
                          key=lambda s: s["start"])
            ids = [s["custom"]["utterance_id"] for s in mine]
            assert ids == [f"{chapter}-{u:04d}" for u in range(UTTERANCES)]
            joined, rate = sf.read(recs[chapter]["sources"][0]["source"], dtype="int16")
            assert rate == 16000
            pos = 0
            for sup, uid in zip(mine, ids):
                src = utts[uid]["samples"]
                assert round(sup["start"] * rate) == pos
                assert round(sup["duration"] * rate) == len(src)
                assert np.array_equal(joined[pos:pos + len(src)], src)
                assert sup["text"] == normalize_text(utts[uid]["text"])
                assert sup["speaker"] == chapter.split("-")[0]
                pos += len(src)
            assert len(joined) == pos == recs[chapter]["num_samples"]


def test_train_keeps_one_linked_recording_per_utterance(prepared):
    tmp, _, utts, _ = prepared
    audio = tmp / "data" / "corpus" / "train" / "audio"
    expected = {u for u, v in utts.items() if "train-clean-100" in str(v["path"])}
    assert {p.stem for p in audio.iterdir()} == expected
    for p in audio.iterdir():
        assert p.is_symlink() and p.resolve() == utts[p.stem]["path"].resolve()
    info = json.loads((tmp / "data" / "corpus" / "info.json").read_text())
    assert info["test_clean"]["recordings"] == 3 and info["train"]["utterances"] == len(expected)
    assert 0 < info["test_clean"]["minutes_min"] <= info["test_clean"]["minutes_max"]


def test_gap_between_joined_utterances(mock_librispeech, recipe_tools, tmp_path):
    root, utts = mock_librispeech
    r = recipe_tools["run_recipe"](RECIPE, tmp_path, "--stop-stage", "0", "--",
                                   f"corpus.path={root}", "data.splits=[test_other]",
                                   "corpus.gap_s=0.25")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in
            (tmp_path / "data" / "corpus" / "test_other" / "segments.jsonl").read_text().split("\n") if x]
    joined, rate = sf.read(tmp_path / "data" / "corpus" / "test_other" / "audio" /
                           f"{rows[0]['recording_id']}.flac", dtype="int16")
    gap = int(0.25 * rate)
    pos = 0
    for row in rows:
        src = utts[row["utterance_id"]]["samples"]
        assert round(row["start"] * rate) == pos
        assert np.array_equal(joined[pos:pos + len(src)], src)
        if pos:
            assert not joined[pos - gap:pos].any()
        pos += len(src) + gap


def test_stages_2_3_then_a_short_decode(prepared, recipe_tools):
    tmp, root, _, _ = prepared
    common = ["--", f"corpus.path={root}", "data.lang.vocab_size=40"]
    r = recipe_tools["run_recipe"](RECIPE, tmp, "--stage", "2", "--stop-stage", "3", *common)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    bpe = tmp / "data" / "lang_bpe_40" / "bpe.model"
    assert bpe.is_file() and (tmp / "data" / "fbank" / "cuts_test_other.jsonl.gz").is_file()
    recipe_tools["random_checkpoint"](tmp / "exp", bpe)
    r = recipe_tools["run_recipe"](RECIPE, tmp, "--stage", "5", "--stop-stage", "6",
                                   "--decode-also", "", *common, "train.tag=tiny",
                                   *recipe_tools["decode_fast"](tmp))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "| test_clean | tiny (last.pt) |" in (tmp / "RESULTS.md").read_text()
    out = tmp / "exp" / "tiny" / "decode" / "last"
    for split in ("test_clean", "test_other"):
        hyps = [json.loads(x) for x in
                (out / f"hyps-{split}-greedy-ctc0.9-dense.jsonl").read_text().split("\n") if x]
        chapters = {f"{s}-{c}" for s, cs in PARTS[LONGFORM[split]].items() for c in cs}
        assert {h["id"].rsplit("-", 1)[0] for h in hyps} == chapters  # cut id = <rec>-<n>
        errs = (out / f"errs-{split}-greedy-ctc0.9-dense.txt").read_text()
        assert all(f"\n{h['id']}  " in errs for h in hyps)   # a WER line per recording


def test_missing_corpus_path_names_the_layout(recipe_tools, tmp_path):
    r = recipe_tools["run_recipe"](RECIPE, tmp_path, "--stop-stage", "0", "--",
                                   f"corpus.path={tmp_path}/nowhere")
    assert r.returncode != 0
    assert f"{tmp_path}/nowhere not found" in r.stderr
    assert "<speaker>-<chapter>.trans.txt" in r.stderr and "corpus.path=" in r.stderr


def test_missing_part_and_missing_flac_are_named(mock_librispeech, recipe_tools, tmp_path):
    src, utts = mock_librispeech
    root = tmp_path / "LibriSpeech"
    shutil.copytree(src, root, ignore=shutil.ignore_patterns("test-other"))
    r = recipe_tools["run_recipe"](RECIPE, tmp_path, "--stop-stage", "0", "--",
                                   f"corpus.path={root}")
    assert r.returncode != 0 and f"{root}/test-other not found" in r.stderr
    flac = root / "test-clean" / "121" / "121726" / "121-121726-0001.flac"
    flac.unlink()
    r = recipe_tools["run_recipe"](RECIPE, tmp_path, "--stop-stage", "0", "--",
                                   f"corpus.path={root}", "data.splits=[test_clean]")
    assert r.returncode != 0 and f"{flac} not found" in r.stderr
    assert "Expected on-disk layout" in r.stderr
