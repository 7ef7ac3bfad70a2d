"""Text tokenizer of a pretrained LLM: a thin wrapper around `tokenizers.Tokenizer` with the
model's BOS/EOS ids, built from a Hugging Face tokenizer.json or from a GGUF vocabulary."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TextTokenizer:
    tokenizer: Any              # tokenizers.Tokenizer
    bos_id: int | None
    eos_id: int | None

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def get_piece_size(self) -> int:
        """vocab_size under sentencepiece's name, so training and decoding take either."""
        return self.vocab_size

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        """Token ids of `text` (no special tokens added by the tokenizer's post-processor, so the
        caller decides about BOS)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return ([self.bos_id] if add_bos and self.bos_id is not None else []) + ids

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special)

    def token_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)


def _special_id(tok, value) -> int | None:
    """A config's special-token entry (id, token string, or {"content": ...}) -> id."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        value = value.get("content")
    return tok.token_to_id(value)


def load_hf_tokenizer(directory: str | Path) -> TextTokenizer:
    """tokenizer.json of a Hugging Face model directory; BOS/EOS from config.json (ids) or else
    tokenizer_config.json (token strings)."""
    from tokenizers import Tokenizer

    d = Path(directory)
    path = d / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer.json not found in {d} (needed: the text tokenizer; "
                                "pass tokenizer=False to load the weights only)")
    tok = Tokenizer.from_file(str(path))
    ids: dict[str, int | None] = {"bos": None, "eos": None}
    for name in ("config.json", "tokenizer_config.json"):
        f = d / name
        if f.is_file():
            cfg = json.loads(f.read_text())
            for key in ("bos", "eos"):
                if ids[key] is None:
                    value = cfg.get(f"{key}_token_id", cfg.get(f"{key}_token"))
                    ids[key] = _special_id(tok, value[0] if isinstance(value, list) else value)
    return TextTokenizer(tok, ids["bos"], ids["eos"])
