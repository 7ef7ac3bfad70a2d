"""bin package of unique_asr."""
