"""CPU costs of the speech LLM from pretrained parts (model=whisper_base_smollm2), 2 threads:

- Whisper base encoder (stage 2's cached outputs): seconds per hour of audio;
- one training step (frozen Whisper cached, frozen SmolLM2, projector + embedding CTC train) on a
  window of --seconds, with the embedding CTC on and off, and the CTC head alone over the full
  49,152-token vocabulary and over a restricted one (--restricted rows of E).

    python bench/slm_cpu_bench.py --threads 2 --seconds 20

Appends one JSON record to bench/results/slm_cpu.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from unique_asr.models.checkpoint import build_model
from unique_asr.models.config import ModelConfig


def _timed(fn, repeat: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def whisper_seconds_per_hour(seconds: float) -> dict:
    from unique_asr.models.config import WhisperEncoderConfig
    from unique_asr.models.loaders.pretrained import load_whisper
    from unique_asr.models.whisper_audio import WhisperAudioEncoder
    from unique_asr.models.whisper_features import WhisperFeatures, WhisperFeaturesConfig

    enc = WhisperAudioEncoder(WhisperEncoderConfig(), load_whisper("whisper-base"))
    fx = WhisperFeatures(WhisperFeaturesConfig(cached=True), enc)
    audio = (0.1 * torch.randn(int(seconds * 16000))).numpy()
    t = _timed(lambda: fx.extract(audio, 16000), 1)
    return {"whisper_audio_s": seconds, "whisper_wall_s": round(t, 2),
            "whisper_s_per_hour": round(t * 3600 / seconds, 1)}


def _batch(model, seconds: float, tokens_per_s: float = 4.0):
    T = int(seconds / 0.02)
    feats = torch.randn(1, T, model.cfg.encoder.dim)
    U = int(seconds * tokens_per_s)
    tokens = torch.randint(100, 20000, (1, U))
    return feats, torch.tensor([T]), tokens, torch.tensor([U])


def train_step(model, batch, ctc_weight: float, repeat: int) -> float:
    model.cfg.ctc_weight = ctc_weight
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step():
        out = model(*batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    return _timed(step, repeat)


def ctc_alone(model, seconds: float, rows: int, repeat: int) -> float:
    """Forward + backward of the embedding CTC on `seconds` of audio tokens over `rows` rows."""
    T, U = int(seconds / 0.08), int(seconds * 4)
    x = torch.randn(1, T, model.decoder.llm.hidden, requires_grad=True)
    E = model.decoder.embed.weight[:rows].detach()
    blank = model.ctc.blank_vec

    def run():
        w = torch.cat([E, blank[None]])
        logp = F.linear(x, w).float().log_softmax(-1)
        tgt = torch.randint(0, rows - 1, (1, U))
        F.ctc_loss(logp.transpose(0, 1), tgt, torch.tensor([T]), torch.tensor([U]),
                   blank=rows, reduction="sum", zero_infinity=True).backward()
    return _timed(run, repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0, help="training window")
    ap.add_argument("--whisper-seconds", type=float, default=300.0)
    ap.add_argument("--restricted", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="bench/results/slm_cpu.jsonl")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rec = {"bench": "slm_cpu", "threads": a.threads, "window_s": a.seconds,
           "torch": torch.__version__}
    rec.update(whisper_seconds_per_hour(a.whisper_seconds))
    print(rec, flush=True)
    cfg = ModelConfig.from_dict({"encoder": {"kind": "whisper", "cached": True},
                                 "llm": {"kind": "pretrained"}, "stack": 4,
                                 "ctc_segments": False, "ctc_max_s": 0.0})
    model = build_model(cfg).train()
    batch = _batch(model, a.seconds)
    rec["step_s_ctc"] = round(train_step(model, batch, 0.5, a.repeat), 3)
    rec["step_s_no_ctc"] = round(train_step(model, batch, 0.0, a.repeat), 3)
    n_tok = int(batch[1][0]) // 4 + model.prompt_ids.numel() + int(batch[3][0]) + 1
    rec["decoder_tokens_per_step"] = n_tok
    rec["train_tokens_per_s_ctc"] = round(n_tok / rec["step_s_ctc"], 1)
    rec["ctc_s_full_vocab"] = round(ctc_alone(model, a.seconds, model.decoder.llm.vocab,
                                              a.repeat), 3)
    rec["ctc_s_restricted"] = round(ctc_alone(model, a.seconds, a.restricted, a.repeat), 3)
    rec["restricted_rows"] = a.restricted
    print(json.dumps(rec), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as fh:
        fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
