"""Stage 3: sentencepiece BPE trained on the training transcripts.

Output <data_dir>/lang_bpe_<N>/: bpe.model, bpe.vocab, tokens.txt (piece id per line),
transcript_words.txt (the training text) and lm_text.txt (the text of the decoding n-gram LM:
the training text plus optional extra sentences, none of them a dev or test sentence). The
vocabulary size is a soft limit (hard_vocab_limit=false) so tiny corpora still train.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .atomic import write_text

log = logging.getLogger(__name__)


def train_bpe(supervisions_path: str | Path, lang_dir: str | Path, vocab_size: int,
              model_type: str = "bpe", character_coverage: float = 1.0) -> dict:
    """Train the sentencepiece model into lang_dir (built in a temp dir, then renamed).

    sentencepiece BPE training is deterministic for a given input, so no seed is needed."""
    import sentencepiece as spm
    from lhotse import SupervisionSet

    supervisions_path, lang_dir = Path(supervisions_path), Path(lang_dir)
    if not supervisions_path.is_file():
        raise FileNotFoundError(f"{supervisions_path} not found: run stage 1 (manifests) first")
    texts = [s.text for s in SupervisionSet.from_file(supervisions_path) if s.text]
    if not texts:
        raise ValueError(f"{supervisions_path} holds no transcripts")
    tmp = lang_dir.with_name(f".tmp.{lang_dir.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    words = tmp / "transcript_words.txt"
    write_text(words, "\n".join(texts) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(words), model_prefix=str(tmp / "bpe"), vocab_size=int(vocab_size),
        model_type=model_type, character_coverage=character_coverage, hard_vocab_limit=False,
        unk_id=0, bos_id=-1, eos_id=-1, input_sentence_size=10_000_000, num_threads=1,
        minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(tmp / "bpe.model"))
    write_text(tmp / "tokens.txt",
               "".join(f"{sp.id_to_piece(i)} {i}\n" for i in range(sp.get_piece_size())))
    if lang_dir.exists():
        shutil.rmtree(lang_dir)
    tmp.rename(lang_dir)
    info = {"vocab_size": sp.get_piece_size(), "sentences": len(texts), "lang_dir": str(lang_dir)}
    log.info("BPE: %d pieces from %d sentences -> %s", info["vocab_size"], len(texts), lang_dir)
    return info


def write_lm_text(lang_dir: str | Path, train_texts: list[str], extra: list[str],
                  held_out: set[str]) -> dict:
    """lang_dir/lm_text.txt: the training transcripts, then the `extra` sentences that are not
    among them and not in `held_out` (the dev and test transcripts: an LM that has read a test
    sentence would flatter WER). One sentence per line; decoding builds its n-gram from it
    (unique_asr/decoding/ngram_lm.py)."""
    known = set(train_texts)
    added = [x for x in dict.fromkeys(extra) if x not in known and x not in held_out]
    path = Path(lang_dir) / "lm_text.txt"
    write_text(path, "\n".join(list(train_texts) + added) + "\n")
    info = {"lm_text": str(path), "train_sentences": len(train_texts), "extra_sentences": len(added),
            "extra_dropped_held_out": sum(1 for x in set(extra) if x in held_out)}
    log.info("LM text: %d training + %d extra sentences (%d extra dropped: dev/test text) -> %s",
             len(train_texts), len(added), info["extra_dropped_held_out"], path)
    return info
