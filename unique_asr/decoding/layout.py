"""Where a decoding run reads its checkpoint and writes its results; shared by decode and score.

Both entry points take the same hydra config, so `bin.score` with the overrides given to
`bin.decode` finds exactly that run:
  checkpoint  decode.checkpoint, else the newest <model_dir>/avg-*.pt, else <model_dir>/last.pt
              (decode.model_dir: the training run's directory, ${exp_dir}/${train.tag})
  out_dir     decode.out_dir, else <model_dir>/decode/<checkpoint stem>
  tag         decode.tag, else <method>[<beam>][-ctc<w>]-<attention>[-b<budget>]
              (greedy-dense, beam4-dense, greedy-ctc0.9-dense, greedy-unique-b512, ...)
"""

from __future__ import annotations

from pathlib import Path


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


DEFAULT_CTC_CANDIDATES = 32  # conf/decode/default.yaml's ctc_candidates: left out of tags


def method_name(dcfg) -> str:
    """greedy, ctc_greedy, beam<width> or ctc_beam<width>; -ctc<w> added for joint CTC/attention
    decoding (then c<n> when decode.ctc_candidates is not the default), -lm<order>w<weight>
    [b<bonus>] for ctc_beam with an LM, -oov<penalty> with a lexicon."""
    m = str(dcfg["method"])
    name = f"{m}{int(dcfg['beam'])}" if m in ("beam", "ctc_beam") else m
    if m == "ctc_beam":
        w = float(dcfg.get("lm_weight") or 0.0)
        if w > 0:
            name += f"-lm{int(dcfg.get('lm_order') or 9)}w{w:g}"
            b = float(dcfg.get("token_bonus") or 0.0)
            name += f"b{b:g}" if b else ""
        oov = float(dcfg.get("oov_penalty") or 0.0)
        return f"{name}-oov{-oov:g}" if oov else name
    w = float(dcfg.get("ctc_weight") or 0.0)
    if w <= 0 or m == "ctc_greedy":
        return name
    c = int(dcfg.get("ctc_candidates") or DEFAULT_CTC_CANDIDATES)
    return f"{name}-ctc{w:g}" + (f"c{c}" if c != DEFAULT_CTC_CANDIDATES else "")


def run_tag(dcfg) -> str:
    if dcfg.get("tag"):
        return str(dcfg["tag"])
    tag = f"{method_name(dcfg)}-{dcfg['attention']}"
    return tag if dcfg["attention"] == "dense" else f"{tag}-b{int(dcfg['budget'])}"


def run_out_dir(dcfg, checkpoint: Path | None = None) -> Path:
    if dcfg.get("out_dir"):
        return Path(dcfg["out_dir"])
    ck = checkpoint or find_checkpoint(dcfg["model_dir"], dcfg.get("checkpoint"))
    return Path(dcfg["model_dir"]) / "decode" / ck.stem
