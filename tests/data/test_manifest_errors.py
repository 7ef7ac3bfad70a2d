"""Clear answers to bad input in stage 1: missing or empty corpus directories name the path."""

from __future__ import annotations

import pytest

from unique_asr.data.manifests import build_manifests


def test_missing_or_empty_corpus_dir(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_manifests(missing, tmp_path / "m", ["train"])
    (tmp_path / "corpus" / "train" / "audio").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no audio .*corpus/train/audio"):
        build_manifests(tmp_path / "corpus", tmp_path / "m", ["train"])
