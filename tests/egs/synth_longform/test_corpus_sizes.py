"""The `large` corpus is scored on the default corpus's test set (issue 3): its test split must be
the default test split, recording for recording and sample for sample. Two checks:
- config: large.yaml changes only train and dev; everything the test split is made from
  (seed, base text, dev/test voices, test settings, mixing ranges, split order) equals default.yaml's,
  and large's extra text (the full `fortunes` package) goes to train and dev only;
- behaviour: the test split does not depend on train/dev (its random stream, text pool and voice
  usage are its own) nor on extra train/dev text, shown on the tiny size by building it with
  train/dev, then without train/dev but with extra text files.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from unique_asr.config import compose

RECIPE = Path(__file__).resolve().parents[3] / "egs" / "synth_longform"


def _corpus(size: str, *extra: str) -> dict:
    cfg = compose([f"recipe_dir={RECIPE}", f"corpus={size}",
                   f"hydra.searchpath=[file://{RECIPE}/conf]", *extra])
    return OmegaConf.to_container(cfg.corpus, resolve=True)


def test_large_test_split_config_is_default():
    default, large = _corpus("default"), _corpus("large")
    assert large["size"] == "large"
    assert list(large["splits"]) == list(default["splits"]) == ["train", "dev", "test"]
    assert large["splits"]["test"] == default["splits"]["test"]
    # large is bigger where it should be
    assert large["splits"]["train"]["target_s"] >= 9 * default["splits"]["train"]["target_s"]
    assert large["splits"]["dev"]["target_s"] > default["splits"]["dev"]["target_s"]
    # large's only text change: extra files for train and dev (default and tiny have none)
    extra = {k: large["text"].pop(k) for k in list(large["text"]) if k.startswith("extra_")}
    assert extra["extra_splits"] == ["train", "dev"] and extra["extra_package"] == "fortunes"
    assert len(extra["extra_files"]) >= 30 and "art" not in extra["extra_files"]
    assert not any(k.startswith("extra_") for k in default["text"])
    assert not any(k.startswith("extra_") for k in _corpus("tiny")["text"])
    # large has more train voices (a superset of default's); dev and test voices are default's
    assert large["voices"]["test"] == default["voices"]["test"]
    assert large["voices"]["dev"] == default["voices"]["dev"]
    assert all(v in large["voices"]["train"] for v in default["voices"]["train"])
    assert len(large["voices"]["train"]) > len(default["voices"]["train"])
    rest = {k: v for k, v in large.items() if k not in ("size", "splits", "voices")}
    assert rest == {k: v for k, v in default.items() if k not in ("size", "splits", "voices")}


def _test_split_digest(out) -> dict[str, str]:
    files = sorted((out / "test" / "audio").glob("*.flac")) + [out / "test" / "segments.jsonl"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_test_split_independent_of_train_and_dev(tmp_path):
    from synth_corpus.corpus import CorpusBuilder

    full = tmp_path / "full"
    CorpusBuilder(_corpus("tiny"), full, num_workers=2).build()
    # test only (no train/dev conversations, other train/dev lengths, extra train/dev text
    # the way large has it, from a small fake file), synthesis cache reused
    only = tmp_path / "test_only"
    shutil.copytree(full / "cache", only / "cache")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "cookie").write_text("".join(f"Extra sentence number {i} for training.\n%\n"
                                          for i in range(50)))
    cfg = _corpus("tiny", "corpus.splits.train.target_s=0", "corpus.splits.dev.target_s=0",
                  "corpus.splits.train.conv_min_s=3", "corpus.splits.dev.conv_max_s=9",
                  "++corpus.text.extra_files=[cookie]", f"++corpus.text.extra_fortune_dir={extra}",
                  "++corpus.text.extra_splits=[train,dev]")
    info = CorpusBuilder(cfg, only, num_workers=2).build()
    assert info["splits"]["train"]["recordings"] == 0 and info["splits"]["dev"]["recordings"] == 0
    a, b = _test_split_digest(full), _test_split_digest(only)
    assert len(a) >= 3 and a == b


def test_distinct_config_changes_train_only():
    """corpus=distinct: distinct train text (extra text to train only) and the hibari voice in
    train; dev and test exactly the default's, so their recordings are the default's. The other
    sizes keep the reused train pool."""
    default, distinct = _corpus("default"), _corpus("distinct")
    assert distinct["text"]["distinct_train"] is True and distinct["text"]["wordnet_dir"]
    assert distinct["text"]["extra_splits"] == ["train"]
    for size in ("tiny", "default", "large"):
        text = _corpus(size)["text"]
        assert text["distinct_train"] is False and text["wordnet_dir"] is None
    assert {k: distinct["splits"][k] for k in ("dev", "test")} == \
        {k: default["splits"][k] for k in ("dev", "test")}
    assert {k: distinct["voices"][k] for k in ("dev", "test")} == \
        {k: default["voices"][k] for k in ("dev", "test")}
    train = distinct["voices"]["train"]
    assert all(v in train for v in default["voices"]["train"])
    assert {v["name"] for v in train if v["engine"] == "hibari"} == {"heart"}
    rest = {k: v for k, v in distinct.items() if k not in ("size", "splits", "voices", "text")}
    assert rest == {k: v for k, v in default.items()
                    if k not in ("size", "splits", "voices", "text")}


def test_distinct_text_pools_on_the_packaged_text():
    """The real distinct text (fortunes-min, fortunes, wordnet-base; ~2 s): no dev or test
    sentence in train, no train sentence twice, dev and test pools the default's."""
    from synth_corpus.corpus import text_pools

    cfg = _corpus("distinct")
    needed = [Path(cfg["text"]["fortune_dir"]) / "cookie",
              Path(cfg["text"]["wordnet_dir"]) / "data.noun"]
    if not all(p.is_file() for p in needed):
        pytest.skip("needs Debian's fortunes and wordnet-base: "
                    "apt-get install fortunes wordnet-base")
    pools = text_pools(cfg["text"], cfg["seed"])
    base = text_pools(_corpus("default")["text"], cfg["seed"])
    assert pools["dev"] == base["dev"] and pools["test"] == base["test"]
    train = pools["train"]
    assert len(train) == len(set(train)) > 50000
    assert not set(train) & (set(pools["dev"]) | set(pools["test"]))
