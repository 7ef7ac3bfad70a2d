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
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unique_asr.models.attention import TrainAttentionConfig
from unique_asr.models.checkpoint import build_model, check_config, load_state_strict
from unique_asr.models.config import ModelConfig
from unique_asr.training import distributed as D
from unique_asr.training.checkpoint import (
    average_checkpoints,
    list_checkpoints,
    rng_state,
    save_training_checkpoint,
    set_rng_state,
)
from unique_asr.training.ctc_watch import CtcPlateauWatch
from unique_asr.training.data import WindowBatcher, cmvn_stats, make_sampler, windows_to_cuts
from unique_asr.training.finetune import hard_phase, load_init_weights, set_train_attention
from unique_asr.training.schedule import make_optimizer, warmup_cosine
from unique_asr.training.validate import fixed_batches, greedy_wer, valid_losses
from unique_asr.training.windows import curriculum_cap, epoch_windows

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
    ce_epoch0: int = -1     # first epoch with the decoder's CE on (-1: still in the CTC warm-up)


def _autocast(device: torch.device, bf16: bool):
    if device.type == "cuda" and bf16:
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def train_step(ddp, model, group: list[dict], opt, tcfg, device, world: int, autocast,
               ce_weight: float | None = None):
    """One optimizer step over accumulated micro-batches. Returns a dict of global metrics.
    ce_weight: None keeps the model config's; 0 during the CTC warm-up."""
    model.train()
    opt.zero_grad(set_to_none=True)
    finite = True
    sums = torch.zeros(5, dtype=torch.float64)  # loss_sum, ce_sum, ctc_sum, ntokens, align_sum
    # every target token of the global step (all ranks, all micro-batches) weighs the same
    gntok = D.all_sum(sum((b["token_lens"] + 1).sum() for b in group).double()).clamp_min(1)
    for i, b in enumerate(group):
        sync = world == 1 or i == len(group) - 1
        ctx = contextlib.nullcontext() if sync else ddp.no_sync()
        with ctx:
            with autocast():
                out = ddp(b["feats"].to(device), b["feat_lens"].to(device),
                          b["tokens"].to(device), b["token_lens"].to(device), ce_weight,
                          b.get("align"), b.get("ctc_segments"))
            (out["loss_sum"] * (world / gntok.item())).backward()
        finite &= bool(torch.isfinite(out["loss_sum"].detach()))
        sums += torch.tensor([float(out["loss_sum"].detach()), float(out["ce_sum"]),
                              float(out["ctc_sum"]), float(out["ntokens"]),
                              float(out["align_sum"])], dtype=torch.float64)
    sums = D.all_sum(sums)
    all_finite = int(D.all_sum(torch.tensor(0 if finite else 1))) == 0
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
    ok = all_finite and bool(torch.isfinite(gnorm))
    if ok:
        opt.step()
    else:
        opt.zero_grad(set_to_none=True)
    n = max(1.0, float(sums[3]))
    m = {"loss": float(sums[0]) / n, "ce": float(sums[1]) / n, "ctc": float(sums[2]) / n,
         "ntokens": int(sums[3]), "grad_norm": float(gnorm), "ok": ok,
         "lr": opt.param_groups[0]["lr"]}
    if float(sums[4]):
        m["align"] = float(sums[4]) / n  # alignment guide: -log attention mass in the band
    return m


def _ckpt_state(model, opt, sched, st: TrainState, model_cfg, tcfg, bpe_model) -> dict:
    return {"model": model.state_dict(), "model_cfg": model_cfg.to_dict(),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": st.step,
            "epoch": st.epoch, "batch_idx": st.batch_idx, "bad_total": st.bad_total,
            "elapsed_s": st.elapsed_s, "ce_epoch0": st.ce_epoch0,
            "rng": rng_state(), "train_cfg": dict(tcfg), "bpe_model": bpe_model}


