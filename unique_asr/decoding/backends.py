"""Decode-time attention backends: which names exist, which work now, and the cache they get.

`decode.attention` picks how the decoder attends over the KV cache while generating; prefill is
always dense (METHOD.md). The names are fixed by the design; a backend works once the model's
cache registry (unique_asr.models.attention.CACHE_BACKENDS) provides it. Asking for one that is
not there yet is an error that says so, never a silent fall-back to dense.
"""

from __future__ import annotations

# paged_dense: dense attention through the paged cache (a check of the sparse path's plumbing)
ATTENTION_NAMES = ("dense", "unique", "quest", "meanonly", "oracle", "paged_dense")


class BackendUnavailableError(RuntimeError):
    """The requested decode attention backend is unknown or not wired in yet."""


def available_backends() -> tuple[str, ...]:
    """Names the model's cache registry provides now (dense at least)."""
    try:
        from unique_asr.models.attention import CACHE_BACKENDS
    except ImportError:
        return ("dense",)
    return tuple(n for n in ATTENTION_NAMES if n in CACHE_BACKENDS) or ("dense",)


def check_attention(name: str, budget: int | None, available: tuple[str, ...] | None = None):
    """Validate decode.attention and decode.budget before any work is done."""
    if name not in ATTENTION_NAMES:
        raise BackendUnavailableError(
            f"decode.attention={name!r} is unknown; choose one of {', '.join(ATTENTION_NAMES)}"
        )
    avail = available if available is not None else available_backends()
    if name not in avail:
        raise BackendUnavailableError(
            f"decode.attention={name!r} is not available yet (the attention library is not "
            f"wired into the model's KV cache); available now: {', '.join(avail)}. "
            "Use decode.attention=dense."
        )
    if name != "dense" and (budget is None or int(budget) <= 0):
        raise ValueError(
            f"decode.attention={name} needs a positive token budget: set decode.budget=N "
            f"(got {budget!r})"
        )


def new_cache(model, batch: int, max_len: int, device, attention: str, budget: int | None):
    """The model's KV cache for `batch` sequences of up to `max_len` tokens.

    Sparse backends read their token budget from model.cfg.attention_cfg (interface_model.md),
    so it is set there first; the dense cache ignores it.
    """
    if attention != "dense":
        model.cfg.attention_cfg = {**dict(model.cfg.attention_cfg or {}), "budget": int(budget)}
    return model.new_cache(batch, max_len, device, backend=attention)
