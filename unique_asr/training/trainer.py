"""The training loop: curriculum windows -> bucketing sampler -> DDP model -> AdamW steps.

One code path for 1 CPU process, torchrun CPU processes (gloo) and GPUs (nccl, bf16 autocast).
Loss is normalised by the number of target tokens of the whole global batch (all ranks and all
accumulated micro-batches), so N ranks with batches b_1..b_N make exactly the update of one
process on their union.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unique_asr.models.checkpoint import build_model, check_config, load_state_strict, model_state
from unique_asr.models.config import ModelConfig
from unique_asr.models.projector import input_frame_seconds
from unique_asr.training import distributed as D
from unique_asr.training.checkpoint import (
    average_checkpoints,
    list_checkpoints,
    rng_state,
    save_training_checkpoint,
    set_rng_state,
)
from unique_asr.training.config import TrainConfig
from unique_asr.training.ctc_watch import CtcPlateauWatch
from unique_asr.training.curriculum import Curriculum
from unique_asr.training.data import WindowBatcher, cmvn_stats, make_sampler, windows_to_cuts
from unique_asr.training.finetune import load_init_weights, set_train_attention
from unique_asr.training.schedule import make_optimizer, warmup_cosine
from unique_asr.training.validate import fixed_batches, greedy_wer, valid_losses

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps with a NaN/inf loss or gradient."""


@dataclass
class TrainState:
    step: int = 0          # optimizer steps taken (skipped bad steps included)
    epoch: int = 0
    batch_idx: int = 0     # sampler batches consumed in the current epoch (this rank)
    bad_in_row: int = 0
    bad_total: int = 0
    elapsed_s: float = 0.0  # training wall time so far (all runs of a resumed training)


def _autocast(device: torch.device, bf16: bool):
    if device.type == "cuda" and bf16:
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def train_step(ddp, model, group: list[dict], opt, grad_clip: float, device, world: int,
               autocast, ce_weight: float | None = None) -> dict:
    """One optimizer step over accumulated micro-batches. Returns a dict of global metrics.
    ce_weight: None keeps the model config's; 0 during the CTC warm-up."""
    model.train()
    opt.zero_grad(set_to_none=True)
    finite = True
    sums = torch.zeros(4, dtype=torch.float64)  # loss_sum, ce_sum, ctc_sum, ntokens
    # every target token of the global step (all ranks, all micro-batches) weighs the same
    gntok = D.all_sum(sum((b["token_lens"] + 1).sum() for b in group).double()).clamp_min(1)
    for i, b in enumerate(group):
        sync = world == 1 or i == len(group) - 1
        with contextlib.nullcontext() if sync else ddp.no_sync():
            with autocast():
                out = ddp(b["feats"].to(device), b["feat_lens"].to(device),
                          b["tokens"].to(device), b["token_lens"].to(device), ce_weight,
                          b.get("ctc_segments"))
            (out["loss_sum"] * (world / gntok.item())).backward()
        finite &= bool(torch.isfinite(out["loss_sum"].detach()))
        sums += torch.tensor([float(out["loss_sum"].detach()), float(out["ce_sum"]),
                              float(out["ctc_sum"]), float(out["ntokens"])], dtype=torch.float64)
    sums = D.all_sum(sums)
    all_finite = int(D.all_sum(torch.tensor(0 if finite else 1))) == 0
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    ok = all_finite and bool(torch.isfinite(gnorm))
    if ok:
        opt.step()
    else:
        opt.zero_grad(set_to_none=True)
    n = max(1.0, float(sums[3]))
    return {"loss": float(sums[0]) / n, "ce": float(sums[1]) / n, "ctc": float(sums[2]) / n,
            "ntokens": int(sums[3]), "grad_norm": float(gnorm), "ok": ok,
            "lr": opt.param_groups[0]["lr"]}


