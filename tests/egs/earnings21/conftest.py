"""The mock_earnings21 fixture: the mock corpus of earnings21_mock.py, built once per module."""

import pytest
from earnings21_mock import make_mock_earnings21


@pytest.fixture(scope="module")
def mock_earnings21(tmp_path_factory, recipe_tools):
    root = tmp_path_factory.mktemp("earnings") / "earnings21"
    make_mock_earnings21(root, recipe_tools["tone"])
    return root
