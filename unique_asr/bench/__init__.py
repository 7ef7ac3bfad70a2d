"""bench package of unique_asr."""
