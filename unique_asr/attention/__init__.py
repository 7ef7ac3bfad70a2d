"""attention package of unique_asr: the UNIQUE top-k page-sparse attention library.

Decoding: PagedKVCache (paged_cache.py) + unique_decode (api.py); kernels in triton/, the
plain-PyTorch reference in reference.py.
"""

from .api import unique_decode
from .paged_cache import PagedKVCache

__all__ = ["PagedKVCache", "unique_decode"]
