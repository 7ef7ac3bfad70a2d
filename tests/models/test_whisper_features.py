"""Stage 2 for model.encoder=whisper: Whisper log-mel or cached encoder outputs stored through
lhotse, read back by training at the model's frame shift."""

from __future__ import annotations

import pytest
import torch

from unique_asr.data.fbank import compute_fbank
from unique_asr.models.checkpoint import build_model
from unique_asr.models.config import ModelConfig
from unique_asr.models.whisper_audio import whisper_log_mel
from unique_asr.models.whisper_features import WhisperFeatures
from unique_asr.training.data import load_recordings

pytest.importorskip("transformers")
from slm_helpers import save_tiny_llama, save_tiny_whisper, toy_audio


def _manifests(root, seconds: float = 3.3):
    import soundfile as sf
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    audio = toy_audio(seconds, 1)
    sf.write(root / "a.wav", audio.numpy(), 16000, subtype="FLOAT")
    rec = Recording.from_file(root / "a.wav", recording_id="a")
    sup = SupervisionSegment("a-0", "a", 0.2, seconds - 0.4, text="the cat sat on the mat")
    (root / "m").mkdir()
    RecordingSet.from_recordings([rec]).to_file(root / "m" / "recordings_train.jsonl.gz")
    SupervisionSet.from_segments([sup]).to_file(root / "m" / "supervisions_train.jsonl.gz")
    return audio


@pytest.mark.parametrize("cached", [False, True])
def test_stage2_whisper_features_round_trip(tmp_path, cached):
    from lhotse import CutSet

    whisper = save_tiny_whisper(tmp_path / "w")
    llama = save_tiny_llama(tmp_path / "l")
    audio = _manifests(tmp_path)
    cfg = ModelConfig.from_dict({"encoder": {"kind": "whisper", "source": str(whisper),
                                             "dim": 32, "cached": cached},
                                 "llm": {"kind": "pretrained", "source": str(llama)},
                                 "stack": 4})
    assert cfg.feature_set == ("whisper_enc_w" if cached else "whisper_mel")
    compute_fbank(tmp_path / "m", tmp_path / cfg.feature_set, ["train"],
                  extractor=WhisperFeatures.for_model(cfg.encoder))
    cuts = CutSet.from_file(tmp_path / cfg.feature_set / "cuts_train.jsonl.gz")
    feats, recs, stats = load_recordings(cuts, cfg)
    (cid,) = feats
    f = feats[cid]
    assert f.shape == ((165, 32) if cached else (330, 80)) and not stats.counts
    assert recs[cid][1] == pytest.approx(3.3)
    mel = whisper_log_mel(audio)
    live = build_model({**cfg.to_dict(), "encoder": {**cfg.to_dict()["encoder"], "cached": False}})
    with torch.no_grad():
        ref = live.encoder(mel[None], torch.tensor([mel.shape[0]]))[0][0] if cached else mel
    n = min(len(ref), len(f))
    torch.testing.assert_close(f[:n], ref[:n].float(), rtol=1e-4, atol=1e-4)
