"""The mock_librispeech fixture: the mock corpus of librispeech_mock.py, built once per module."""

import pytest
from librispeech_mock import make_mock_librispeech


@pytest.fixture(scope="module")
def mock_librispeech(tmp_path_factory, recipe_tools):
    root = tmp_path_factory.mktemp("librispeech")
    return root / "LibriSpeech", make_mock_librispeech(root, recipe_tools["tone"])
