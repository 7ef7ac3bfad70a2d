"""data.user_inputs: every way of naming recordings gives cuts with the right ids, and every
problem is named with its file (and line), or skipped and listed with skip_bad."""

import gzip
import json

import numpy as np
import pytest
import soundfile as sf

from unique_asr.data.features import BadInputError
from unique_asr.data.user_inputs import resolve_inputs


def _wav(path, seconds=0.5, sr=16000, channels=1):
    x = 0.1 * np.random.default_rng(0).standard_normal((int(seconds * sr), channels))
    sf.write(path, x.astype("float32"), sr)
    return path


def test_files_globs_dirs_lists_and_manifests(tmp_path):
    from lhotse import Recording, RecordingSet

    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    _wav(d / "one.wav")
    _wav(d / "sub" / "two.flac", sr=44100, channels=2)
    (d / "notes.md").write_text("not audio")
    _wav(tmp_path / "three.ogg", sr=22050)
    _wav(tmp_path / "four.wav")
    (tmp_path / "wav.scp").write_text("spk1-utt four.wav\n# a comment\n\n")
    RecordingSet.from_recordings([Recording.from_file(_wav(tmp_path / "m.wav"), "five")]) \
        .to_file(tmp_path / "recordings.jsonl.gz")
    inputs = resolve_inputs([str(d), str(tmp_path / "*.ogg"), str(tmp_path / "wav.scp"),
                             str(tmp_path / "recordings.jsonl.gz"), str(d / "one.wav")])
    assert [c.id for c in inputs.cuts] == ["five", "one", "spk1-utt", "three", "two"]
    assert {c.id: c.num_channels for c in inputs.cuts}["two"] == 2
    assert not inputs.skipped


@pytest.mark.parametrize("make, problem", [
    (lambda p: p / "gone.wav", r"gone\.wav: no such file or directory"),
    (lambda p: (p / "empty.wav").write_bytes(b"") and None or p / "empty.wav",
     r"cannot read audio .*empty\.wav"),
    (lambda p: (p / "junk.flac").write_bytes(b"not audio at all") and None or p / "junk.flac",
     r"cannot read audio .*junk\.flac"),
    (lambda p: _wav(p / "silent.wav", seconds=0), r"silent\.wav is empty \(0 samples\)"),
    (lambda p: p / "*.opus", r"\*\.opus: no file matches"),
])
def test_bad_input_named_or_skipped(tmp_path, make, problem):
    good = _wav(tmp_path / "good.wav")
    bad = make(tmp_path)
    with pytest.raises(BadInputError, match=problem):
        resolve_inputs([str(good), str(bad)])
    inputs = resolve_inputs([str(good), str(bad)], skip_bad=True)
    assert [c.id for c in inputs.cuts] == ["good"]
    assert len(inputs.skipped) == 1 and inputs.skipped[0]["input"].endswith(bad.name)


def _manifest(tmp_path, edit):
    from lhotse import Recording

    d = Recording.from_file(_wav(tmp_path / "r.wav"), "r").to_dict()
    ok = dict(d, id="ok")
    edit(d)
    path = tmp_path / "recs.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(ok) + "\n" + json.dumps(d) + "\n")
    return path


@pytest.mark.parametrize("edit, problem", [
    (lambda d: d.update(source=d.pop("sources")), r"recording without the field 'sources'"),
    (lambda d: d.update(sampling_rate="fast"), r"field 'sampling_rate' is 'fast', expected int"),
    (lambda d: d.update(speaker="x"), r"recording with unknown fields \['speaker'\]"),
    (lambda d: d.update(type="MixedCut"), r"cut of type 'MixedCut'"),
    (lambda d: d.clear() or d.update(id="s", recording_id="r", start=0, duration=1),
     r"a supervision, not a recording or cut"),
])
def test_manifest_with_a_wrong_field(tmp_path, edit, problem):
    path = _manifest(tmp_path, edit)
    with pytest.raises(BadInputError, match=rf"recs\.jsonl\.gz:2: {problem}"):
        resolve_inputs([str(path)])
    inputs = resolve_inputs([str(path)], skip_bad=True)
    assert [c.id for c in inputs.cuts] == ["ok"]
    assert inputs.skipped[0]["input"] == f"{path}:2"


def test_duplicate_ids_and_no_inputs_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = _wav(tmp_path / "a" / "x.wav"), _wav(tmp_path / "b" / "x.wav")
    assert len(resolve_inputs([str(one), str(tmp_path / "a")]).cuts) == 1  # same file twice
    with pytest.raises(BadInputError, match=r"'x' is given twice: .*a/x\.wav and .*b/x\.wav"):
        resolve_inputs([str(one), str(two)], skip_bad=True)
    with pytest.raises(BadInputError, match="no inputs"):
        resolve_inputs([])
    (tmp_path / "l.scp").write_text("u1 sox in.wav -t wav - |\n")
    with pytest.raises(BadInputError, match=r"l\.scp:1: commands .* are not supported"):
        resolve_inputs([str(tmp_path / "l.scp")])
