"""bin.transcribe on files written here (8 to 44.1 kHz, mono and stereo, wav and flac, 0.5 s to
4 minutes) with a random tiny model: its transcripts agree token for token with stage 5's
(stages 1-2 run on the same files, bin.decode on their cuts), with the same decode options;
with references it writes stage 6's files, equal to bin.score's."""

import json
import re
import subprocess
import sys

import pytest
from decoding_helpers import make_tiny_model, write_audio

TEXTS = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine",
         "all that glitters is not gold", "hello world good bye"]
# (recording id, suffix, sample rate, channels, seconds)
FILES = [("a8k", "wav", 8000, 1, 0.5), ("b16k2", "flac", 16000, 2, 3.0),
         ("c22k", "flac", 22050, 1, 2.0), ("d44k2", "wav", 44100, 2, 4.0),
         ("e44k", "flac", 44100, 1, 1.0), ("f22k2long", "flac", 22050, 2, 240.0)]
FAST = ["decode.max_tokens_per_second=2", "decode.min_new_tokens=2"]
SETTINGS = {
    "greedy-ctc0.9-dense": [],
    "ctc_beam3-lm9w1b1-dense": ["decode.method=ctc_beam", "decode.beam=3"],
    "greedy-ctc0.9-unique-b8": ["decode.sparse.method=unique", "decode.sparse.budget=8"],
}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """Stages 1-2 (the library functions the stages call) on the files; a tiny model."""
    from unique_asr.data.fbank import compute_fbank
    from unique_asr.data.manifests import build_manifests

    root = make_tiny_model(tmp_path_factory.mktemp("transcribe"), TEXTS)
    audio = root / "data" / "corpus" / "test" / "audio"
    audio.mkdir(parents=True)
    segments = []
    for i, (rid, suffix, sr, ch, sec) in enumerate(FILES):
        write_audio(audio / f"{rid}.{suffix}", sec, sr, seed=i, channels=ch)
        segments.append({"recording_id": rid, "start": 0.0, "duration": sec, "speaker": "s",
                         "text": TEXTS[i % len(TEXTS)]})
    (audio.parent / "segments.jsonl").write_text("".join(json.dumps(s) + "\n" for s in segments))
    build_manifests(root / "data" / "corpus", root / "data" / "manifests", ["test"])
    compute_fbank(root / "data" / "manifests", root / "data" / "fbank", ["test"], num_jobs=1)
    return root


def _run(module, root, *extra):
    cmd = [sys.executable, "-m", f"unique_asr.bin.{module}", f"recipe_dir={root}",
           f"data_dir={root}/data", f"exp_dir={root}/exp", "train.tag=tiny", *FAST, *extra]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x]


def _by_recording(text):
    """Stage 6's files name a recording by its cut id, <recording id>-<n>."""
    return re.sub(r"^(\w+)-\d+:", r"\1:", text, flags=re.M)


def _stage5_rows(root, tag):
    """Stage 5's rows by recording id (stage 2 names a cut <recording id>-<n>)."""
    from lhotse import CutSet

    rec_of = {c.id: c.recording_id for c in CutSet.from_file(root / "data" / "fbank" /
                                                             "cuts_test.jsonl.gz")}
    rows = _jsonl(root / "exp" / "tiny" / "decode" / "last" / f"hyps-test-{tag}.jsonl")
    return {rec_of[r["id"]]: r for r in rows}


@pytest.mark.parametrize("tag", list(SETTINGS))
def test_transcripts_agree_with_stage_5(recipe, tag):
    opts = SETTINGS[tag]
    res = _run("decode", recipe, *opts)
    assert res.returncode == 0, res.stderr[-3000:]
    stage5 = _stage5_rows(recipe, tag)
    assert sorted(stage5) == sorted(f[0] for f in FILES)

    out = recipe / f"out-{tag}"
    res = _run("transcribe", recipe, f"transcribe.model={recipe}/exp/tiny",
               str(recipe / "data" / "corpus" / "test" / "audio"), f"transcribe.out_dir={out}",
               "transcribe.group_seconds=5", *opts)
    assert res.returncode == 0, res.stderr[-3000:]
    text = dict(line.split("\t") for line in (out / "transcripts.txt").read_text().splitlines())
    rows = {r["id"]: r for r in _jsonl(out / f"hyps-audio-{tag}.jsonl")}
    assert sorted(text) == sorted(rows) == sorted(stage5)
    for rid, r in stage5.items():
        assert rows[rid]["hyp"] == r["hyp"], rid
        assert rows[rid]["tokens"] == r["tokens"] and rows[rid]["pieces"] == r["pieces"], rid
        assert text[rid] == " ".join(r["hyp"].split())
    assert any(r["tokens"] for r in stage5.values())
    assert stage5["f22k2long"]["duration"] == pytest.approx(240.0)
    speed = {r["id"]: r for r in _jsonl(out / "transcripts.jsonl")}
    for rid, (_, _, _, _, sec) in zip(sorted(speed), sorted(FILES)):
        assert speed[rid]["duration"] == pytest.approx(sec, abs=1e-3)
        assert speed[rid]["seconds"] > 0
        assert speed[rid]["rtfx"] == pytest.approx(sec / speed[rid]["seconds"], rel=0.01)
    assert (out / "skipped.jsonl").read_text() == ""


