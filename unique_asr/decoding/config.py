"""The typed decode config (`decode.*`): every key and its one default.

bin/decode.py and bin/score.py turn the hydra group `decode` into a plain dict
(OmegaConf.to_container(resolve=True)) and call DecodeConfig.from_dict; everything below them
takes a DecodeConfig. conf/decode/default.yaml holds only what differs from the defaults here
and the interpolations (model_dir, results_md). The decoder's attention while generating is
`decode.sparse.*` (attention/api.SparseConfig: method, budget, page_size, lam, sink_pages,
impl, dense_layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unique_asr.attention.api import SparseConfig
from unique_asr.models.config import check_keys

SEARCH_METHODS = ("greedy", "beam", "ctc_greedy", "ctc_beam")
CTC_ONLY = ("ctc_greedy", "ctc_beam")  # search methods that never run the decoder
DEVICES = "auto | cpu | cuda | cuda:N"
DTYPES = ("float32", "bfloat16")
SPLIT_AT = ("energy", "supervisions")
ENGINES = ("static", "continuous")  # generate.greedy_search per batch | engine.continuous_greedy


@dataclass
class DecodeConfig:
    # search: greedy | beam (the speech LLM, joint with its CTC head: ctc_weight) | ctc_greedy
    # (the CTC head's best path) | ctc_beam (the CTC head, prefix beam search with the n-gram LM)
    method: str = "greedy"
    beam: int = 4                 # beam width (beam, ctc_beam)
    length_penalty: float = 1.0   # beam: best = log p / len^length_penalty
    # joint CTC/attention (greedy, beam): (1-w) log p_dec + w log CTC prefix score; 0 = the
    # decoder alone, 1 = CTC alone. 0.9 was the best weight on dev for the tiny recipe model.
    ctc_weight: float = 0.9
    ctc_candidates: int = 32      # decoder top-k tokens per hypothesis and step scored with CTC
    ctc_window: int = 256         # CTC frames per hypothesis and step (0: all; same scores)
    # > 0: the CTC head's 2 best labels in each of this many frames after the prefix are scored
    # too, so CTC can pick a token the decoder does not rank in its top ctc_candidates
    ctc_lookahead: int = 0
    # ctc_beam: token n-gram LM built at decode time from lm_text (None: the lang dir's
    # lm_text.txt); weight, order and per-token bonus tuned on dev
    lm_weight: float = 1.0
    lm_order: int = 9
    token_bonus: float = 1.0
    oov_penalty: float = 0.0      # ctc_beam: per finished word not in lm_text (<= 0; 0: none)
    lm_text: str | None = None
    model_dir: str | None = None   # the training run to decode (conf: ${exp_dir}/${train.tag})
    checkpoint: str | None = None  # None: newest <model_dir>/avg-*.pt, else last.pt
    bpe_model: str | None = None   # None: the checkpoint's, else the recipe's lang dir
    sets: list[str] = field(default_factory=lambda: ["test"])  # splits to decode
    out_dir: str | None = None     # None: <model_dir>/decode/<checkpoint stem>
    tag: str | None = None         # None: layout.run_tag
    device: str = "auto"              # auto (cuda if present) | cpu | cuda | cuda:N
    dtype: str = "float32"            # float32 | bfloat16 (GPU)
    batch_size: int = 8               # pieces (recordings) per batch
    # static: each batch decodes together (finished rows dropped); continuous: a batch's pieces
    # queue for `slots` cache rows and a finished piece's row takes the next (greedy only)
    engine: str = "static"
    slots: int | None = None          # continuous: rows decoding at once (None: batch_size)
    # continuous with a paged decode.sparse.method: the KV page pool holds at most this many
    # pages (decode.sparse.page_size tokens of every layer each) for all slots together; a piece
    # takes a free slot only when the pool can hold its whole run (prompt + token limit), else
    # it waits for finished pieces' pages. None: each slot has room for the batch's longest piece
    kv_pool_pages: int | None = None
    # greedy: decode steps captured once in CUDA graphs and replayed (decoding/cuda_graph.py;
    # one graph per batch size and attention shape). Ignored, with one log line, off CUDA
    cuda_graphs: bool = False
    max_batch_seconds: float = 3600.0  # audio per batch, counted at the longest piece's length
    # transcript token limit per audio second; None: 30 for the scratch decoder's char/BPE ids,
    # 8 for a pretrained LLM's tokens (~3.5 per second of read speech; 30 would also cut every
    # recording over ~190 s into pieces to fit an 8K context)
    max_tokens_per_second: float | None = None
    min_new_tokens: int = 16          # added to every piece's limit
    max_segment_seconds: float | None = None  # split longer pieces too (None: context decides)
    split_at: str = "energy"          # energy | supervisions (where long recordings are cut)
    results_md: str | None = None  # stage 6 appends one row per scored run (None: none)
    sparse: SparseConfig = field(default_factory=SparseConfig)  # decoder attention (dense prefill)

    def __post_init__(self):
        self.validate()

    def tokens_per_second(self, pretrained_llm: bool) -> float:
        """The transcript token limit per audio second for a decoder with (True) a pretrained
        LLM's tokenizer or (False) our char/BPE ids."""
        if self.max_tokens_per_second is not None:
            return float(self.max_tokens_per_second)
        return 8.0 if pretrained_llm else 30.0

    @property
    def joint_ctc_weight(self) -> float:
        """ctc_weight where it applies (greedy, beam); 0 for the CTC-only methods."""
        return 0.0 if self.method in CTC_ONLY else float(self.ctc_weight)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecodeConfig:
        """Build and validate from a plain dict (nested for `sparse`); an unknown key is a
        ValueError naming it and the valid keys."""
        d = dict(d)
        check_keys(cls, d, "decode")
        sparse = d.pop("sparse", None) or {}
        if not isinstance(sparse, SparseConfig):
            sparse = dict(sparse)
            check_keys(SparseConfig, sparse, "decode.sparse")
            if "dense_layers" in sparse:
                sparse["dense_layers"] = list(sparse["dense_layers"] or [])
            sparse = SparseConfig(**sparse)
        if "sets" in d:
            d["sets"] = list(d["sets"])
        return cls(**d, sparse=sparse)  # __post_init__ validates

    def validate(self) -> DecodeConfig:
        """Raise a ValueError naming the `decode.<key>` that is out of range; returns self."""
        def bad(key, want):
            raise ValueError(f"decode.{key}={getattr(self, key)!r}: {want}")

        if self.method not in SEARCH_METHODS:
            bad("method", f"use one of {', '.join(SEARCH_METHODS)}")
        if not 0.0 <= float(self.ctc_weight) <= 1.0:
            bad("ctc_weight", "use a weight in [0, 1]")
        for key in ("beam", "lm_order", "ctc_candidates", "batch_size"):
            if int(getattr(self, key)) < 1:
                bad(key, "must be >= 1")
        for key in ("lm_weight", "ctc_window", "ctc_lookahead", "min_new_tokens"):
            if getattr(self, key) < 0:
                bad(key, "must be >= 0")
        if self.oov_penalty > 0:
            bad("oov_penalty", "must be <= 0")
        tps = self.max_tokens_per_second
        if (tps is not None and tps <= 0) or self.max_batch_seconds <= 0:
            bad("max_tokens_per_second" if tps is not None and tps <= 0
                else "max_batch_seconds", "must be > 0")
        if self.engine not in ENGINES:
            bad("engine", f"use one of {', '.join(ENGINES)}")
        if self.engine == "continuous" and self.method != "greedy":
            bad("engine", f"continuous batching runs decode.method=greedy only (method is "
                          f"{self.method!r}); use decode.engine=static")
        if self.cuda_graphs and self.method == "beam":
            bad("cuda_graphs", "applies to decode.method=greedy (beam search reorders the cache "
                               "every step); use decode.cuda_graphs=false")
        if self.slots is not None and int(self.slots) < 1:
            bad("slots", "must be >= 1 (or null: decode.batch_size)")
        if self.kv_pool_pages is not None:
            if int(self.kv_pool_pages) < 1:
                bad("kv_pool_pages", "must be >= 1 (or null: no cap)")
            if self.engine != "continuous":
                bad("kv_pool_pages", "caps the page pool of decode.engine=continuous only")
            if self.sparse.method == "dense":
                bad("kv_pool_pages", "the dense KV cache has no page pool; use a paged "
                                     "decode.sparse.method (unique, quest, meanonly, oracle)")
        if self.split_at not in SPLIT_AT:
            bad("split_at", f"use one of {', '.join(SPLIT_AT)}")
        if self.dtype not in DTYPES:
            bad("dtype", f"use one of {', '.join(DTYPES)}")
        if not (self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:")):
            bad("device", f"use one of {DEVICES}")
        self.sparse.validate()
        return self


@dataclass
class TranscribeConfig:
    """`transcribe.*`: bin.transcribe (a user's own recordings) and bin.export; the search is
    `decode.*`, bad input `data.skip_bad` (or --skip-bad)."""

    # an exported model (bin.export), or a training run's directory whose newest checkpoint is
    # exported to <dir>/export first (None: decode.model_dir)
    model: str | None = None
    # audio files, globs, directories, wav.scp-style lists (`<id> <path>` or `<path>` lines),
    # lhotse recordings or cuts manifests; bare command-line arguments are added here
    inputs: list[str] = field(default_factory=list)
    refs: str | None = None       # references: lhotse supervisions manifest or `<id>\t<text>`
    out_dir: str = "transcripts"  # transcripts.txt, transcripts.jsonl, skipped.jsonl, scoring
    set_name: str = "audio"       # <set> in the hyps/meta/recogs/errs/wer-summary file names
    group_seconds: float = 600.0  # audio decoded (and written) at a time

    def __post_init__(self):
        if float(self.group_seconds) <= 0:
            raise ValueError(f"transcribe.group_seconds={self.group_seconds!r}: must be > 0")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TranscribeConfig:
        d = dict(d)
        check_keys(cls, d, "transcribe")
        d["inputs"] = [str(x) for x in d.get("inputs") or []]
        return cls(**d)
