"""Run under torchrun (or plainly, world 1) by test_ddp.py: two optimizer steps on a fixed global
batch, each rank taking its share, then save the parameters; then a short full train() run."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from synth import CharTokenizer, make_cuts, tiny_model_cfg, train_cfg

from unique_asr.models import build_model
from unique_asr.training import distributed as D
from unique_asr.training.data import collate, load_recordings
from unique_asr.training.schedule import warmup_cosine
from unique_asr.training.trainer import train, train_step


def global_batches():
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(2):
        lens = [300, 260, 180, 240]
        xs = [torch.randn(n, 80, generator=g) for n in lens]
        toks = [torch.randint(1, 8, (k,), generator=g) for k in (9, 4, 6, 2)]
        out.append((xs, toks))
    return out


def main(out_dir: str) -> None:
    out = Path(out_dir)
    rank, _, world, device = D.setup("cpu")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(tiny_model_cfg(ctc_weight=0.5, specaug_freq_masks=0,
                                       specaug_time_masks=0))
    ddp = model
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
    torch.save(model.state_dict(), out / f"init_world{world}.pt")
    # SGD, not AdamW: Adam divides by sqrt(v) and so blows round-off-level gradients (e.g. of
    # the attention key bias, exactly zero in theory) up to full-size steps; with SGD the
    # comparison checks the gradients themselves. AdamW is exercised by the train() run below.
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sched = warmup_cosine(opt, 1, 10)
    tcfg = train_cfg()
    for xs, toks in global_batches():
        per = len(xs) // world
        idx = list(range(rank * per, (rank + 1) * per))
        # accumulation over 2 micro-batches of this rank's share
        group = [collate([xs[i]], [toks[i]], [str(i)]) for i in idx]
        train_step(ddp, model, group, opt, tcfg.grad_clip, device, world,
                   lambda: torch.autocast("cpu", enabled=False))
        sched.step()
    if rank == 0:
        torch.save(model.state_dict(), out / f"params_world{world}.pt")
    # the whole loop (sampler sharding, checkpoint on rank 0) under this world size
    # each process writes its own copy (the data is seeded, so the copies are equal): ranks that
    # share one directory rewrite each other's feature files while reading them (EOFError, CI)
    cuts = make_cuts(out / f"data_world{world}_rank{rank}", n_recs=4, n_sents=4)
    data = load_recordings(cuts, tiny_model_cfg())
    summary = train(tiny_model_cfg(), train_cfg(max_steps=3, save_every=3), out / f"exp{world}",
                    data, None, CharTokenizer(), seed=1)
    if rank == 0:
        (out / f"done_world{world}").write_text(str(summary))
    D.cleanup()


if __name__ == "__main__":
    main(sys.argv[1])
