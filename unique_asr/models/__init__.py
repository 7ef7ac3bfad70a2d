"""Speech LLM model: conformer encoder, projector, LLaMA-style decoder (see speech_llm.py)."""

from unique_asr.models.checkpoint import CheckpointMismatchError, build_model, load_checkpoint
from unique_asr.models.config import ModelConfig
from unique_asr.models.speech_llm import SpeechLLM

__all__ = ["CheckpointMismatchError", "ModelConfig", "SpeechLLM", "build_model", "load_checkpoint"]
