"""decoding package of unique_asr."""
