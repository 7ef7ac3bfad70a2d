"""decoding package of unique_asr: generation loop, long-form splitting, test-set decoding."""

from unique_asr.decoding.generate import beam_search, greedy_decode, greedy_search

__all__ = ["beam_search", "greedy_decode", "greedy_search"]
