"""unique_asr: long-form speech recognition with UNIQUE top-k page-sparse attention."""

__version__ = "0.1.0"
