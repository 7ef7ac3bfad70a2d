"""decoding/cuda_graph.py and the caches' step views: a decode step split into a host part and
a device part equals model.decode_step (exactly; with fixed shapes to float rounding, same
tokens) for the dense and the paged caches, over steps with rows dropped, reordered and
refilled; the device part reads no host value (a guard that fails on any such read, and is shown
to fail); the greedy loops give the same transcripts through it. The CUDA graph capture and
replay themselves are tested where CUDA is (skipped here otherwise)."""

import contextlib
import os
import threading

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from unique_asr.attention.api import SparseConfig
from unique_asr.decoding import cuda_graph
from unique_asr.decoding.config import DecodeConfig
from unique_asr.decoding.cuda_graph import GraphedStep
from unique_asr.decoding.engine import continuous_greedy
from unique_asr.decoding.generate import greedy_search
from unique_asr.models import ModelConfig, build_model
from unique_asr.models.attention import DenseKVCache, DenseStepView, SlotRows

INTERP = os.environ.get("TRITON_INTERPRET") == "1"
CUDA = torch.cuda.is_available()
needs_interp = pytest.mark.skipif(not INTERP, reason="Triton on CPU needs TRITON_INTERPRET=1")
needs_cuda = pytest.mark.skipif(not CUDA, reason="CUDA graphs need a GPU")

LENS = [30, 9, 21]
SPARSE = {
    "dense": SparseConfig(),
    "unique-above-context": SparseConfig("unique", 1024),
    "unique-16": SparseConfig("unique", 16),  # 2 of up to 7 pages
    "quest-16": SparseConfig("quest", 16),
}
TRITON = {
    "unique-16-triton": SparseConfig("unique", 16, impl="triton"),
    "quest-16-triton": SparseConfig("quest", 16, impl="triton"),
    "unique-16-fp8-triton": SparseConfig("unique", 16, impl="triton", stats_dtype="fp8"),
    "unique-above-context-triton": SparseConfig("unique", 1024, impl="triton"),
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(ModelConfig(n_text=40)).eval()
    with torch.no_grad():  # larger weights: tokens depend on the audio and the history
        for p in m.decoder.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return m


def _audio(model, lens=LENS, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor(lens)
    emb = torch.randn(len(lens), int(lens.max()), model.cfg.llm.dim, generator=g) * 2
    return emb.to(device), lens.to(device)


def _steps(model, sparse, make_step=None, device="cpu"):
    """Teacher-forced logits of 12 decode steps over 3 rows: row 1 dropped and the rows swapped
    after step 3, row 0 refilled with a new recording (continuous batching) after step 7.
    make_step(cache) -> step(tokens) (None: model.decode_step). Returns (logits per step, the
    step)."""
    emb, lens = _audio(model, device=device)
    new_emb, new_lens = _audio(model, [17], seed=1, device=device)
    toks = torch.randint(0, 40, (12, 3), generator=torch.Generator().manual_seed(2)).to(device)
    out = []
    with torch.inference_mode():
        cache = model.new_cache(3, 60, device, sparse=sparse)
        model.prefill(emb, lens, cache)
        step = make_step(cache) if make_step else (lambda t: model.decode_step(t, cache))
        for t in range(12):
            if t == 4:
                cache.reorder(torch.tensor([2, 0], device=device))
            if t == 8:
                model.prefill(new_emb, new_lens, SlotRows(cache, torch.tensor([0])))
            out.append(step(toks[t, : cache.lens.shape[0]]).clone())
    return out, step


def _eager_split(model, static):
    return lambda cache: GraphedStep(model.decoder, cache, graphs=False, static=static)


def _assert_same_tokens(got, want):
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g.argmax(-1), w.argmax(-1))
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5 * float(w.abs().max()))


@pytest.mark.parametrize("sparse", [pytest.param(s, id=k) for k, s in SPARSE.items()]
                         + [pytest.param(s, id=k, marks=needs_interp) for k, s in TRITON.items()])
def test_split_step_equals_decode_step(model, sparse, monkeypatch):
    """The host + device split run eagerly gives decode_step's logits exactly; with fixed shapes
    (what a graph captures: the dense span rounded up, here to 32 tokens so that it grows during
    the run; every page slot of the paged rows scored) the same tokens and logits to rounding."""
    want, _ = _steps(model, sparse)
    got, _ = _steps(model, sparse, _eager_split(model, static=False))
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    monkeypatch.setattr(DenseKVCache, "STATIC_SPAN", 32)
    keys = []
    orig = GraphedStep.device_step

    def spy(self, view, tokens):
        keys.append(view._span if isinstance(view, DenseStepView) else view.rows)
        return orig(self, view, tokens)

    monkeypatch.setattr(GraphedStep, "device_step", spy)
    static, _ = _steps(model, sparse, _eager_split(model, static=True))
    _assert_same_tokens(static, want)
    if sparse.method == "dense":  # masked spans of 32 and then 64 tokens (max_len 60 caps it)
        assert set(keys) == {(32, True), (60, True)}


