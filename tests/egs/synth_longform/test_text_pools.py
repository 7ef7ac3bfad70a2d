"""Text pools with extra files (corpus.text.extra_files, used by the `large` size): the extra
sentences go to the listed splits only, the other pools stay the base ones sentence for sentence,
and no sentence is in two splits. Small fake fortune files, so CI needs no `fortunes` package."""

from __future__ import annotations

import itertools

import pytest
from synth_corpus.corpus import _check_disjoint, text_pools

ADJ = ["red", "quiet", "happy", "old", "tiny", "brave", "lazy", "green", "loud", "clever"]
NOUN = ["cat", "farmer", "river", "teacher", "robot", "garden", "pilot", "kettle", "dragon"]
VERB = ["sings", "waits", "sleeps", "dances", "wanders", "laughs", "listens", "grows"]


def _sentences(n: int, tag: str) -> list[str]:
    combos = itertools.product(ADJ, NOUN, VERB)
    return [f"The {a} {b} {tag} {v} today." for (a, b, v), _ in zip(combos, range(n))]


def _write(path, sentences: list[str]) -> None:
    path.write_text("".join(f"{s}\n%\n" for s in sentences))


@pytest.fixture()
def text_cfg(tmp_path):
    """Base files of 3 x 40 sentences, extra files of 2 x 150, one extra file repeating
    sentences of the base files (some end up in the test pool)."""
    base, extra = tmp_path / "base", tmp_path / "extra"
    base.mkdir()
    extra.mkdir()
    names = ["fortunes", "literature", "riddles"]
    base_sents = _sentences(120, "slowly")
    for i, name in enumerate(names):
        _write(base / name, base_sents[40 * i:40 * (i + 1)])
    _write(extra / "cookie", _sentences(150, "often"))
    _write(extra / "wisdom", _sentences(150, "rarely")[:100] + base_sents)
    cfg = {"fortune_dir": str(base), "files": names, "min_words": 3, "max_words": 30,
           "split_fractions": {"train": 0.75, "dev": 0.10, "test": 0.15}}
    extra_cfg = dict(cfg, extra_files=["cookie", "wisdom"], extra_fortune_dir=str(extra),
                     extra_package="fortunes", extra_splits=["train", "dev"])
    return cfg, extra_cfg


def test_extra_text_only_enlarges_train_and_dev(text_cfg):
    cfg, extra_cfg = text_cfg
    base = text_pools(cfg, seed=7)
    big = text_pools(extra_cfg, seed=7)
    assert {k: len(v) for k, v in base.items()} == {"train": 90, "dev": 12, "test": 18}
    # test: the base pool, same sentences in the same order (its plan is then the same)
    assert big["test"] == base["test"]
    # train and dev: the base pool first, then the 250 new extra sentences, cut 75:10
    for split in ("train", "dev"):
        assert big[split][:len(base[split])] == base[split]
    added = {s: big[s][len(base[s]):] for s in ("train", "dev")}
    assert len(added["train"]) + len(added["dev"]) == 250
    assert len(added["dev"]) == round(250 * 0.10 / 0.85)
    assert all(" slowly " not in x for x in added["train"] + added["dev"])  # no base repeats
    assert sum(" often " in x for x in added["train"]) > 100
    assert sum(" rarely " in x for x in added["dev"]) > 0
    # disjoint splits: in particular the extra file's copies of test sentences stay out
    train_dev = set(big["train"]) | set(big["dev"])
    assert not set(big["test"]) & train_dev
    assert len(set(big["train"]) & set(big["dev"])) == 0
    # deterministic from the seed, and the seed matters
    assert text_pools(extra_cfg, seed=7) == big
    assert text_pools(extra_cfg, seed=8)["train"] != big["train"]


def test_missing_extra_file_names_file_and_package(text_cfg):
    _, extra_cfg = text_cfg
    cfg = dict(extra_cfg, extra_files=["cookie", "startrek"])
    with pytest.raises(FileNotFoundError) as err:
        text_pools(cfg, seed=7)
    msg = str(err.value)
    assert "startrek" in msg and "apt-get install -y fortunes" in msg
    assert "fortunes-min" not in msg


@pytest.mark.parametrize("splits", [[], ["train", "eval"], ["train", "train"]])
def test_bad_extra_splits_rejected(text_cfg, splits):
    _, extra_cfg = text_cfg
    with pytest.raises(ValueError, match="extra_splits"):
        text_pools(dict(extra_cfg, extra_splits=splits), seed=7)


def test_overlapping_pools_rejected():
    _check_disjoint({"train": ["a b c", "d e f"], "test": ["g h i"]})
    with pytest.raises(ValueError, match="'d e f' is in train and test"):
        _check_disjoint({"train": ["a b c", "d e f"], "test": ["d e f"]})


def _write_wordnet(d, examples: list[str]) -> None:
    """A fake WordNet: licence header lines (two leading spaces), then synset lines whose glosses
    (after ' | ') quote the examples, spread over the four data files."""
    d.mkdir()
    for i, name in enumerate(["data.noun", "data.verb", "data.adj", "data.adv"]):
        lines = ['  1 "This header line is not an example sentence at all"']
        lines += [f'{j:08d} 03 n 01 word 0 000 | a gloss; "{x}"'
                  for j, x in enumerate(examples[i::4])]
        (d / name).write_text("\n".join(lines) + "\n")


def test_wordnet_examples_read_and_filtered(tmp_path):
    from unique_asr.data.text_source import load_wordnet_examples

    _write_wordnet(tmp_path / "wn", ["He ate a big breakfast", "the USA is big and wide",
                                     "two words", "she said: no more", "He ate a big breakfast",
                                     "they heard a live rendition of three pieces"])
    assert load_wordnet_examples(tmp_path / "wn") == [
        "he ate a big breakfast", "they heard a live rendition of three pieces"]
    with pytest.raises(FileNotFoundError, match="apt-get install -y wordnet-base"):
        load_wordnet_examples(tmp_path / "nowhere")


def test_distinct_train_text_never_has_dev_or_test(text_cfg, tmp_path):
    """The distinct preset's text: extra fortune files and WordNet examples to train only; the
    extra text repeats base sentences (so some are dev/test ones), none of which reaches train."""
    cfg, extra_cfg = text_cfg
    base = text_pools(cfg, seed=7)
    wn_text = _sentences(80, "softly") + base["test"][:5] + base["dev"][:3]
    _write_wordnet(tmp_path / "wn", wn_text)
    pools = text_pools(dict(extra_cfg, extra_splits=["train"], wordnet_dir=str(tmp_path / "wn"),
                            distinct_train=True), seed=7)
    assert pools["dev"] == base["dev"] and pools["test"] == base["test"]
    assert not (set(pools["dev"]) | set(pools["test"])) & set(pools["train"])
    assert len(pools["train"]) == len(set(pools["train"])) == 90 + 250 + 80
    assert sum(" softly " in x for x in pools["train"]) == 80


def test_distinct_pool_serves_each_sentence_once():
    import numpy as np
    from synth_corpus.corpus import _Pool

    sentences = [f"sentence number {i}" for i in range(20)]
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    once, reused = _Pool(sentences, "train", once=True), _Pool(sentences, "train")
    first = [once.next(rng_a) for _ in range(20)]
    assert sorted(first) == sorted(sentences)              # every sentence, none twice
    assert first == [reused.next(rng_b) for _ in range(20)]  # the same first pass either way
    assert reused.next(rng_b) in sentences                 # without the option: a second pass
    with pytest.raises(ValueError, match=r"distinct_train: the train text pool's 20 sentences"):
        once.next(rng_a)
