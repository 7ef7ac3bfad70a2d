"""models package of unique_asr."""