# ------------------------------------------------------------------ no host reads in the device part
class HostRead(AssertionError):
    """The device part of a step read a tensor on the host or made a data-dependent shape."""


_aten = torch.ops.aten
_FORBIDDEN = {
    _aten._local_scalar_dense.default: "a tensor read on the host (.item(), int(), bool())",
    _aten.item.default: "a tensor read on the host (.item(), int())",
    _aten.is_nonzero.default: "a tensor read on the host (bool())",
    _aten.equal.default: "torch.equal (a host read)",
    _aten.nonzero.default: "nonzero (data-dependent shape)",
    _aten.masked_select.default: "masked_select (data-dependent shape)",
    _aten._unique2.default: "torch.unique (data-dependent shape)",
    _aten.unique_dim.default: "torch.unique (data-dependent shape)",
    _aten.unique_consecutive.default: "torch.unique_consecutive (data-dependent shape)",
    _aten.repeat_interleave.Tensor: "repeat_interleave by a tensor (data-dependent shape)",
    _aten.lift_fresh.default: "torch.tensor of host data (a host-to-device copy)",
}
_INDEXING = {_aten.index.Tensor, _aten.index_put_.default, _aten.index_put.default}


class _Guard(TorchDispatchMode):
    def __init__(self, paused):
        super().__init__()
        self.paused = paused

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.paused.n:
            why = _FORBIDDEN.get(func)
            if func in _INDEXING and any(torch.is_tensor(i) and i.dtype == torch.bool
                                         for i in args[1]):
                why = "boolean-mask indexing (data-dependent shape)"
            if why:
                raise HostRead(f"{func}: {why}")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def no_host_reads():
    """Fail on any host read of a tensor or data-dependent shape inside: aten ops seen by a
    dispatch mode, plus Tensor.tolist/numpy/item (tolist reads CPU memory without an op).
    Triton launches under the interpreter are let through (their host copies are a kernel on
    a GPU)."""
    paused = threading.local()
    paused.n = 0
    saved = {n: getattr(torch.Tensor, n) for n in ("tolist", "numpy", "item")}

    def forbid(name):
        def f(self, *a, **k):
            if not paused.n:
                raise HostRead(f"Tensor.{name}: a tensor read on the host")
            return saved[name](self, *a, **k)
        return f

    interp = None
    if INTERP:
        from triton.runtime import interpreter as interp

        launch = interp.GridExecutor.__call__

        def kernel(self, *a, **k):
            paused.n += 1
            try:
                return launch(self, *a, **k)
            finally:
                paused.n -= 1

        interp.GridExecutor.__call__ = kernel
    for n in saved:
        setattr(torch.Tensor, n, forbid(n))
    try:
        with _Guard(paused):
            yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)
        if interp is not None:
            interp.GridExecutor.__call__ = launch


def _guard_device_part(monkeypatch):
    orig = GraphedStep.device_step
    calls = []

    def guarded(self, view, tokens):
        calls.append(1)
        with no_host_reads():
            return orig(self, view, tokens)

    monkeypatch.setattr(GraphedStep, "device_step", guarded)
    return calls


@pytest.mark.parametrize("sparse", [pytest.param(SPARSE["dense"], id="dense")]
                         + [pytest.param(s, id=k, marks=needs_interp) for k, s in TRITON.items()])
def test_device_part_reads_no_host_value(model, sparse, monkeypatch):
    """The fixed-shape device part (embedding to LM head, K/V and page-statistic writes, scores,
    top-k, attention) runs under the guard for every step, drops and refills included."""
    calls = _guard_device_part(monkeypatch)
    _steps(model, sparse, _eager_split(model, static=True))
    assert len(calls) == 12


PLANTS = {
    "item": lambda pos: pos.max().item(),
    "int": lambda pos: int(pos[0]),
    "bool": lambda pos: bool((pos > 0).all()),
    "if-tensor": lambda pos: 1 if pos[0] > 0 else 0,
    "equal": lambda pos: torch.equal(pos, pos),
    "tolist": lambda pos: pos.tolist(),
    "mask-index": lambda pos: pos[pos > 0],
    "unique": lambda pos: torch.unique(pos),
    "tensor-of-host-data": lambda pos: torch.tensor([1, 2], device=pos.device),
}


@pytest.mark.parametrize("plant", PLANTS)
def test_guard_fails_on_a_planted_host_read(model, plant, monkeypatch):
    """The guard is real: one host read planted in the dense view's step makes it fail."""
    _guard_device_part(monkeypatch)
    orig = DenseStepView.step

    def planted(self, layer, q, k, v):
        PLANTS[plant](self.positions)
        return orig(self, layer, q, k, v)

    monkeypatch.setattr(DenseStepView, "step", planted)
    with pytest.raises(HostRead):
        _steps(model, SPARSE["dense"], _eager_split(model, static=True))


def test_guard_fails_on_the_reference_implementation(model, monkeypatch):
    """decode.sparse.impl=reference reads the lengths on the host: it fails the guard (and a
    graph refuses it, test below)."""
    _guard_device_part(monkeypatch)
    with pytest.raises(HostRead):
        _steps(model, SparseConfig("unique", 16, impl="reference"),
               _eager_split(model, static=True))


