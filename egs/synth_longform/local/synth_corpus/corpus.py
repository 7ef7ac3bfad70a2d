"""Deterministic long-form conversational corpus built by offline speech synthesis.

Why: the default recipe must run offline with no downloads, yet exercise long-form decoding,
so it makes its own multi-speaker conversations from public text and local TTS engines.

Steps (all decisions come from one seed, so the same seed gives byte-identical output):
1. sentences (unique_asr.data.text_source) are shuffled and cut into disjoint train/dev/test text pools
   (optional extra text enlarges only the pools of corpus.text.extra_splits; with
   corpus.text.distinct_train every train sentence is spoken once, by one voice);
2. each voice speaks a calibration sentence once, giving seconds per character for planning;
3. per split, conversations are planned: length, 2-4 speakers, turns of 1-3 sentences, pauses,
   per-utterance speed and per-turn level, noise type and SNR;
4. every (voice, sentence) pair is synthesised once into a per-utterance cache (parallel, tqdm);
5. each conversation is assembled (loudness-equalised utterances, speed, turn level, pauses,
   additive noise at the planned SNR) and
   written as FLAC with a JSON of its segments (exact sample times);
6. when a split is complete its `segments.jsonl` is written; planning continues until the
   split's real duration reaches its target.

Every file is written under a temp name and renamed, so an interrupted build resumes where it
stopped: cached utterances and finished conversations (JSON present, same plan hash) are kept.

Output layout (the generic corpus format that stage 1 turns into lhotse manifests):
    <out>/<split>/audio/<recording_id>.flac
    <out>/<split>/conv/<recording_id>.json
    <out>/<split>/segments.jsonl   one line per sentence: recording_id, start, duration,
                                   speaker, text, engine, voice
    <out>/info.json                totals per split, speakers and engines per split
    <out>/cache/<voice_id>/<sha1>.wav
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from unique_asr.data.atomic import write_audio, write_json, write_jsonl
from unique_asr.data.text_source import load_sentences, load_wordnet_examples

from .voices import TRAIN_ONLY_ENGINES, Voice, check_voice, resample, synthesize, synthesize_many

log = logging.getLogger(__name__)

FESTIVAL_BATCH = 12  # utterances per festival process
SPEECH_RMS = 0.05    # every utterance is scaled to this RMS before its turn gain
MIX_VERSION = 3      # part of each conversation's digest: bump when mixing changes
CALIBRATION_TEXT = "the quick brown fox jumps over the lazy dog near the old stone bridge"


@dataclass
class Utterance:
    voice: str
    text: str
    speed: float
    gain_db: float
    pause_s: float  # silence before this utterance


@dataclass
class ConvPlan:
    recording_id: str
    split: str
    speakers: list[str]
    noise_type: str
    snr_db: float
    level_db: float
    noise_seed: int
    utterances: list[Utterance] = field(default_factory=list)

    def digest(self) -> str:
        blob = json.dumps([MIX_VERSION, self.__dict__], default=lambda o: o.__dict__,
                          sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()


def _cache_path(cache_dir: Path, voice: Voice, text: str) -> Path:
    key = hashlib.sha1(json.dumps([voice.settings(), text], sort_keys=True).encode()).hexdigest()
    return cache_dir / voice.id / f"{key}.wav"


def _synth_cached(cache_dir: Path, voice: Voice, text: str, rate: int) -> Path:
    path = _cache_path(cache_dir, voice, text)
    if not path.is_file():
        write_audio(path, synthesize(voice, text, rate), rate)
    return path


def _load(path: Path) -> np.ndarray:
    audio, _ = sf.read(path, dtype="float32")
    return audio


def _colored_noise(n: int, kind: str, rng: np.random.Generator, rate: int = 16000) -> np.ndarray:
    """Unit-power white, pink (1/f power) or brown (1/f^2 power) noise.

    The 1/f shaping is flat below 100 Hz and nothing is kept below 20 Hz: without that floor
    the subsonic wander of brown noise makes its power vary 100x between half-second windows,
    which is a drifting offset, not a noise background."""
    if kind == "white":
        white = rng.standard_normal(n)
    else:
        # FFT at a power-of-two length: arbitrary lengths (large prime factors) are ~10x slower
        m = 1 << max(0, (n - 1).bit_length())
        spec = np.fft.rfft(rng.standard_normal(m))
        hz = np.arange(len(spec), dtype=np.float64) * rate / m
        shape = np.maximum(hz, 100.0)
        spec /= np.sqrt(shape) if kind == "pink" else shape
        spec[hz < 20.0] = 0.0
        white = np.fft.irfft(spec, m)[:n]
    return (white / (np.sqrt(np.mean(white**2)) + 1e-12)).astype(np.float32)


class CorpusBuilder:
    """Builds the corpus described by a `corpus` config (see egs/synth_longform/conf/corpus)."""

    def __init__(self, cfg: dict, out_dir: str | Path, num_workers: int = 2):
        import torch

        torch.set_num_threads(1)  # parallelism comes from the worker threads
        self.cfg = cfg
        self.out = Path(out_dir)
        self.cache = self.out / "cache"
        self.rate = int(cfg.get("sample_rate", 16000))
        self.seed = int(cfg["seed"])
        self.workers = max(1, int(num_workers))
        self.voices = {s: [Voice.from_dict(v) for v in vs] for s, vs in cfg["voices"].items()}
        self.by_id = {v.id: v for vs in self.voices.values() for v in vs}
        self._check_voices()

    # ---------------------------------------------------------------- set-up
    def _check_voices(self) -> None:
        seen: dict[str, str] = {}
        for split, vs in self.voices.items():
            if split != "train" and any(v.engine in TRAIN_ONLY_ENGINES for v in vs):
                raise ValueError(f"corpus.voices.{split}: engines {sorted(TRAIN_ONLY_ENGINES)} "
                                 "are for training voices only (dev and test voices stay the "
                                 "default ones so that scores stay comparable)")
            if len(vs) < 2:
                raise ValueError(f"corpus.voices.{split}: needs at least 2 voices, has {len(vs)}")
            for v in vs:
                key = f"{v.engine}:{v.name}:{v.rate}:{v.pitch}"
                for other in (v.id, key):
                    if other in seen and seen[other] != split:
                        raise ValueError(f"corpus.voices: {v.id} ({key}) is in both "
                                         f"{seen[other]} and {split}; splits must be disjoint")
                    seen[other] = split
        for v in self.by_id.values():
            check_voice(v)

    def _text_pools(self) -> dict[str, list[str]]:
        return text_pools(self.cfg["text"], self.seed)

    def _calibrate(self) -> dict[str, float]:
        """Seconds of speech per character of text, per voice (one cached synthesis each)."""
        spc = {}
        for v in self.by_id.values():
            audio = _load(_synth_cached(self.cache, v, CALIBRATION_TEXT, self.rate))
            spc[v.id] = len(audio) / self.rate / len(CALIBRATION_TEXT)
        return spc

    # ---------------------------------------------------------------- planning
    def _plan_conversation(self, rng, split: str, index: int, pool, spc,
                           usage: dict[str, float]) -> ConvPlan:
        c = self.cfg
        sc = c["splits"][split]
        length = rng.uniform(float(sc["conv_min_s"]), float(sc["conv_max_s"]))
        voices = self.voices[split]
        lo, hi = c["speakers_per_conv"]
        n_spk = int(rng.integers(lo, min(hi, len(voices)) + 1))
        # the least-used voices of the split (planned seconds so far) speak next, ties broken
        # at random: every voice gets a fair share of the split, whatever its engine
        ties = rng.random(len(voices))
        order = sorted(range(len(voices)), key=lambda i: (usage.get(voices[i].id, 0.0), ties[i]))
        speakers = [voices[i].id for i in order[:n_spk]]
        plan = ConvPlan(
            recording_id=f"{split}_conv{index:04d}", split=split, speakers=speakers,
            noise_type=str(rng.choice(list(c["noise"]["types"]))),
            snr_db=round(float(rng.uniform(*c["noise"]["snr_db"])), 2),
            level_db=round(float(rng.uniform(*c["level_db"])), 2),
            noise_seed=int(rng.integers(2**31)))
        est, prev, spoken = float(c["lead_s"]), None, set()
        while est < length or len(spoken) < n_spk:  # every chosen speaker takes a turn
            spk = speakers[int(rng.integers(len(speakers)))] if prev is None else \
                [s for s in speakers if s != prev][int(rng.integers(len(speakers) - 1))]
            gain = round(float(rng.uniform(*c["turn_gain_db"])), 2)
            n_sent = int(rng.integers(c["sentences_per_turn"][0], c["sentences_per_turn"][1] + 1))
            for k in range(n_sent):
                text = pool.next(rng)
                speed = round(float(rng.uniform(*c["speed"])), 2)
                rng_pause = c["turn_pause_s"] if k == 0 else c["sentence_pause_s"]
                pause = round(float(rng.uniform(*rng_pause)), 3) if plan.utterances else 0.0
                plan.utterances.append(Utterance(spk, text, speed, gain, pause))
                seconds = spc[spk] * len(text) / speed
                usage[spk] = usage.get(spk, 0.0) + seconds
                est += pause + seconds
            prev = spk
            spoken.add(spk)
        return plan

    # ---------------------------------------------------------------- synthesis
    def _run_parallel(self, fn, items, desc: str) -> list:
        results = [None] * len(items)
        if not items:
            return results
        pool = ThreadPoolExecutor(self.workers)
        try:
            futures = {pool.submit(fn, it): i for i, it in enumerate(items)}
            for fut in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="it",
                            mininterval=2.0):
                results[futures[fut]] = fut.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return results

    def _synthesize_all(self, plans: list[ConvPlan], desc: str) -> None:
        todo, seen = [], set()
        for p in plans:
            for u in p.utterances:
                key = (u.voice, u.text)
                if key not in seen and not _cache_path(self.cache, self.by_id[u.voice],
                                                       u.text).is_file():
                    seen.add(key)
                    todo.append(key)
        log.info("%s: %d utterances in %d conversations, %d to synthesise (others cached or "
                 "repeated)", desc, sum(len(p.utterances) for p in plans), len(plans), len(todo))
        # festival loads its voice per process: give it batches; the rest go one by one
        jobs: list[list[tuple[str, str]]] = []
        batches: dict[str, list[tuple[str, str]]] = {}
        for key in todo:
            if self.by_id[key[0]].engine == "festival":
                batch = batches.setdefault(key[0], [])
                batch.append(key)
                if len(batch) == FESTIVAL_BATCH:
                    jobs.append(batches.pop(key[0]))
            else:
                jobs.append([key])
        jobs += list(batches.values())
        self._run_parallel(self._synth_batch, jobs, f"synth {desc}")

    def _synth_batch(self, keys: list[tuple[str, str]]) -> None:
        voice = self.by_id[keys[0][0]]
        texts = [k[1] for k in keys]
        for text, audio in zip(texts, synthesize_many(voice, texts, self.rate)):
            write_audio(_cache_path(self.cache, voice, text), audio, self.rate)

    # ---------------------------------------------------------------- assembly
    def _conv_paths(self, plan: ConvPlan) -> tuple[Path, Path]:
        d = self.out / plan.split
        return d / "audio" / f"{plan.recording_id}.flac", d / "conv" / f"{plan.recording_id}.json"

    def _assemble(self, plan: ConvPlan) -> dict:
        audio_path, meta_path = self._conv_paths(plan)
        digest = plan.digest()
        if meta_path.is_file() and audio_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("plan_digest") == digest:
                return meta
        rate, c = self.rate, self.cfg
        pieces, segments = [], []
        cursor = round(float(c["lead_s"]) * rate)
        for u in plan.utterances:
            voice = self.by_id[u.voice]
            wav = _load(_cache_path(self.cache, voice, u.text))
            # engines differ in loudness by ~10 dB: equalise, then apply the planned turn level
            wav = wav * np.float32(SPEECH_RMS / (float(np.sqrt(np.mean(wav**2))) + 1e-9))
            if u.speed != 1.0:
                wav = resample(wav, round(rate * u.speed), rate)
            wav = wav * np.float32(10 ** (u.gain_db / 20))
            cursor += round(u.pause_s * rate)
            pieces.append((cursor, wav))
            segments.append({"recording_id": plan.recording_id, "start": round(cursor / rate, 7),
                             "duration": round(len(wav) / rate, 7), "speaker": u.voice,
                             "text": u.text, "engine": voice.engine, "voice": voice.name})
            cursor += len(wav)
        total = cursor + round(float(c["lead_s"]) * rate)
        speech = np.zeros(total, dtype=np.float32)
        mask = np.zeros(total, dtype=bool)
        for start, wav in pieces:
            speech[start:start + len(wav)] = wav
            mask[start:start + len(wav)] = True
        speech_power = float(np.mean(speech[mask] ** 2))
        rng = np.random.default_rng(plan.noise_seed)
        noise = _colored_noise(total, plan.noise_type, rng, rate)
        mix = speech + noise * np.float32(np.sqrt(speech_power / 10 ** (plan.snr_db / 10)))
        scale = min(10 ** (plan.level_db / 20), 0.95 / (float(np.abs(mix).max()) + 1e-9))
        write_audio(audio_path, mix * np.float32(scale), rate)
        meta = {"plan_digest": digest, "recording_id": plan.recording_id,
                "duration": round(total / rate, 7), "speakers": plan.speakers,
                "noise_type": plan.noise_type, "snr_db": plan.snr_db, "segments": segments}
        write_json(meta_path, meta)
        return meta

    # ---------------------------------------------------------------- driver
    def build_split(self, split: str, pool, spc) -> dict:
        seg_path = self.out / split / "segments.jsonl"
        target = float(self.cfg["splits"][split]["target_s"])
        rng = np.random.default_rng([self.seed, 1 + list(self.cfg["splits"]).index(split)])
        metas: list[dict] = []
        total, index = 0.0, 0
        usage: dict[str, float] = {}
        while total < target:
            plans, est = [], total
            # plan the remaining duration from estimates, then measure the real one and repeat
            while est < target:
                plans.append(self._plan_conversation(rng, split, index, pool, spc, usage))
                index += 1
                est += (float(self.cfg["splits"][split]["conv_min_s"])
                        + float(self.cfg["splits"][split]["conv_max_s"])) / 2
            self._synthesize_all(plans, split)
            new = self._run_parallel(self._assemble, plans, f"mix {split}")
            metas += new
            total += sum(m["duration"] for m in new)
        rows = [s for m in metas for s in m["segments"]]
        write_jsonl(seg_path, rows)
        info = {"recordings": len(metas), "hours": round(total / 3600, 4),
                "seconds": round(total, 2), "segments": len(rows),
                "speakers": sorted({s["speaker"] for s in rows}),
                "engines": sorted({s["engine"] for s in rows}),
                "recording_minutes": [round(m["duration"] / 60, 2) for m in metas]}
        log.info("%s: %d recordings, %.3f h, %d segments, speakers %s, engines %s", split,
                 info["recordings"], info["hours"], info["segments"], info["speakers"],
                 info["engines"])
        return info

    def build(self) -> dict:
        distinct = bool(self.cfg["text"].get("distinct_train", False))
        pools = {s: _Pool(p, s, once=distinct and s == "train")
                 for s, p in self._text_pools().items()}
        spc = self._calibrate()
        info = {"seed": self.seed, "size": self.cfg.get("size"), "splits": {}}
        for split in self.cfg["splits"]:
            if split not in pools or split not in self.voices:
                raise ValueError(f"corpus.splits.{split}: no text pool or voices for this split")
            info["splits"][split] = self.build_split(split, pools[split], spc)
        write_json(self.out / "info.json", info)
        return info


def text_pools(t: dict, seed: int) -> dict[str, list[str]]:
    """Disjoint sentence pools per split.

    The base files (fortunes-min) are shuffled with the seed and cut by split_fractions.
    Optional extra files (corpus.text.extra_files; `large` uses the full `fortunes`
    package) are then shared out among corpus.text.extra_splits only, so the other splits'
    pools (large: test) stay exactly the base ones, sentence for sentence and in order."""
    sentences = load_sentences(t["fortune_dir"], list(t["files"]), int(t["min_words"]),
                               int(t["max_words"]))
    order = np.random.default_rng([seed, 0]).permutation(len(sentences))
    fr = {s: float(x) for s, x in t["split_fractions"].items()}
    pools, start = {}, 0
    for i, split in enumerate(fr):
        end = len(order) if i == len(fr) - 1 else start + round(fr[split] * len(order))
        pools[split] = [sentences[j] for j in order[start:end]]
        if not pools[split]:
            raise ValueError(f"corpus.text.split_fractions: split {split} got no sentences")
        start = end
    if t.get("extra_files") or t.get("wordnet_dir"):
        _add_extra_text(pools, t, fr, seed)
    _check_disjoint(pools)
    return pools


def _extra_sentences(t: dict) -> list[str]:
    """The extra text, unique: the files of corpus.text.extra_files (fortune format), then the
    WordNet examples under corpus.text.wordnet_dir when it is set."""
    words = int(t["min_words"]), int(t["max_words"])
    extra: list[str] = []
    if t.get("extra_files"):
        extra += load_sentences(t.get("extra_fortune_dir") or t["fortune_dir"],
                                list(t["extra_files"]), *words,
                                package=str(t.get("extra_package", "fortunes")))
    if t.get("wordnet_dir"):
        extra += load_wordnet_examples(t["wordnet_dir"], *words)
    return list(dict.fromkeys(extra))


def _add_extra_text(pools: dict[str, list[str]], t: dict, fr: dict[str, float],
                    seed: int) -> None:
    """Append the extra text's new sentences to the pools of corpus.text.extra_splits.

    Sentences already in any pool are dropped (no test sentence can enter train/dev); the
    rest are shuffled with their own seeded stream and cut in proportion to the receiving
    splits' split_fractions."""
    to = list(t.get("extra_splits") or [])
    bad = [s for s in to if s not in fr]
    if not to or bad or len(set(to)) != len(to):
        raise ValueError(f"corpus.text.extra_splits={to}: give the splits that receive "
                         f"corpus.text.extra_files, distinct names among {list(fr)}")
    extra = _extra_sentences(t)
    known = {x for p in pools.values() for x in p}
    extra = [x for x in extra if x not in known]
    order = np.random.default_rng([seed, 0, 1]).permutation(len(extra))
    total, start = sum(fr[s] for s in to), 0
    for i, split in enumerate(to):
        end = len(order) if i == len(to) - 1 else start + round(fr[split] / total * len(order))
        pools[split] = pools[split] + [extra[j] for j in order[start:end]]
        start = end
    names = list(t.get("extra_files") or []) + (["wordnet"] if t.get("wordnet_dir") else [])
    log.info("extra text (%s): %d new sentences to %s", ", ".join(names), len(extra),
             ", ".join(f"{s} {len(pools[s])}" for s in to))


