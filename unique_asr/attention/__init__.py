"""attention package of unique_asr."""
