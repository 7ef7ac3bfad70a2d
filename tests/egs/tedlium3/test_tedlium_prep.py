"""egs/tedlium3 on a mock TED-LIUM 3: stage 0 (lhotse's prepare_tedlium on SPHERE audio without
sph2pipe; markers and ignored segments; whole test talks cropped to their labelled span, checked
sample by sample), stage 1, stages 2-3, a short per-talk decode and scoring with a random tiny
model, and the errors for a missing or incomplete corpus."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse.serialization import load_jsonl
from tedlium_mock import LEAD_S, TALKS

RECIPE = "tedlium3"
# the texts the references must have (Kaldi joining of "they 're", markers dropped, the
# ignore_time_segment_in_scoring and marker-only segments left out)
REFS = ["so they're going to show you", "and it's a great idea", "thank you very much"]


@pytest.fixture(scope="module")
def prepared(mock_tedlium, recipe_tools, tmp_path_factory):
    root, talks = mock_tedlium
    tmp = tmp_path_factory.mktemp("ted_run")
    r = recipe_tools["run_recipe"](RECIPE, tmp, "--stop-stage", "1", "--", f"corpus.path={root}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return tmp, root, talks


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_talks_segments_and_texts(prepared, split):
    tmp, _, talks = prepared
    manifests = tmp / "data" / "manifests"
    recs = {r["id"]: r for r in load_jsonl(manifests / f"recordings_{split}.jsonl.gz")}
    assert sorted(recs) == sorted(TALKS[split])
    sups = list(load_jsonl(manifests / f"supervisions_{split}.jsonl.gz"))
    cropped = split != "train"
    for talk in TALKS[split]:
        mine = sorted((s for s in sups if s["recording_id"] == talk), key=lambda s: s["start"])
        assert [s["text"] for s in mine] == REFS
        kept = [seg for seg in talks[talk]["segments"] if seg[2] not in
                ("ignore_time_segment_in_scoring", "{NOISE}")]
        shift = LEAD_S if cropped else 0.0
        for s, (start, end, _) in zip(mine, kept):
            assert s["start"] == pytest.approx(start - shift, abs=1e-6)
            assert s["duration"] == pytest.approx(end - start, abs=1e-6)
        audio, rate = sf.read(recs[talk]["sources"][0]["source"], dtype="int16")
        src = talks[talk]["samples"]
        if cropped:  # the first labelled segment's start to the last one's end (+1 sample)
            first = round(LEAD_S * rate)
            last = round(talks[talk]["segments"][-1][1] * rate)
            assert len(audio) == last - first + 1
            assert np.array_equal(audio, src[first:first + len(audio)])
        else:
            assert np.array_equal(audio, src)


def test_stages_2_3_then_a_per_talk_decode(prepared, recipe_tools):
    tmp, root, _ = prepared
    common = ["--", f"corpus.path={root}", "data.lang.vocab_size=30"]
    r = recipe_tools["run_recipe"](RECIPE, tmp, "--stage", "2", "--stop-stage", "3", *common)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    bpe = tmp / "data" / "lang_bpe_30" / "bpe.model"
    recipe_tools["random_checkpoint"](tmp / "exp", bpe)
    r = recipe_tools["run_recipe"](RECIPE, tmp, "--stage", "5", "--stop-stage", "6",
                                   "--decode-also", "", *common, "train.tag=tiny",
                                   *recipe_tools["decode_fast"](tmp))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "| test | tiny (last.pt) |" in (tmp / "RESULTS.md").read_text()
    errs = (tmp / "exp" / "tiny" / "decode" / "last" /
            "errs-test-greedy-ctc0.9-dense.txt").read_text()
    for talk in TALKS["test"]:  # one WER line per talk, on the three kept segments' words
        line = next(x for x in errs.splitlines() if x.startswith(f"{talk}-"))
        assert f"/ {sum(len(t.split()) for t in REFS)}," in line


def test_missing_corpus_path_names_the_layout(recipe_tools, tmp_path):
    r = recipe_tools["run_recipe"](RECIPE, tmp_path, "--stop-stage", "0", "--",
                                   f"corpus.path={tmp_path}/nowhere")
    assert r.returncode != 0 and f"{tmp_path}/nowhere not found" in r.stderr
    assert "legacy/<part>/stm/<talk>.stm" in r.stderr and "corpus.path=" in r.stderr


def test_missing_sph_and_missing_part_are_named(mock_tedlium, recipe_tools, tmp_path):
    src, _ = mock_tedlium
    root = tmp_path / "TEDLIUM_release-3"
    shutil.copytree(src, root)
    sph = root / "legacy" / "test" / "sph" / f"{TALKS['test'][1]}.sph"
    sph.unlink()
    r = recipe_tools["run_recipe"](RECIPE, tmp_path, "--stop-stage", "0", "--",
                                   f"corpus.path={root}")
    assert r.returncode != 0 and f"{sph} not found" in r.stderr
    shutil.rmtree(root / "legacy" / "dev")
    r = recipe_tools["run_recipe"](RECIPE, tmp_path, "--stop-stage", "0", "--",
                                   f"corpus.path={root}")
    assert r.returncode != 0 and f"{root}/legacy/dev/stm/<talk>.stm not found" in r.stderr