def _check_disjoint(pools: dict[str, list[str]]) -> None:
    """No sentence may be in two splits: a test sentence heard in training would flatter WER."""
    seen: dict[str, str] = {}
    for split, pool in pools.items():
        for x in pool:
            if seen.setdefault(x, split) != split:
                raise ValueError(f"corpus text pools overlap: {x!r} is in {seen[x]} and {split}")


class _Pool:
    """Sentences of one split, served in seeded random passes (every sentence once per pass).

    once: a single pass, so no sentence is spoken twice (corpus.text.distinct_train): a model
    that hears each transcript several times can learn the text instead of the audio. Running
    out is an error, not a silent second pass. The first pass is the same either way."""

    def __init__(self, sentences: list[str], split: str = "", once: bool = False):
        self.sentences = sentences
        self.split = split
        self.once = once
        self.passes = 0
        self.queue: list[str] = []

    def next(self, rng: np.random.Generator) -> str:
        if not self.queue:
            if self.once and self.passes:
                raise ValueError(
                    f"corpus.text.distinct_train: the {self.split} text pool's "
                    f"{len(self.sentences)} sentences are all spoken; add text "
                    "(corpus.text.extra_files, corpus.text.wordnet_dir) or lower "
                    f"corpus.splits.{self.split}.target_s")
            self.passes += 1
            self.queue = [self.sentences[i] for i in rng.permutation(len(self.sentences))]
        return self.queue.pop()
