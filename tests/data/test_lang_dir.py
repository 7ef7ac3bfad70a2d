"""Stage 3's vocabularies: BPE (lang_bpe_<N>) or characters (lang_char), found by the same call
that training and decoding use."""

from __future__ import annotations

import pytest
from lhotse import SupervisionSegment, SupervisionSet

from unique_asr.data.bpe import train_bpe
from unique_asr.data.paths import RecipeData


def test_lang_dir_names(tmp_path):
    rd = RecipeData(tmp_path, tmp_path / "data")
    assert rd.lang_dir(500).name == "lang_bpe_500"
    assert rd.lang_dir(256, "unigram").name == "lang_unigram_256"
    assert rd.lang_dir(500, "char").name == "lang_char"
    assert rd.bpe_model_path(0, "char") == tmp_path / "data" / "lang_char" / "bpe.model"


def test_char_vocabulary_round_trip(tmp_path):
    texts = ["stay away from flying saucers today", "never be led astray", "a quiet day"]
    sups = SupervisionSet.from_segments(
        SupervisionSegment(id=f"s{i}", recording_id=f"r{i}", start=0, duration=1, text=t)
        for i, t in enumerate(texts))
    path = tmp_path / "supervisions_train.jsonl.gz"
    sups.to_file(path)
    rd = RecipeData(tmp_path, tmp_path / "data")
    info = train_bpe(path, rd.lang_dir(500, "char"), 500, "char")
    sp = rd.load_bpe(500, "char")
    chars = set("".join(texts).replace(" ", ""))
    assert info["vocab_size"] == sp.get_piece_size() <= len(chars) + 4  # chars + unk/space marks
    ids = sp.encode(texts[0])
    assert sp.decode(ids) == texts[0]
    assert all(len(sp.id_to_piece(i).lstrip("\u2581")) <= 1 for i in ids)
    with pytest.raises(FileNotFoundError, match="data.lang.model_type=bpe"):
        rd.load_bpe(500)


def test_lm_text_adds_extra_sentences_but_never_a_held_out_one(tmp_path):
    from unique_asr.data.bpe import write_lm_text

    info = write_lm_text(tmp_path, ["a b c", "d e"], ["x y", "a b c", "dev sentence", "x y", "z"],
                         held_out={"dev sentence", "test sentence"})
    lines = (tmp_path / "lm_text.txt").read_text().splitlines()
    assert lines == ["a b c", "d e", "x y", "z"]           # training text first, no repeats added
    assert info["extra_sentences"] == 2 and info["extra_dropped_held_out"] == 1
