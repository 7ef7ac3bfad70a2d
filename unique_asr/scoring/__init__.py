"""scoring package of unique_asr."""
