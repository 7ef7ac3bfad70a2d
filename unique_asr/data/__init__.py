"""data package of unique_asr."""
