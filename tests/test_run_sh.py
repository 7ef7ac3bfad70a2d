"""run.sh stage control on the tiny corpus: smoke run of stages 0-3, .done skipping, partial
ranges, option-change re-runs, resume after an interruption, loud failures, usage errors."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["0_prepare", "1_manifests", "2_features", "3_bpe"]


def run_sh(*args: str, script: str = "run.sh", timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / script), "--setup", "false", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def tiny_args(tmp: Path) -> list[str]:
    return ["--corpus-size", "tiny", "--data-dir", str(tmp / "data"), "--exp-dir",
            str(tmp / "exp")]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Stages 0-3 from nothing on the tiny corpus."""
    tmp = tmp_path_factory.mktemp("smoke")
    r = run_sh(*tiny_args(tmp), "--stop-stage", "3")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return tmp, r


def test_smoke_stages_0_to_3(smoke):
    from unique_asr.data.paths import RecipeData

    tmp, r = smoke
    data = tmp / "data"
    for st in STAGES:
        n, name = st.split("_")
        assert f"stage {n} ({name}): start" in r.stdout
        assert f"stage {n} ({name}): done in" in r.stdout
        assert (data / ".done" / f"stage{st}.done").is_file()
    rd = RecipeData(ROOT / "egs" / "synth_longform", data)
    for split in ("train", "dev", "test"):
        cuts = rd.load_cuts(split)
        assert len(cuts) >= 1
        cut = next(iter(cuts))
        assert cut.supervisions and cut.duration > 4
        feats = cut.load_features()
        assert feats.shape[1] == 80 and abs(feats.shape[0] - cut.num_frames) <= 1
    sp = rd.load_bpe(60)
    assert sp.get_piece_size() == 60
    assert sp.decode(sp.encode("the old stone bridge")) == "the old stone bridge"
    assert (data / "lang_bpe_60" / "tokens.txt").is_file()
    # the decoding LM's text: exactly the training transcripts (tiny adds no extra files)
    train_text = [s.text for c in rd.load_cuts("train") for s in c.supervisions]
    lm_lines = (data / "lang_bpe_60" / "lm_text.txt").read_text().splitlines()
    assert sorted(lm_lines) == sorted(train_text)
    assert (data / "fbank" / "global_stats_train.json").is_file()


def test_rerun_skips_everything_fast(smoke):
    tmp, _ = smoke
    cuts = tmp / "data" / "fbank" / "cuts_train.jsonl.gz"
    before = cuts.stat().st_mtime_ns
    t0 = time.time()
    r = run_sh(*tiny_args(tmp), "--stop-stage", "3")
    took = time.time() - t0
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("done already, skipping") == 4
    assert "start" not in r.stdout.replace("stages", "")
    assert cuts.stat().st_mtime_ns == before
    assert took < 10, f"re-run of finished stages took {took:.1f} s"


def test_partial_range_and_changed_options(smoke):
    tmp, _ = smoke
    data = tmp / "data"
    cuts = data / "fbank" / "cuts_train.jsonl.gz"
    before = cuts.stat().st_mtime_ns
    r = run_sh(*tiny_args(tmp), "--stage", "3", "--stop-stage", "3", "--",
               "data.lang.vocab_size=40")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "options changed" in r.stdout and "stage 3 (bpe): done in" in r.stdout
    assert "stage 2" not in r.stdout
    assert (data / "lang_bpe_40" / "bpe.model").is_file()
    assert cuts.stat().st_mtime_ns == before
    # a group override above a stage's keys (data= above data.lang) changes its options too
    r = run_sh(*tiny_args(tmp), "--stage", "3", "--stop-stage", "3", "--",
               "data.lang.vocab_size=40", "data=default")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "options changed" in r.stdout and "stage 3 (bpe): done in" in r.stdout
    # --force redoes a finished stage; only the selected one
    r = run_sh(*tiny_args(tmp), "--stage", "1", "--stop-stage", "1", "--force", "true")
    assert r.returncode == 0 and "stage 1 (manifests): done in" in r.stdout
    assert "stage 0" not in r.stdout and "stage 2" not in r.stdout