# ------------------------------------------------------------------ the greedy loops
def _split_loops(monkeypatch, static=True):
    """Make the loops' cuda_graphs=True step the eager split (CPU); returns its GraphedSteps."""
    made = []

    def stepper(model, cache, cuda_graphs):
        assert cuda_graphs
        made.append(GraphedStep(model.decoder, cache, graphs=False, static=static))
        return made[-1]

    for mod in ("generate", "engine"):
        monkeypatch.setattr(f"unique_asr.decoding.{mod}.decode_stepper", stepper)
    return made


@pytest.mark.parametrize("sparse", [SPARSE["dense"], SPARSE["unique-16"]], ids=["dense", "unique"])
def test_greedy_loops_through_the_split_step(model, sparse, monkeypatch):
    """greedy_search (rows dropped as they finish) and continuous_greedy (rows refilled; with a
    page pool also dropped and grown back) give the same transcripts through the split step."""
    emb, lens = _audio(model, [30, 9, 21, 14, 40])
    limits = [12, 5, 9, 3, 7]
    want = greedy_search(model, emb, lens, limits, sparse)[0]
    pool = {"pool_pages": 6} if sparse.method != "dense" else {}
    want_c = continuous_greedy(model, emb, lens, limits, 3, sparse, **pool)[0]
    made = _split_loops(monkeypatch)
    assert greedy_search(model, emb, lens, limits, sparse, cuda_graphs=True)[0] == want
    assert continuous_greedy(model, emb, lens, limits, 3, sparse, cuda_graphs=True,
                             **pool)[0] == want_c
    assert len(made) == 2 and sum(map(len, want)) > 10


def test_cuda_graphs_option_off_cuda_is_ignored_once(model, monkeypatch, caplog):
    monkeypatch.setattr(cuda_graph, "_noted_off_cuda", False)
    caplog.set_level("INFO", logger="unique_asr.decoding.cuda_graph")
    emb, lens = _audio(model)
    want = greedy_search(model, emb, lens, 6)[0]
    for _ in range(2):
        assert greedy_search(model, emb, lens, 6, cuda_graphs=True)[0] == want
    assert caplog.text.count("decode.cuda_graphs=true is ignored on cpu") == 1


def test_config_key():
    assert DecodeConfig().cuda_graphs is False
    assert DecodeConfig.from_dict({"cuda_graphs": True}).cuda_graphs is True
    with pytest.raises(ValueError, match=r"decode\.cuda_graphs=True: applies to .*greedy"):
        DecodeConfig(cuda_graphs=True, method="beam")


def test_graphs_need_cuda(model):
    cache = model.new_cache(2, 40)
    with pytest.raises(ValueError, match="CUDA"):
        GraphedStep(model.decoder, cache, graphs=True)
    assert GraphedStep(model.decoder, cache).graphs is False  # default: graphs on CUDA only


# ------------------------------------------------------------------ CUDA: capture and replay
@pytest.fixture(scope="module")
def cuda_model(model):
    import copy

    return copy.deepcopy(model).cuda() if CUDA else None


@needs_cuda
@pytest.mark.parametrize("sparse", [pytest.param(s, id=k) for k, s in SPARSE.items()]
                         + [pytest.param(TRITON["unique-16-fp8-triton"], id="unique-16-fp8")])
def test_replayed_graphs_equal_eager_steps(cuda_model, sparse):
    """Captured and replayed steps give decode_step's tokens (logits to rounding) on the GPU,
    through the drop, swap and refill; graphs are reused (fewer captures than steps)."""
    want, _ = _steps(cuda_model, sparse, device="cuda")
    got, step = _steps(cuda_model, sparse, lambda c: GraphedStep(cuda_model.decoder, c),
                       device="cuda")
    assert step.graphs and 2 <= step.captures < 12
    _assert_same_tokens(got, want)


@needs_cuda
@pytest.mark.parametrize("sparse", [SPARSE["dense"], SPARSE["unique-16"]], ids=["dense", "unique"])
def test_greedy_loops_with_cuda_graphs(cuda_model, sparse):
    emb, lens = _audio(cuda_model, [30, 9, 21, 14, 40], device="cuda")
    limits = [12, 5, 9, 3, 7]
    want = greedy_search(cuda_model, emb, lens, limits, sparse)[0]
    assert greedy_search(cuda_model, emb, lens, limits, sparse, cuda_graphs=True)[0] == want
    pool = {"pool_pages": 6} if sparse.method != "dense" else {}
    want_c = continuous_greedy(cuda_model, emb, lens, limits, 3, sparse, **pool)[0]
    assert continuous_greedy(cuda_model, emb, lens, limits, 3, sparse, cuda_graphs=True,
                             **pool)[0] == want_c


@needs_cuda
def test_reference_implementation_is_refused_by_graphs(cuda_model):
    with pytest.raises(ValueError, match="impl=reference"):
        _steps(cuda_model, SparseConfig("unique", 16, impl="reference"),
               lambda c: GraphedStep(cuda_model.decoder, c), device="cuda")
