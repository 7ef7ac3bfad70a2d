"""Fixtures of the decoding tests (helpers: decoding_helpers.py)."""

import pytest
import torch
from decoding_helpers import FakeModel, copy_logits


@pytest.fixture
def fake_model():
    return FakeModel(copy_logits())


@pytest.fixture
def make_fake():
    return lambda fn, n_text=10: FakeModel(fn, n_text)


@pytest.fixture
def copy_batch():
    """Three recordings of 6, 11 and 2 audio tokens; targets are their first Ta//2 values."""
    g = torch.Generator().manual_seed(0)
    lens = torch.tensor([6, 11, 2])
    emb = torch.randint(0, 10, (3, 11, 4), generator=g).float()
    targets = [emb[b, : lens[b] // 2, 0].long().tolist() for b in range(3)]
    return emb, lens, targets


@pytest.fixture(scope="session")
def tiny_model():
    """The real speech LLM at its default (tiny) size, randomly initialised."""
    from unique_asr.models import ModelConfig, build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(n_text=40)).eval()
