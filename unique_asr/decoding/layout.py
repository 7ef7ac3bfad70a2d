"""Where a decoding run reads its checkpoint and writes its results; shared by decode and score.

Both entry points take the same hydra config, so `bin.score` with the overrides given to
`bin.decode` finds exactly that run:
  checkpoint  decode.checkpoint, else the newest <model_dir>/avg-*.pt, else <model_dir>/last.pt
              (decode.model_dir: the training run's directory, ${exp_dir}/${train.tag})
  out_dir     decode.out_dir, else <model_dir>/decode/<checkpoint stem>
  tag         decode.tag, else
              <method>[<beam>][-ctc<w>]-<sparse.method>[-b<sparse.budget>][-fp8|-int8]
              (greedy-dense, beam4-dense, greedy-ctc0.9-dense, greedy-unique-b512, ...;
              -fp8/-int8: decode.sparse.stats_dtype with unique or meanonly)
"""

from __future__ import annotations

from pathlib import Path

from unique_asr.decoding.config import DecodeConfig


def find_checkpoint(model_dir: str | Path, checkpoint: str | None = None) -> Path:
    if checkpoint:
        p = Path(checkpoint)
        if not p.is_file():
            raise FileNotFoundError(f"decode.checkpoint={p} does not exist")
        return p
    exp = Path(model_dir)
    avgs = sorted(exp.glob("avg-*.pt"), key=lambda p: p.stat().st_mtime)
    if avgs:
        return avgs[-1]
    if (exp / "last.pt").is_file():
        return exp / "last.pt"
    raise FileNotFoundError(
        f"no checkpoint in {exp} (avg-*.pt or last.pt): train first (run.sh --stage 4) or set "
        "decode.checkpoint=PATH"
    )


def method_name(cfg: DecodeConfig) -> str:
    """greedy, ctc_greedy, beam<width> or ctc_beam<width>; -ctc<w> added for joint CTC/attention
    decoding (then c<n> / p<n> when decode.ctc_candidates / ctc_lookahead are not the default),
    -lm<order>w<weight>[b<bonus>] for ctc_beam with an LM, -oov<penalty> with a lexicon."""
    m = cfg.method
    name = f"{m}{int(cfg.beam)}" if m in ("beam", "ctc_beam") else m
    if m == "ctc_beam":
        w = float(cfg.lm_weight)
        if w > 0:
            name += f"-lm{int(cfg.lm_order)}w{w:g}"
            b = float(cfg.token_bonus)
            name += f"b{b:g}" if b else ""
        oov = float(cfg.oov_penalty)
        return f"{name}-oov{-oov:g}" if oov else name
    w = cfg.joint_ctc_weight
    if w <= 0:
        return name
    c, la = int(cfg.ctc_candidates), int(cfg.ctc_lookahead)
    return (f"{name}-ctc{w:g}" + (f"c{c}" if c != DecodeConfig.ctc_candidates else "")
            + (f"p{la}" if la != DecodeConfig.ctc_lookahead else ""))


def run_tag(cfg: DecodeConfig) -> str:
    if cfg.tag:
        return str(cfg.tag)
    sp = cfg.sparse
    tag = f"{method_name(cfg)}-{sp.method}"
    if sp.method == "dense":
        return tag
    tag = f"{tag}-b{int(sp.budget)}"
    # one-byte page means change what unique/meanonly select (the other methods do not read them)
    return f"{tag}-{sp.stats_dtype}" if sp.stats_dtype != "bf16" \
        and sp.method in ("unique", "meanonly") else tag


def run_out_dir(cfg: DecodeConfig, checkpoint: Path | None = None) -> Path:
    if cfg.out_dir:
        return Path(cfg.out_dir)
    if not cfg.model_dir:
        raise ValueError("decode.model_dir is not set; pass decode.model_dir=<training run dir>")
    ck = checkpoint or find_checkpoint(cfg.model_dir, cfg.checkpoint)
    return Path(cfg.model_dir) / "decode" / ck.stem
