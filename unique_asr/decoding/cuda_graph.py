"""Decode steps captured in CUDA graphs (decode.cuda_graphs).

Why: one decode step of the whole decoder launches a few hundred small kernels (per layer:
norms, projections, RoPE, the K/V write, page statistics, scores, top-k, attention), and at
decoding's small batches the host issuing them sets the step time. A CUDA graph replays the
recorded kernels with one launch, but on fixed addresses with fixed shapes and without the host
in between. So the step is split in two by the cache's step view (models/attention.py,
`step_view`): the host part (checks, page allocation, lengths bookkeeping) runs before the
replay and writes its results into buffers made once; the device part (embedding, layers, K/V
writes, page statistics, scores, top-k, attention, LM head) reads only those buffers and the
cache's own tensors, and is what the graph holds.

GraphedStep(decoder, cache)(tokens) is model.decode_step(tokens, cache) run that way. Graphs
are kept per (batch size, the view's shape key): rows dropped from the batch or a refilled
continuous-batching slot pick (or capture) the graph of their batch size, and a cache that
replaced its tensors (DenseKVCache.reorder, a paged pool's growth: `storage_version`) drops
every graph. On CPU, or with graphs=False, the same split runs eagerly (what the tests
exercise).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)
_noted_off_cuda = False


class GraphedStep:
    """`decoder`'s decode step over `cache` (a decode cache of models/attention.py), split into
    host and device parts, the device part captured in CUDA graphs.

    graphs: capture and replay (default: when the cache is on CUDA). static: fixed shapes in the
    device part (default: graphs); without it the step is numerically today's decode_step.
    Calling returns the next-token logits [B, vocab] float32 and advances the cache; with
    graphs they are the graph's output buffer, overwritten by the next call.
    """

    def __init__(self, decoder, cache, graphs: bool | None = None, static: bool | None = None):
        on_cuda = cache.lens.device.type == "cuda"
        self.graphs = on_cuda if graphs is None else bool(graphs)
        self.static = self.graphs if static is None else bool(static)
        if self.graphs and not (on_cuda and self.static):
            raise ValueError("GraphedStep: CUDA graphs need a cache on a CUDA device and "
                             "static=True")
        self.decoder, self.cache = decoder, cache
        self._views: dict[int, tuple] = {}  # batch -> (step view, static tokens [B])
        self._graphs: dict[tuple, tuple] = {}  # (batch, view key) -> (graph, static logits)
        self._version = cache.storage_version
        self._pool = None  # one memory pool for all graphs (each output is read before the next)
        self._stream = None  # side stream of the eager run before a capture
        self.captures = 0  # graphs captured so far

    def _view(self, batch: int):
        if batch not in self._views:
            tokens = torch.zeros(batch, dtype=torch.long, device=self.cache.lens.device)
            self._views[batch] = (self.cache.step_view(batch, self.static), tokens)
        return self._views[batch]

    def device_step(self, view, tokens: torch.Tensor) -> torch.Tensor:
        """The device part (what a graph captures): logits of `tokens` through `view`."""
        return self.decoder.step_logits(tokens, view.positions, view)

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.cache.storage_version != self._version:  # graphs would write freed tensors
            self._graphs.clear()
            # the pool dies with its last graph: capturing into its handle again trips the
            # allocator's use_count assertion, so the next capture takes a new pool
            self._pool = None
            self._version = self.cache.storage_version
        batch = tokens.shape[0]
        view, static_tokens = self._view(batch)
        key = (batch, view.prepare())  # host part
        if not self.graphs:
            logits = self.device_step(view, tokens)
        else:
            static_tokens.copy_(tokens)
            if key in self._graphs:
                graph, logits = self._graphs[key]
                graph.replay()
            else:
                logits = self._capture(key, view, static_tokens)
        self.cache.advance(1)
        return logits

    def _capture(self, key: tuple, view, tokens: torch.Tensor) -> torch.Tensor:
        """Run this step eagerly on a side stream (loading and compiling its kernels; it has
        side effects, so it is the step itself), then capture the device part for the steps
        to come (capturing runs nothing). Returns this step's logits."""
        if not view.capturable:
            raise ValueError("decode.cuda_graphs: decode.sparse.impl=reference reads lengths on "
                             "the host and cannot be captured; use decode.sparse.impl=auto or "
                             "triton, or decode.cuda_graphs=false")
        cur = torch.cuda.current_stream()
        if self._stream is None:
            self._stream = torch.cuda.Stream()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        self._stream.wait_stream(cur)
        with torch.cuda.stream(self._stream):
            logits = self.device_step(view, tokens)
        cur.wait_stream(self._stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = self.device_step(view, tokens)
        self._graphs[key] = (graph, out)
        self.captures += 1
        log.debug("decode.cuda_graphs: captured the step of key %s (%d graphs)", key,
                  len(self._graphs))
        return logits


def decode_stepper(model, cache, cuda_graphs: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The decoding loops' step, tokens [B] -> logits [B, vocab]: model.decode_step(tokens,
    cache), or with cuda_graphs and a cache on CUDA a GraphedStep of model.decoder (its logits
    are overwritten by the next step). Off CUDA cuda_graphs is ignored, said once per process."""
    global _noted_off_cuda
    if cuda_graphs:
        if cache.lens.device.type == "cuda":
            return GraphedStep(model.decoder, cache)
        if not _noted_off_cuda:
            log.info("decode.cuda_graphs=true is ignored on %s: decode steps run eagerly",
                     cache.lens.device.type)
            _noted_off_cuda = True
    return lambda tokens: model.decode_step(tokens, cache)
