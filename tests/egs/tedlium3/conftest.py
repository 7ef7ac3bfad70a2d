"""The mock_tedlium fixture: the mock corpus of tedlium_mock.py, built once per module."""

import pytest
from tedlium_mock import make_mock_tedlium


@pytest.fixture(scope="module")
def mock_tedlium(tmp_path_factory, recipe_tools):
    root = tmp_path_factory.mktemp("tedlium") / "TEDLIUM_release-3"
    return root, make_mock_tedlium(root, recipe_tools["tone"])