class Trainer:
    """Owns the model, optimizer, schedule, curriculum and logs of one training run.

    train_data/dev_data: (feats, recordings, stats) from training.data.load_recordings.
    greedy: the decoder's greedy search, greedy(model, feats, feat_lens, max_new_tokens) -> ids
    per sequence, for the dev WER at the end (train.valid_wer_recordings); the entry point passes
    decoding's, so training does not import decoding. None: no dev WER."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, exp_dir, train_data, dev_data,
                 sp, seed: int, bpe_model: str | None = None, greedy: Callable | None = None):
        self.model_cfg = model_cfg
        self.cfg, self.exp_dir, self.sp, self.seed = cfg, Path(exp_dir), sp, seed
        self.train_data, self.dev_data, self.bpe_model = train_data, dev_data, bpe_model
        self.greedy = greedy
        self.st = TrainState()
        self.curriculum = Curriculum(cfg.curriculum, seed)
        self.plateau = CtcPlateauWatch()  # warns if CTC is still on its plateau after warm-up
        self.hard_on = False
        self.cap = 0.0  # the current epoch's longest window (seconds)
        self.writer = self.logf = self.pbar = None
        self.dev_batches = None

    # ------------------------------------------------------------------ setup and resume
    def setup(self) -> None:
        cfg = self.cfg
        self.rank, _, self.world, self.device = D.setup(cfg.device)
        if self.device.type == "cpu" and cfg.num_threads:
            torch.set_num_threads(int(cfg.num_threads))
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(self.seed)
        feats, recs, bad = self.train_data
        if not recs:
            raise ValueError(f"no usable training recordings ({bad.summary()})")
        self.model = build_model(self.model_cfg)
        self.model.set_train_attention(cfg.attention)
        self.model.set_feature_stats(*cmvn_stats(feats))
        self.model.to(self.device)
        self.opt = make_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.betas,
                                  cfg.pretrained_lr_scale)
        self.sched = warmup_cosine(self.opt, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
        self._resume_or_init()
        self.ddp = self.model
        if self.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.model_cfg.ctc_weight == 0)
        self.autocast = _autocast(self.device, cfg.bf16)
        shift = input_frame_seconds(self.model_cfg)
        self.batcher = WindowBatcher(feats, self.sp, self.model_cfg.ctc_segments, shift)
        if self.rank == 0:
            self._open_logs(bad)
            dev = self.dev_data
            if dev and dev[1]:
                wins = self.curriculum.valid_windows(dev[1])[: cfg.valid_max_windows]
                # the dev loss scores CTC on whole windows: no per-sentence targets needed
                self.dev_batches = fixed_batches(WindowBatcher(dev[0], self.sp, False, shift),
                                                 wins)

    def _resume_or_init(self) -> None:
        last = self.exp_dir / "last.pt"
        if self.cfg.resume and last.is_file():
            self._resume(last)
        elif self.cfg.init_from:  # fine-tuning: model weights only
            load_init_weights(self.model, self.cfg.init_from, self.model_cfg)
        if self.cfg.resume and not last.is_file() and self.rank == 0:
            log.info("train.resume=true but %s does not exist: starting from scratch", last)

    def _resume(self, last: Path) -> None:
        ck = torch.load(last, map_location="cpu", weights_only=False)
        check_config(ck["model_cfg"], self.model_cfg.to_dict(), last)
        load_state_strict(self.model, ck["model"], last)
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.st = TrainState(ck["step"], ck["epoch"], ck["batch_idx"], 0, ck.get("bad_total", 0),
                             ck.get("elapsed_s", 0.0))
        self.curriculum.ce_epoch0 = ck.get("ce_epoch0", -1)
        set_rng_state(ck["rng"])
        if self.rank == 0:
            log.info("resumed from %s at step %d (epoch %d, batch %d)", last, self.st.step,
                     self.st.epoch, self.st.batch_idx)

    def _open_logs(self, bad) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        self.writer = SummaryWriter(str(self.exp_dir / "tensorboard"))
        self.logf = open(self.exp_dir / "train_log.jsonl", "a")  # noqa: SIM115 (closed in finish)
        self.pbar = tqdm(total=self.cfg.max_steps, initial=self.st.step, desc="train",
                         dynamic_ncols=True)
        dev_counts = dict(self.dev_data[2].counts) if self.dev_data else {}
        (self.exp_dir / "bad_input.json").write_text(json.dumps(
            {"train": dict(bad.counts), "dev": dev_counts}, indent=1))

    # ------------------------------------------------------------------ the loop
    def done(self) -> bool:
        return self.sched.pos >= self.cfg.max_steps

    def run(self) -> dict:
        """Setup, train until max_steps/max_epochs (or a halt option), finish; the summary."""
        self.setup()
        self.t0 = time.time()
        self.t_start = self.t0 - self.st.elapsed_s
        halted = False
        while not self.done() and self.st.epoch < self.cfg.max_epochs:
            halted = self.epoch()
            if halted:
                break
            if not self.done():
                self.st.epoch += 1
                self.st.batch_idx = 0
        return self.finish(halted)

    def epoch(self) -> bool:
        """Train on the current epoch's windows from st.batch_idx on; True when halted."""
        st, cfg = self.st, self.cfg
        self.curriculum.start_epoch(st.epoch, cfg.in_ctc_warmup(self.sched.pos))
        self.cap = self.curriculum.cap(st.epoch)
        wins = self.curriculum.windows(self.train_data[1], st.epoch)
        sampler = make_sampler(windows_to_cuts(wins), cfg.max_duration, cfg.num_buckets,
                               self.seed, st.epoch, self.world, self.rank)
        it = iter(sampler)
        for _ in range(st.batch_idx):
            next(it)
        group = []
        while not self.done():
            cuts = next(it, None)
            if int(D.all_sum(torch.tensor(1 if cuts is None else 0))) > 0:
                return False  # some rank ran out: the epoch ends for everyone
            st.batch_idx += 1
            group.append(self.batcher(cuts))
            if len(group) < cfg.accum_grad:
                continue
            self._maybe_switch_to_hard()
            if self.curriculum.must_restart(cfg.in_ctc_warmup(self.sched.pos)):
                return False  # the warm-up ended mid-epoch: a new epoch restarts the ramp
            self.step(group)
            group = []
            if self._halt():
                return True
        return False

    def _maybe_switch_to_hard(self) -> None:
        """train.hard_steps: a unique_soft run finishes with top-k (unique_hard) attention."""
        if (not self.hard_on and self.cfg.attention.kind == "unique_soft"
                and self.cfg.in_hard_phase(self.sched.pos)):
            self.hard_on = set_train_attention(self.model, "unique_hard") > 0
            if self.rank == 0:
                log.info("step %d: decoder attention unique_soft -> unique_hard for the last %d "
                         "steps", self.st.step, self.cfg.hard_steps)

    def step(self, group: list[dict]) -> None:
        """One optimizer step, the schedule, bad-step accounting, logs, validation, saving."""
        st, cfg = self.st, self.cfg
        ts, tc = time.time(), time.process_time()
        ctc_warm = cfg.in_ctc_warmup(self.sched.pos)
        m = train_step(self.ddp, self.model, group, self.opt, cfg.grad_clip, self.device,
                       self.world, self.autocast, 0.0 if ctc_warm else None)
        if ctc_warm:
            m["ctc_warmup"] = True
        st.step += 1
        st.elapsed_s = time.time() - self.t_start
        self._advance_schedule()
        if m["ok"]:
            st.bad_in_row = 0
            self._watch_ctc(m, ctc_warm)
        else:
            self._bad_step(m)
        if self.rank == 0:
            self._log_step(m, time.time() - ts, time.process_time() - tc)
        if cfg.valid_every and st.step % cfg.valid_every == 0:
            self.validate()
        if st.step % cfg.save_every == 0:
            self.save()

    def _advance_schedule(self) -> None:
        pos = float(self.st.step)
        budget_s = 60.0 * float(self.cfg.max_minutes or 0)
        if budget_s > 0:  # wall-clock budget: the schedule runs on the larger progress
            frac = float(D.all_sum(torch.tensor(self.st.elapsed_s / budget_s)) / self.world)
            pos = max(pos, frac * self.cfg.max_steps)
        self.sched.step(pos)

    def _bad_step(self, m: dict) -> None:
        st = self.st
        st.bad_in_row += 1
        st.bad_total += 1
        if self.rank == 0:
            log.warning("step %d: non-finite loss/gradient (loss %s, grad norm %s); batch skipped "
                        "(%d in a row)", st.step, m["loss"], m["grad_norm"], st.bad_in_row)
        if st.bad_in_row >= self.cfg.max_bad_steps:
            raise NonFiniteLossError(
                f"{st.bad_in_row} consecutive steps with a NaN/inf loss or gradient (last at "
                f"step {st.step}); lower train.lr, check the data, or raise train.max_bad_steps")

    def _watch_ctc(self, m: dict, ctc_warm: bool) -> None:
        self.plateau.add(self.st.step, float(m["ctc"]))
        warn = self.plateau.check(self.st.step, due=not ctc_warm)
        if warn and self.rank == 0:
            log.warning(warn)

    def _log_step(self, m: dict, step_s: float, cpu_s: float) -> None:
        st = self.st
        rec = {"step": st.step, "epoch": st.epoch, "cap_s": round(self.cap, 1),
               "time_s": round(step_s, 3), "cpu_s": round(cpu_s, 3), **m}
        if self.hard_on:
            rec["hard"] = True
        self.logf.write(json.dumps(rec) + "\n")
        if st.step % self.cfg.log_every == 0 or st.step == 1:
            self.logf.flush()
            for k in ("loss", "ce", "ctc", "grad_norm", "lr"):
                self.writer.add_scalar(f"train/{k}", m[k], st.step)
        self.pbar.update(1)
        self.pbar.set_postfix(loss=f"{m['loss']:.3f}", ce=f"{m['ce']:.3f}", ep=st.epoch)

    def _halt(self) -> bool:
        """train.halt_after_steps / halt_after_minutes (the same on every rank: rank 0's clock
        decides); the run is saved by finish and train.resume=true continues it."""
        cfg = self.cfg
        if cfg.halt_after_steps and self.st.step >= cfg.halt_after_steps:
            return True
        if not cfg.halt_after_minutes:
            return False
        late = self.rank == 0 and time.time() - self.t0 >= 60 * float(cfg.halt_after_minutes)
        return bool(D.all_sum(torch.tensor(float(late))) > 0)

    # ------------------------------------------------------------------ validate and save
    def validate(self) -> None:
        """Dev loss on the fixed dev windows (rank 0), and the decoder's CE with another
        window's audio: equal values mean the decoder ignores the audio."""
        if self.rank == 0 and self.dev_batches:
            v = valid_losses(self.model, self.dev_batches, self.device, self.autocast,
                             shuffled=True)
            step = self.st.step
            self.writer.add_scalar("valid/loss", v["loss"], step)
            rec = {"step": step, "valid_loss": v["loss"]}
            extra = ""
            if "ce" in v:
                self.writer.add_scalar("valid/ce", v["ce"], step)
                self.writer.add_scalar("valid/ce_other_audio", v["ce_other_audio"], step)
                rec.update(valid_ce=v["ce"], valid_ce_other_audio=v["ce_other_audio"])
                extra = (f" (decoder CE {v['ce']:.3f}, with another window's audio "
                         f"{v['ce_other_audio']:.3f})")
            self.logf.write(json.dumps(rec) + "\n")
            self.logf.flush()
            log.info("step %d: valid loss %.4f%s", step, v["loss"], extra)
        D.barrier()

    def checkpoint_state(self) -> dict:
        st = self.st
        return {"model": model_state(self.model), "model_cfg": self.model_cfg.to_dict(),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "step": st.step, "epoch": st.epoch, "batch_idx": st.batch_idx,
                "bad_total": st.bad_total, "elapsed_s": st.elapsed_s,
                "ce_epoch0": self.curriculum.ce_epoch0, "rng": rng_state(),
                "train_cfg": self.cfg.to_dict(), "bpe_model": self.bpe_model}

    def save(self) -> None:
        if self.rank == 0:
            save_training_checkpoint(self.exp_dir, self.checkpoint_state(), self.cfg.keep_last)
        D.barrier()

    # ------------------------------------------------------------------ the end
    def finish(self, halted: bool) -> dict:
        """Last checkpoint; unless halted: final validation, averaging, greedy dev WER and
        train_summary.json. Returns the summary."""
        st, cfg = self.st, self.cfg
        train_s = time.time() - self.t0
        if st.step % cfg.save_every != 0:
            self.save()
        summary = {"steps": st.step, "epochs": st.epoch, "train_s": round(train_s, 1),
                   "bad_steps": st.bad_total, "halted": halted, "world": self.world}
        if self.plateau.checked and self.plateau.reference is not None:
            summary["ctc_plateau"] = self.plateau.on_plateau
        if not halted:
            if not cfg.valid_every or st.step % cfg.valid_every:
                self.validate()
            if self.rank == 0:
                self._average(summary)
                self._greedy_wer(summary)
                (self.exp_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
        if self.rank == 0:
            self.pbar.close()
            self.logf.close()
            self.writer.close()
            log.info("training: %s", summary)
        return summary

    def _average(self, summary: dict) -> None:
        n_avg = self.cfg.average_last
        ckpts = [p for _, p in list_checkpoints(self.exp_dir)][-n_avg:] if n_avg else []
        if len(ckpts) > 1:
            average_checkpoints(ckpts, self.exp_dir / f"avg-{n_avg}.pt")
            summary["averaged"] = [p.name for p in ckpts]

    def _greedy_wer(self, summary: dict) -> None:
        n_wer, dev = self.cfg.valid_wer_recordings, self.dev_data
        if not (n_wer and dev and dev[1] and self.greedy):
            return
        wer, rows = greedy_wer(self.model, self.greedy, dev[0], dev[1], self.sp, self.device,
                               n_wer)
        summary["dev_greedy_wer_last"] = round(100 * wer, 2)
        self.writer.add_scalar("valid/greedy_wer", 100 * wer, self.st.step)
        with open(self.exp_dir / "valid_greedy.txt", "w") as fh:
            fh.writelines(f"{rid}\nREF: {ref}\nHYP: {hyp}\n\n" for rid, ref, hyp in rows)


def train(model_cfg: ModelConfig, cfg: TrainConfig, exp_dir, train_data, dev_data, sp,
          seed: int, bpe_model: str | None = None, greedy: Callable | None = None) -> dict:
    """Train; returns a summary dict (also written to exp_dir/train_summary.json)."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train() takes a TrainConfig, not {type(cfg).__name__} "
                        "(TrainConfig.from_dict builds one from the `train` group)")
    return Trainer(model_cfg, cfg, exp_dir, train_data, dev_data, sp, seed, bpe_model,
                   greedy).run()