def test_references_give_stage_6s_files(recipe):
    tag = "greedy-ctc0.9-dense"
    assert _run("decode", recipe).returncode == 0
    res = _run("score", recipe, "decode.results_md=null")
    assert res.returncode == 0, res.stderr[-3000:]
    out = recipe / "out-refs"
    res = _run("transcribe", recipe, f"transcribe.model={recipe}/exp/tiny",
               str(recipe / "data" / "corpus" / "test" / "audio" / "*.*"),
               f"transcribe.out_dir={out}",
               f"transcribe.refs={recipe}/data/manifests/supervisions_test.jsonl.gz")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"audio {tag}: WER" in res.stdout
    stage6 = recipe / "exp" / "tiny" / "decode" / "last"
    assert (out / f"recogs-audio-{tag}.txt").read_text() == \
        _by_recording((stage6 / f"recogs-test-{tag}.txt").read_text())
    errs = (out / f"errs-audio-{tag}.txt").read_text().splitlines()
    assert errs[0].split("  ")[0] == \
        (stage6 / f"errs-test-{tag}.txt").read_text().splitlines()[0].split("  ")[0]
    summary = (out / f"wer-summary-audio-{tag}.txt").read_text().splitlines()[1].split("\t")
    want = (stage6 / f"wer-summary-test-{tag}.txt").read_text().splitlines()[1].split("\t")
    assert summary[:7] == want[:7]  # setting, WER, sub, del, ins, ref words, recordings

    # a `<id>\t<text>` file scores the same
    refs = out / "refs.txt"
    refs.write_text("".join(f"{f[0]}\t{TEXTS[i % len(TEXTS)]}\n" for i, f in enumerate(FILES)))
    res = _run("transcribe", recipe, f"transcribe.model={recipe}/exp/tiny",
               str(recipe / "data" / "corpus" / "test" / "audio"),
               f"transcribe.out_dir={out}/txt", f"transcribe.refs={refs}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "txt" / f"recogs-audio-{tag}.txt").read_text() == \
        _by_recording((stage6 / f"recogs-test-{tag}.txt").read_text())


def test_export_decodes_without_the_recipe_data(recipe, tmp_path):
    """bin.export (run.sh stage 7) writes a directory that bin.transcribe loads with the
    recipe's data/ gone (here: another data_dir that does not exist)."""
    export = tmp_path / "export"
    res = _run("export", recipe, f"transcribe.model={export}")
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((export / "export.json").read_text())
    assert info["features"] == {"kind": "fbank", "sample_rate": 16000, "num_mel_bins": 80}
    assert {"model.pt", "model_config.json", "bpe.model", "lm_text.txt"} <= \
        {p.name for p in export.iterdir()}
    wav = write_audio(tmp_path / "x.wav", 1.5, 22050, channels=2)
    cmd = [sys.executable, "-m", "unique_asr.bin.transcribe", f"transcribe.model={export}",
           str(wav), f"transcribe.out_dir={tmp_path}/out", f"data_dir={tmp_path}/none",
           f"exp_dir={tmp_path}/exp", "decode.method=ctc_beam", *FAST]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "out" / "transcripts.txt").read_text().startswith("x\t")
    assert not (tmp_path / "none").exists()


def test_bad_input_named_skipped_and_nothing_written_is_lost(recipe, tmp_path):
    """A file that fails while decoding (its header reads, its data does not) stops the run
    naming it, after the recordings before it were written; --skip-bad lists it and goes on."""
    good = write_audio(tmp_path / "a_good.flac", 1.0, 16000)
    broken = write_audio(tmp_path / "z_broken.flac", 3.0, 16000, seed=1)
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    args = [f"transcribe.model={recipe}/exp/tiny", str(good), str(broken),
            "transcribe.group_seconds=1"]
    res = _run("transcribe", recipe, *args, f"transcribe.out_dir={tmp_path}/stop")
    assert res.returncode != 0
    assert f"cannot read audio {broken}" in res.stderr
    assert (tmp_path / "stop" / "transcripts.txt").read_text().startswith("a_good\t")
    assert [r["id"] for r in _jsonl(tmp_path / "stop" / "transcripts.jsonl")] == ["a_good"]

    missing = tmp_path / "missing.wav"
    res = _run("transcribe", recipe, *args, str(missing), "--skip-bad",
               f"transcribe.out_dir={tmp_path}/skip")
    assert res.returncode == 0, res.stderr[-3000:]
    skipped = _jsonl(tmp_path / "skip" / "skipped.jsonl")
    assert [s.get("input", s.get("id")) for s in skipped] == [str(missing), "z_broken"]
    assert "no such file or directory" in skipped[0]["error"]
    assert "cannot read audio" in skipped[1]["error"]
    assert (tmp_path / "skip" / "transcripts.txt").read_text().startswith("a_good\t")
    assert "skipped 2 inputs" in res.stdout + res.stderr
