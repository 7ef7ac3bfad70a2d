"""triton package of unique_asr."""
