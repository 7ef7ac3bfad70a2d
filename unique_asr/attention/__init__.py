"""attention package of unique_asr: the UNIQUE top-k page-sparse attention library.

Decoding: PagedKVCache (paged_cache.py) + decode / unique_decode (api.py, with SparseConfig and
the one list of methods, METHODS); kernels in triton/, the plain-PyTorch reference in
reference.py.
"""

from .api import METHODS, SparseConfig, decode, unique_decode
from .paged_cache import PagedKVCache

__all__ = ["METHODS", "PagedKVCache", "SparseConfig", "decode", "unique_decode"]
