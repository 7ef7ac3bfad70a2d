"""Where a training step of model=whisper_base_smollm2 spends its time, on the GPU, without its
weights: a randomly initialised decoder of SmolLM2-135M's shape (30 layers, width 576, 9/3
heads, vocab 49,152) replaces the GGUF, and random cached Whisper outputs replace the corpus,
so this runs on a bare GPU host in one call (needs hydra: `.gpu/wheels`).

    python bench/profile_slm_step.py [--windows 2x300 60x10] [--steps 6] [OVERRIDE ...]

Per batch shape (N windows x S seconds): the trainer's own train_step (bf16 autocast, AdamW),
its median wall time per step, the same with the CTC off and with the decoder's CE off, peak
memory, and torch.profiler's top CUDA ops for one step. OVERRIDEs are hydra overrides of the
recipe config (e.g. model.llm.finetune=frozen train.attention.kind=unique_soft).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = {"hidden": 576, "layers": 30, "heads": 9, "kv_heads": 3, "head_dim": 64, "ffn": 1536,
           "vocab": 49152, "rope_theta": 1e5, "eps": 1e-5}
TOKENS_PER_S = 3.5   # SmolLM2 tokens per second of this corpus's speech


class _Tok:
    eos_id = 2

    def encode(self, text: str) -> list[int]:
        return [5, 6, 7, 8]


def _configs(overrides: list[str]):
    from omegaconf import OmegaConf

    from unique_asr.config import compose
    from unique_asr.models.config import ModelConfig
    from unique_asr.training.config import TrainConfig

    recipe = ROOT / "egs/synth_longform"
    cfg = compose([f"recipe_dir={recipe}", f"hydra.searchpath=[file://{recipe}/conf]",
                   "model=whisper_base_smollm2", "model.llm.finetune=lora", "train=gpu",
                   *overrides])
    return (ModelConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True)),
            TrainConfig.from_dict(OmegaConf.to_container(cfg.train, resolve=True)))


def _random_llm(_source):
    from unique_asr.models.decoder import Decoder
    from unique_asr.models.llm_config import LLMConfig

    return Decoder(LLMConfig(**SMOLLM2)), _Tok()


def _batch(n: int, seconds: float, dim: int, vocab: int) -> dict:
    frames = int(seconds / 0.02)
    u = int(seconds * TOKENS_PER_S)
    return {"feats": torch.randn(n, frames, dim), "feat_lens": torch.full((n,), frames),
            "tokens": torch.randint(10, vocab, (n, u)), "token_lens": torch.full((n,), u)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", nargs="+", default=["2x300", "60x10"])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--top", type=int, default=18)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()

    from unique_asr.models import pretrained_llm
    from unique_asr.models.checkpoint import build_model
    from unique_asr.training.schedule import make_optimizer
    from unique_asr.training.trainer import _autocast, train_step

    pretrained_llm.load_llm = _random_llm
    mcfg, tcfg = _configs(a.overrides)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(0)
    model = build_model(mcfg)
    model.set_train_attention(tcfg.attention)
    model.to(dev)
    opt = make_optimizer(model, 1e-4, tcfg.weight_decay, tcfg.betas)
    autocast = _autocast(dev, tcfg.bf16)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if cuda else 'cpu'}, attention "
          f"{tcfg.attention.kind}, finetune {mcfg.llm.finetune}, llm dtype {mcfg.llm.dtype}, "
          f"bf16 autocast {tcfg.bf16}, ctc_weight {mcfg.ctc_weight}")
    for spec in a.windows:
        n, s = spec.split("x")
        b = _batch(int(n), float(s), mcfg.encoder.dim, SMOLLM2["vocab"])
        audio_s = int(n) * float(s)
        for name, kw in (("full", {}), ("no CTC", {"ctc": 0.0}), ("no CE", {"ce": 0.0})):
            saved = model.cfg.ctc_weight
            if "ctc" in kw:
                model.cfg.ctc_weight = kw["ctc"]
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(a.steps):
                sync()
                t = time.perf_counter()
                train_step(model, model, [b], opt, 5.0, dev, 1, autocast, kw.get("ce"))
                sync()
                times.append(time.perf_counter() - t)
            model.cfg.ctc_weight = saved
            med = statistics.median(times[1:])
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
            print(f"{spec:>7} {name:>7}: {med * 1e3:7.1f} ms/step (first {times[0] * 1e3:.0f}), "
                  f"{audio_s / med:7.0f} s audio/s, peak {peak:.1f} GiB")
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            train_step(model, model, [b], opt, 5.0, dev, 1, autocast)
            sync()
        print(prof.key_averages().table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=a.top,
                                        max_name_column_width=60))


if __name__ == "__main__":
    main()