def test_resume_after_interruption(smoke, tmp_path):
    ref = smoke[0] / "data"
    args = tiny_args(tmp_path)
    # run.sh must take SIGINT even when this test runs in a background job, which starts with
    # SIGINT ignored: children inherit that and a bash started so cannot undo it, so a small
    # Python launcher restores the default and execs run.sh
    launch = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
              "os.execv(sys.argv[1], sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", launch, str(ROOT / "run.sh"), "--setup", "false",
                             *args, "--stop-stage", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    cache = tmp_path / "data" / "corpus" / "cache"
    deadline = time.time() + 120
    # interrupt early in the synthesis (the tiny corpus caches ~31 wavs: 18 voice calibrations,
    # ~13 utterances)
    while time.time() < deadline and len(list(cache.glob("*/*.wav"))) < 8:
        time.sleep(0.02)
    finished_before = proc.poll() is not None
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert not finished_before, "run.sh finished before the interruption:\n" + out[-3000:]
    assert proc.returncode != 0, out[-3000:]
    cached = sorted(p for p in cache.glob("*/*.wav"))
    assert cached, "nothing was cached before the interruption"
    kept = {p: p.stat().st_mtime_ns for p in cached}
    assert not (tmp_path / "data" / ".done" / "stage0_prepare.done").exists()
    assert not (tmp_path / "data" / "corpus" / "info.json").exists()
    for meta in (tmp_path / "data" / "corpus").glob("*/conv/*.json"):  # finished conversations
        audio = meta.parent.parent / "audio" / (meta.stem + ".flac")   # are complete
        assert abs(sf.info(audio).duration - json.loads(meta.read_text())["duration"]) < 1e-3

    r = run_sh(*args, "--stop-stage", "1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "stage 0 (prepare): start" in r.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items()), "cache was redone"
    for split in ("train", "dev", "test"):
        name = f"supervisions_{split}.jsonl.gz"
        assert sha(tmp_path / "data" / "manifests" / name) == sha(ref / "manifests" / name)
    for flac in (ref / "corpus").glob("*/audio/*.flac"):
        assert sha(tmp_path / "data" / "corpus" / flac.relative_to(ref / "corpus")) == sha(flac)


def test_failure_names_the_stage(tmp_path):
    r = run_sh(*tiny_args(tmp_path), "--stage", "1", "--stop-stage", "1")
    assert r.returncode != 0
    assert "stage 1 (manifests) FAILED" in r.stderr
    assert str(tmp_path / "data" / "corpus") in r.stderr  # the missing corpus dir is named
    assert not (tmp_path / "data" / ".done" / "stage1_manifests.done").exists()


@pytest.mark.parametrize("args", [["--bogus", "1"], ["--stage", "99"], ["--stage", "x"],
                                  ["stray"], ["--stage", "3", "--stop-stage", "1"],
                                  ["--corpus-size", "huge"], ["--recipe", "egs/no_such_corpus"]])
def test_bad_options_give_usage_and_fail(args):
    r = run_sh(*args, timeout=30)
    assert r.returncode != 0
    if args[0] != "--recipe":
        assert "Usage:" in r.stderr
    else:
        assert "egs/no_such_corpus" in r.stderr


def test_help_and_recipe_wrapper():
    r = run_sh("--help", timeout=30)
    assert r.returncode == 0 and "--stop-stage" in r.stdout and "0 prepare" in r.stdout
    r = run_sh("--help", script="egs/synth_longform/run.sh", timeout=30)
    assert r.returncode == 0 and "3 bpe" in r.stdout
    r = run_sh("--bogus", "1", script="egs/synth_longform/run.sh", timeout=30)
    assert r.returncode != 0 and "unknown option --bogus" in r.stderr