def train(model_cfg: ModelConfig, tcfg: dict, exp_dir, train_data, dev_data, sp, seed: int,
          bpe_model: str | None = None) -> dict:
    """Train; returns a summary dict. train_data/dev_data: (feats, recordings, stats) from
    training.data.load_recordings; tcfg: the `train` config group as a dict."""
    exp_dir = Path(exp_dir)
    if tcfg.get("strategy", "ddp") != "ddp":
        raise NotImplementedError(
            f"train.strategy={tcfg['strategy']!r} is not implemented; use train.strategy=ddp "
            "(model=base, ~120 M parameters, fits one GPU per DDP rank)")
    rank, _, world, device = D.setup(tcfg.get("device", "auto"))
    if device.type == "cpu" and tcfg.get("num_threads"):
        torch.set_num_threads(int(tcfg["num_threads"]))
    exp_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    feats, recs, bad = train_data
    if not recs:
        raise ValueError(f"no usable training recordings ({bad.summary()})")
    model = build_model(model_cfg)
    model.set_train_attention(TrainAttentionConfig(**(tcfg.get("attention") or {})))
    model.cmvn.set_stats(*cmvn_stats(feats, model.smooth))
    model.to(device)
    opt = make_optimizer(model, tcfg["lr"], tcfg["weight_decay"], tcfg.get("betas", (0.9, 0.98)))
    sched = warmup_cosine(opt, tcfg["warmup_steps"], tcfg["max_steps"], tcfg["min_lr_ratio"])
    st = TrainState()
    last = exp_dir / "last.pt"
    if tcfg.get("init_from") and not (tcfg.get("resume") and last.is_file()):
        load_init_weights(model, tcfg["init_from"], model_cfg)  # fine-tuning: weights only
    if tcfg.get("resume") and last.is_file():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        check_config(ck["model_cfg"], model_cfg.to_dict(), last)
        load_state_strict(model, ck["model"], last)
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        st = TrainState(ck["step"], ck["epoch"], ck["batch_idx"], 0, ck.get("bad_total", 0),
                        ck.get("elapsed_s", 0.0), ck.get("ce_epoch0", -1))
        set_rng_state(ck["rng"])
        if rank == 0:
            log.info("resumed from %s at step %d (epoch %d, batch %d)", last, st.step, st.epoch,
                     st.batch_idx)
    elif tcfg.get("resume") and rank == 0:
        log.info("train.resume=true but %s does not exist: starting from scratch", last)
    ddp = model
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=model_cfg.ctc_weight == 0)
    autocast = _autocast(device, tcfg.get("bf16", True))
    batcher = WindowBatcher(feats, sp, with_align=model_cfg.align_weight > 0,
                            with_segments=model_cfg.ctc_segments)
    cur = tcfg["curriculum"]

    writer, logf, pbar = None, None, None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        writer = SummaryWriter(str(exp_dir / "tensorboard"))
        logf = open(exp_dir / "train_log.jsonl", "a")  # noqa: SIM115 (kept open for the loop)
        pbar = tqdm(total=tcfg["max_steps"], initial=st.step, desc="train", dynamic_ncols=True)
        (exp_dir / "bad_input.json").write_text(json.dumps(
            {"train": dict(bad.counts), "dev": dict(dev_data[2].counts) if dev_data else {}},
            indent=1))
    dev_batches = None
    if dev_data and dev_data[1] and rank == 0:
        dwin = epoch_windows(dev_data[1], 0, seed, cur.get("valid_max_s", 30.0), cur["min_s"], 0.0)
        dev_batches = fixed_batches(dev_data[0], dwin[: tcfg.get("valid_max_windows", 64)], sp)

    def save():
        if rank == 0:
            save_training_checkpoint(exp_dir, _ckpt_state(model, opt, sched, st, model_cfg, tcfg,
                                                          bpe_model), tcfg["keep_last"])
        D.barrier()

    def validate():
        if rank == 0 and dev_batches:
            v = valid_losses(model, dev_batches, device, autocast, shuffled=True)
            vl = v["loss"]
            writer.add_scalar("valid/loss", vl, st.step)
            rec = {"step": st.step, "valid_loss": vl}
            if "ce" in v:  # does the decoder use the audio? (CE with another window's audio)
                writer.add_scalar("valid/ce", v["ce"], st.step)
                writer.add_scalar("valid/ce_other_audio", v["ce_other_audio"], st.step)
                rec.update(valid_ce=v["ce"], valid_ce_other_audio=v["ce_other_audio"])
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log.info("step %d: valid loss %.4f%s", st.step, vl,
                     f" (decoder CE {v['ce']:.3f}, with another window's audio "
                     f"{v['ce_other_audio']:.3f})" if "ce" in v else "")
        D.barrier()

    t0, halted, hard_on = time.time(), False, False
    t_start = time.time() - st.elapsed_s
    budget_s = 60.0 * float(tcfg.get("max_minutes") or 0)

    def done() -> bool:
        return sched.pos >= tcfg["max_steps"]

    restart = bool(cur.get("restart_after_ctc_warmup", False))
    plateau = CtcPlateauWatch()  # warns if the CTC head is still on its plateau after the warm-up
    while not done() and st.epoch < tcfg["max_epochs"]:
        if st.ce_epoch0 < 0 and not ctc_warmup_phase(sched.pos, tcfg):
            st.ce_epoch0 = st.epoch
        # train.curriculum.restart_after_ctc_warmup: the decoder starts on short windows too
        # (a decoder that first meets 100-600 s windows learns a text LM and ignores the audio)
        ep = st.epoch - st.ce_epoch0 if restart and st.ce_epoch0 >= 0 else st.epoch
        cap = curriculum_cap(ep, cur["start_max_s"], cur["end_max_s"], cur["ramp_epochs"])
        wins = epoch_windows(recs, st.epoch, seed, cap, cur["min_s"], cur["whole_prob"])
        sampler = make_sampler(windows_to_cuts(wins), tcfg["max_duration"], tcfg["num_buckets"],
                               seed, st.epoch, world, rank)
        it = iter(sampler)
        for _ in range(st.batch_idx):
            next(it)
        group = []
        while not done():
            cuts = next(it, None)
            if int(D.all_sum(torch.tensor(1 if cuts is None else 0))) > 0:
                break  # some rank ran out: the epoch ends for everyone
            st.batch_idx += 1
            group.append(batcher(cuts))
            if len(group) < tcfg["accum_grad"]:
                continue
            if (not hard_on and model.train_attention.kind == "unique_soft"
                    and hard_phase(sched.pos, tcfg)):  # train.hard_steps: finish with top-k
                hard_on = set_train_attention(model, "unique_hard") > 0
                if rank == 0:
                    log.info("step %d: decoder attention unique_soft -> unique_hard for the last "
                             "%s steps", st.step, tcfg.get("hard_steps"))
            ts, tc = time.time(), time.process_time()
            ctc_warm = ctc_warmup_phase(sched.pos, tcfg)
            if restart and not ctc_warm and st.ce_epoch0 < 0:
                group = []
                break  # the warm-up ended mid-epoch: a new epoch restarts the curriculum
            m = train_step(ddp, model, group, opt, tcfg, device, world, autocast,
                           0.0 if ctc_warm else None)
            if ctc_warm:
                m["ctc_warmup"] = True
            group = []
            st.step += 1
            st.elapsed_s = time.time() - t_start
            pos = float(st.step)
            if budget_s > 0:  # wall-clock budget: the schedule runs on the larger progress
                frac = float(D.all_sum(torch.tensor(st.elapsed_s / budget_s)) / world)
                pos = max(pos, frac * tcfg["max_steps"])
            sched.step(pos)
            if not m["ok"]:
                st.bad_in_row += 1
                st.bad_total += 1
                if rank == 0:
                    log.warning("step %d: non-finite loss/gradient (loss %s, grad norm %s); "
                                "batch skipped (%d in a row)", st.step, m["loss"], m["grad_norm"],
                                st.bad_in_row)
                if st.bad_in_row >= tcfg["max_bad_steps"]:
                    raise NonFiniteLossError(
                        f"{st.bad_in_row} consecutive steps with a NaN/inf loss or gradient "
                        f"(last at step {st.step}); lower train.lr, check the data, or raise "
                        f"train.max_bad_steps")
            else:
                st.bad_in_row = 0
                if "ctc" in m:
                    plateau.add(st.step, float(m["ctc"]))
                    warn = plateau.check(st.step, due=not ctc_warm)
                    if warn and rank == 0:
                        log.warning(warn)
            if rank == 0:
                rec = {"step": st.step, "epoch": st.epoch, "cap_s": round(cap, 1),
                       "time_s": round(time.time() - ts, 3),
                       "cpu_s": round(time.process_time() - tc, 3), **m}
                if hard_on:
                    rec["hard"] = True
                logf.write(json.dumps(rec) + "\n")
                if st.step % tcfg["log_every"] == 0 or st.step == 1:
                    logf.flush()
                    for k in ("loss", "ce", "ctc", "grad_norm", "lr", "align"):
                        if k in m:
                            writer.add_scalar(f"train/{k}", m[k], st.step)
                pbar.update(1)
                pbar.set_postfix(loss=f"{m['loss']:.3f}", ce=f"{m['ce']:.3f}", ep=st.epoch)
            if tcfg["valid_every"] and st.step % tcfg["valid_every"] == 0:
                validate()
            if st.step % tcfg["save_every"] == 0:
                save()
            if tcfg.get("halt_after_steps") and st.step >= tcfg["halt_after_steps"]:
                halted = True
                break
            if (tcfg.get("halt_after_minutes")  # same on every rank (rank 0's clock decides)
                    and D.all_sum(torch.tensor(float(time.time() - t0 >= 60 * float(
                        tcfg["halt_after_minutes"])) if rank == 0 else 0.0)) > 0):
                halted = True  # saved below; train.resume=true continues (machine time limits)
                break
        if halted:
            break
        if not done():
            st.epoch += 1
            st.batch_idx = 0
    train_s = time.time() - t0
    if st.step % tcfg["save_every"] != 0:
        save()
    summary = {"steps": st.step, "epochs": st.epoch, "train_s": round(train_s, 1),
               "bad_steps": st.bad_total, "halted": halted, "world": world}
    if plateau.checked and plateau.reference is not None:
        summary["ctc_plateau"] = plateau.on_plateau
    if not halted:
        if not tcfg["valid_every"] or st.step % tcfg["valid_every"]:
            validate()
        if rank == 0:
            n_avg = tcfg.get("average_last", 0)
            ckpts = [p for _, p in list_checkpoints(exp_dir)][-n_avg:] if n_avg else []
            if len(ckpts) > 1:
                average_checkpoints(ckpts, exp_dir / f"avg-{n_avg}.pt")
                summary["averaged"] = [p.name for p in ckpts]
            n_wer = tcfg.get("valid_wer_recordings", 0)
            if n_wer and dev_data and dev_data[1]:
                wer, rows = greedy_wer(model, dev_data[0], dev_data[1], sp, device, n_wer)
                summary["dev_greedy_wer_last"] = round(100 * wer, 2)
                writer.add_scalar("valid/greedy_wer", 100 * wer, st.step)
                with open(exp_dir / "valid_greedy.txt", "w") as fh:
                    fh.writelines(f"{rid}\nREF: {ref}\nHYP: {hyp}\n\n" for rid, ref, hyp in rows)
            (exp_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
    if rank == 0:
        pbar.close()
        logf.close()
        writer.close()
        log.info("training: %s", summary)
    return summary


def ctc_warmup_phase(pos: float, tcfg: dict) -> bool:
    """True for the first `train.ctc_warmup_steps` schedule positions (steps, or the wall-clock
    fraction times max_steps under train.max_minutes): the decoder's cross-entropy is off so the
    encoder learns acoustics from CTC alone. Without it the decoder memorises the (few, repeated)
    training sentences within a few hundred steps while CTC sits on its blank plateau, and the
    model never learns to listen (measured: issue 3 note, H200 run of 2026-11-28)."""
    return pos < float(tcfg.get("ctc_warmup_steps") or 0)


def steps_per_second_hint(total_s: float, steps: int) -> str:
    return f"{steps / total_s:.2f} steps/s" if total_s > 0 and not math.isnan(total_s) else "-"
