"""The scoring files, the RESULTS.md row and the score entry point, on a hand-made run."""

import subprocess
import sys

import pytest

from unique_asr.scoring.files import alignment_lines
from unique_asr.scoring.hyps import hyps_path, meta_path, write_hyps, write_meta
from unique_asr.scoring.results import HEADER, append_row
from unique_asr.scoring.run import score_run
from unique_asr.scoring.speed import Speed

ROWS = [
    {"id": "rec2", "ref": "one two three four five six", "hyp": "one two three four five six"},
    {"id": "rec1", "ref": "A b c d.", "hyp": "a x c"},
    {"id": "rec3", "ref": "the cat sat", "hyp": "the cat sat down x"},
]
META = {
    "model": "tiny", "attention": "dense", "budget": 512, "method": "greedy",
    "command": "python -m unique_asr.bin.decode decode.method=greedy",
    "speed": Speed(audio_seconds=100.0, wall_seconds=4.0, step_seconds=2.0, tokens=50).to_dict(),
}


def _make_run(tmp_path):
    write_hyps(hyps_path(tmp_path, "test", "greedy"), ROWS)
    write_meta(meta_path(tmp_path, "test", "greedy"), META)


def test_files_and_row(tmp_path):
    _make_run(tmp_path)
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\nSome notes above the table.\n")
    score, paths = score_run(tmp_path, "test", "greedy", results_md=md)
    # rec1: 1 sub 1 del /4; rec2: 0/6; rec3: 2 ins /3 -> 4 / 13
    assert (score.sub, score.dels, score.ins, score.nref) == (1, 1, 2, 13)
    assert score.wer == pytest.approx(4 / 13)

    recogs = paths["recogs"].read_text().splitlines()
    assert paths["recogs"].name == "recogs-test-greedy.txt"
    assert recogs[:2] == ["rec1:\tref=a b c d", "rec1:\thyp=a x c"]  # normalised, sorted

    errs = paths["errs"].read_text()
    assert errs.startswith("%WER 30.77 [ 4 / 13, 2 ins, 1 del, 1 sub ]")
    assert "rec1  50.00  [ 2 / 4, 0 ins, 1 del, 1 sub ]" in errs
    assert "REF: a b c d\nHYP: a x c *\nOPS:   S   D" in errs
    assert "     1  b -> x" in errs and "     1  d" in errs and "     1  down" in errs

    summary = paths["wer-summary"].read_text().splitlines()
    assert summary[0].split("\t")[:2] == ["settings", "WER"]
    cells = summary[1].split("\t")
    assert cells[:6] == ["greedy", "30.77", "1", "1", "2", "13"]
    assert cells[8] == "25.00"  # RTFx = 100 s audio / 4 s wall
    assert cells[9] == "25.0"  # 50 tokens / 2 s of steps

    text = md.read_text()
    assert text.startswith("# Results\n\nSome notes above the table.\n")
    row = text.splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:7] == ["test", "tiny", "dense", "-", "greedy", "30.77"]  # dense: no budget
    assert cells[11] == "25.00"
    assert "decode.method=greedy" in cells[-1]


def test_errs_split_by_speaker_when_rows_carry_turns(tmp_path):
    rows = [{**r, "ref_turns": [["spk_a", r["ref"]]]} for r in ROWS]
    rows[0]["ref_turns"] = [["spk_a", "one two three"], ["spk_b", "four five six"]]
    write_hyps(hyps_path(tmp_path, "test", "greedy"), rows)
    write_meta(meta_path(tmp_path, "test", "greedy"), META)
    _, paths = score_run(tmp_path, "test", "greedy")
    errs = paths["errs"].read_text()
    assert "spk_a  40.00  [ 4 / 10, 2 ins, 1 del, 1 sub ]" in errs
    assert "spk_b  0.00  [ 0 / 3, 0 ins, 0 del, 0 sub ]" in errs
    # rows without turns (the hand-made run above): no per-speaker table
    _make_run(tmp_path)
    _, paths = score_run(tmp_path, "test", "greedy")
    assert "PER-SPEAKER" not in paths["errs"].read_text()


def test_skipped_recordings_reported(tmp_path):
    write_hyps(hyps_path(tmp_path, "test", "greedy"), ROWS)
    write_meta(meta_path(tmp_path, "test", "greedy"),
               {**META, "skipped": [{"id": "rec9", "error": "cut rec9: audio file x missing"}]})
    md = tmp_path / "RESULTS.md"
    score, paths = score_run(tmp_path, "test", "greedy", results_md=md)
    assert len(score.recordings) == 3
    assert "skipped 1 unreadable recordings" in paths["errs"].read_text().splitlines()[0]
    assert "| greedy, 1 skipped |" in md.read_text()


def test_rows_append_inside_table(tmp_path):
    md = tmp_path / "RESULTS.md"
    append_row(md, {"model": "m1", "attention": "unique", "budget": 256})
    md.write_text(md.read_text() + "\n## Notes after the table\n")
    append_row(md, {"model": "m2"})
    lines = md.read_text().splitlines()
    i = lines.index(HEADER)
    assert "m1" in lines[i + 2] and "unique" in lines[i + 2] and "256" in lines[i + 2]
    assert "m2" in lines[i + 3]
    assert lines[-1] == "## Notes after the table"
    with pytest.raises(KeyError, match="unknown RESULTS.md columns"):
        append_row(md, {"nope": 1})


def test_alignment_wraps_long_recordings():
    ops = [("C", "word", "word")] * 60
    lines = alignment_lines(ops, width=50)
    refs = [ln for ln in lines if ln.startswith("REF:")]
    assert len(refs) == 6 and all(len(ln) <= 55 for ln in refs)


def test_score_cli(tmp_path):
    _make_run(tmp_path)
    md = tmp_path / "RESULTS.md"
    cmd = [sys.executable, "-m", "unique_asr.bin.score", f"recipe_dir={tmp_path}",
           f"decode.out_dir={tmp_path}", "decode.sets=[test]", "decode.tag=greedy",
           f"decode.results_md={md}"]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "WER 30.77%" in res.stdout + res.stderr
    assert (tmp_path / "wer-summary-test-greedy.txt").exists()
    assert "| 30.77 |" in md.read_text()


def test_score_cli_missing_hyps(tmp_path):
    cmd = [sys.executable, "-m", "unique_asr.bin.score", f"recipe_dir={tmp_path}",
           f"decode.out_dir={tmp_path}", "decode.sets=[test]", "decode.tag=nothing"]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "hyps-test-nothing.jsonl" in res.stderr and "run decoding first" in res.stderr
