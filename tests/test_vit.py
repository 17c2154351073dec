"""mer.vit and mer.predict: a real tiny ViT trained on real (short, synthetic) audio.

The clips are 2 s of additive-synthesis chords written as FLAC (major and high
= happy, minor and low = sad), analysed with 32 mel bands, so every training
here takes a second or two.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from mer import ParameterError, spectrogram, vit
from mer.data import Dataset

SR = 22050
LOGMEL = {"duration": 2.0, "n_mels": 32}
TRAIN = dict(size="quick", epochs=3, batch_size=8, seed=0, progress=False, n_jobs=1, logmel=LOGMEL)


def _chord(root_hz: float, minor: bool, seconds: float, rng) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    ratios = (1, 6 / 5 if minor else 5 / 4, 3 / 2)
    y = sum(np.sin(2 * np.pi * root_hz * r * t + rng.uniform(0, 6)) for r in ratios)
    return (0.2 * y * np.exp(-t % 0.5)).astype(np.float32)


def _write_dataset(folder: Path, n_per_class: int = 16) -> Dataset:
    rng = np.random.default_rng(0)
    valence_rng = np.random.default_rng(1)  # its own stream: the audio stays as it was without valences
    rows = []
    splits = ["train"] * (n_per_class - 6) + ["val"] * 3 + ["test"] * 3
    for label, minor, base in (("happy", False, 440.0), ("sad", True, 150.0)):
        for i in range(n_per_class):
            path = folder / f"{label}{i:02d}.flac"
            sf.write(path, _chord(base * rng.uniform(0.9, 1.2), minor, 2.0, rng), SR)
            valence = (1.0 if label == "happy" else -1.0) * valence_rng.uniform(0.1, 1.5)
            rows.append({"clip_id": f"{label}{i:02d}", "path": str(path), "label": label, "valence": valence,
                         "arousal": np.nan, "split": splits[i], "source": "test"})
    clips = pd.DataFrame(rows)
    clips.to_csv(folder / "clips.csv", index=False)
    return Dataset(name="vit-test", clips=clips, root=folder)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit")
    old = os.environ.get("MER_DATA")
    os.environ["MER_DATA"] = str(folder / "data")
    (folder / "audio").mkdir()
    dataset = _write_dataset(folder / "audio")
    yield folder, dataset
    if old is None:
        os.environ.pop("MER_DATA", None)
    else:
        os.environ["MER_DATA"] = old


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is as fast, and the killed run below (a child
    process) must use the same thread count as the reference run for bit-identical sums."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / vit.WEIGHTS_FILE))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_model_takes_one_channel_non_square_input():
    model = vit.build_model("quick", n_mels=128, n_frames=108)
    assert model.config.num_channels == 1
    assert model.vit.embeddings.patch_embeddings.num_patches == 54  # 128 x 2 stripes
    logits = model(pixel_values=torch.zeros(3, 1, 128, 108)).logits
    assert logits.shape == (3, 2)
    assert model.config.id2label == {0: "sad", 1: "happy"}
    with pytest.raises(Exception, match="whole number"):
        vit.build_model("quick", n_mels=128, n_frames=107)


def test_onset_channels_mark_where_energy_rises_and_falls():
    step = torch.zeros(1, 1, 2, 6)
    step[..., 2:4] = 1.5  # a note sounding in frames 2 and 3
    channels = vit.onset_channels(step)
    assert channels.shape == (1, 3, 2, 6)
    assert torch.equal(channels[:, :1], step)
    assert channels[0, 1, 0].tolist() == [0, 0, 1.5, 0, 0, 0]  # onset at its first frame
    assert channels[0, 2, 0].tolist() == [0, 0, 0, 0, 1.5, 0]  # release after its last


def test_a_model_with_onset_channels_trains_records_them_and_reloads_whole(workspace):
    folder, dataset = workspace
    assert "input_channels" not in vit.TrainOptions().record()  # the default folders do not move
    result = vit.train(dataset, out_dir=folder / "run-onsets", input_channels="onsets", **TRAIN)
    assert result.meta["train"]["input_channels"] == "onsets"
    assert result.meta["model_config"]["input_channels"] == "onsets"
    assert result.model.config.num_channels == 3
    model, meta = vit.load_checkpoint(result.checkpoint)
    x = torch.as_tensor(vit.model_input(dataset.clips, meta, n_jobs=1, progress=False))
    assert x.shape[1] == 1  # the derived channels are computed inside the model
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, result.model(pixel_values=x).logits)
    plain = vit.train(dataset, out_dir=folder / "run-plain-for-onsets", **TRAIN)
    assert plain.checkpoint != result.checkpoint
    with pytest.raises(ParameterError, match="pretrain"):
        vit.TrainOptions(input_channels="onsets", pretrain_epochs=2)
    with pytest.raises(ParameterError, match="input_channels"):
        vit.TrainOptions(input_channels="chroma")


def test_training_is_deterministic_and_normalises_with_train_only(workspace):
    folder, dataset = workspace
    first = vit.train(dataset, out_dir=folder / "run-a", **TRAIN)
    second = vit.train(dataset, out_dir=folder / "run-b", **TRAIN)
    assert _same(_weights(first.checkpoint), _weights(second.checkpoint))
    assert first.history.drop(columns="learning_rate").equals(second.history.drop(columns="learning_rate"))
    specs, _ = spectrogram.compute(dataset.clips, params=LOGMEL, n_jobs=1, progress=False)
    train_rows = (dataset.clips["split"] == "train").to_numpy()
    expected = spectrogram.fit_normalizer(specs[train_rows])
    for key in ("mean", "std"):
        assert first.meta["stats"][key] == pytest.approx(expected[key])
    assert first.meta["stats"]["mean"] != pytest.approx(spectrogram.fit_normalizer(specs)["mean"])
    assert len(first.meta["stats"]["mean"]) == specs.shape[2]  # one pair per mel band


def test_checkpoint_holds_no_pickle_and_reloads(workspace):
    folder, dataset = workspace
    result = vit.train(dataset, out_dir=folder / "run-a", **TRAIN)  # finished: loaded, not retrained
    names = sorted(p.name for p in result.checkpoint.iterdir())
    assert all(name.endswith((".safetensors", ".json", ".csv")) for name in names), names
    model, meta = vit.load_checkpoint(result.checkpoint)
    assert meta["status"] == "done" and meta["id2label"] == {"0": "sad", "1": "happy"}
    specs = vit.model_input(dataset.split("test"), meta, n_jobs=1, progress=False)
    np.testing.assert_allclose(vit.predict_proba(model, specs), vit.predict_proba(result.model, specs), atol=1e-6)
    evaluation = vit.evaluate(result, dataset, n_bootstrap=50, progress=False, n_jobs=1)
    table = pd.read_csv(evaluation.path)
    assert list(table.columns[:5]) == ["clip_id", "label", "p_happy", "predicted", "quadrant"]
    assert set(table["quadrant"]) <= {"TP", "TN", "FP", "FN"}
    assert int(evaluation.confusion.values.sum()) == len(dataset.split("test"))
    metrics = evaluation.metrics.set_index("metric")
    assert set(metrics.index) == {"accuracy", "balanced_accuracy", "f1", "roc_auc"}
    assert ((metrics["low"] <= metrics["value"] + 1e-9) | metrics["low"].isna()).all()


# The run to kill is a fresh interpreter, not a fork of this one: a forked
# child inherits whatever lock another thread of the test process held at the
# fork (tqdm's monitor, OpenMP, logging) and can hang on it for good, which
# once stalled a CI run until its time ran out. One thread, as in the parent
# (fixture one_thread), so the sums are bit-identical with the reference run.
_KILLED_RUN = """
import json, sys
import pandas as pd
import torch
from mer import vit
from mer.data import Dataset
torch.set_num_threads(1)
folder, target, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
dataset = Dataset(name="vit-test", clips=pd.read_csv(folder + "/clips.csv"), root=folder)
vit.train(dataset, out_dir=target, **options)
"""


@pytest.mark.parametrize("stage", ["fine-tuning", "pretraining", "valence"])
def test_killed_training_resumes_to_the_same_weights(workspace, stage):
    folder, dataset = workspace
    epochs, pretrain_epochs = (2, 8) if stage == "pretraining" else (8, 0)
    options = dict(TRAIN, epochs=epochs, pretrain_epochs=pretrain_epochs,
                   valence_weight=1.0 if stage == "valence" else 0.0)
    reference = vit.train(dataset, out_dir=folder / f"whole-{stage}", **options)
    target = folder / f"killed-{stage}"
    # meta.json commits an epoch (the pretraining stage has its own in pretrain/)
    watched = target / (f"{vit.PRETRAIN_DIR}/{vit.META_FILE}" if stage == "pretraining" else vit.META_FILE)
    process = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(dataset.root), str(target),
                                json.dumps(options)], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not watched.exists() and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint after 180 s"
            time.sleep(0.005)
    finally:
        process.send_signal(signal.SIGKILL)  # also when the wait above failed: never leave it running
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, f"the training process ended by itself ({process.returncode})"
    meta = json.loads(watched.read_text())
    assert meta["status"] == "training" and 1 <= meta["epoch"] < max(epochs, pretrain_epochs)  # stopped mid-run
    from safetensors.torch import load_file

    resume_state = load_file(str(watched.parent / meta["resume_file"]))  # the resume state is safetensors too
    assert any(key.startswith("optimizer.") for key in resume_state)
    # The valence head and its AdamW moments are resumed with the rest.
    assert any(key.startswith("best_head.") for key in resume_state) == (stage == "valence")
    resumed = vit.train(dataset, out_dir=target, **options)
    assert _same(_weights(resumed.checkpoint), _weights(reference.checkpoint))
    if stage == "valence":
        assert _same(load_file(str(resumed.checkpoint / vit.VALENCE_HEAD_FILE)),
                     load_file(str(reference.checkpoint / vit.VALENCE_HEAD_FILE)))
    columns = ["epoch", "train_loss", "train_acc", "val_loss", "val_balanced_accuracy", "selected"]
    pd.testing.assert_frame_equal(resumed.history[columns], reference.history[columns])
    assert resumed.best_epoch == reference.best_epoch


def test_valence_weight_trains_a_second_head_and_keeps_the_classifier_plain(workspace):
    from safetensors.torch import load_file
    from scipy.stats import spearmanr

    folder, dataset = workspace
    plain = vit.train(dataset, out_dir=folder / "run-a", **TRAIN)  # finished in the test above: read back
    result = vit.train(dataset, out_dir=folder / "valence", **dict(TRAIN, epochs=6, valence_weight=1.0))
    model, meta = vit.load_checkpoint(result.checkpoint)
    # The checkpoint is the same two-logit classifier (chapters 3 and 4 explain it as any other)...
    assert model.classifier.out_features == 2
    assert _weights(result.checkpoint).keys() == _weights(plain.checkpoint).keys()
    # ... with the head that read the valence beside it, not inside it.
    head = load_file(str(result.checkpoint / vit.VALENCE_HEAD_FILE))
    assert head["weight"].shape == (1, model.config.hidden_size)
    train_clips = dataset.split("train")
    assert meta["valence_standardisation"]["centre"] == pytest.approx(train_clips["valence"].mean())
    assert meta["valence_standardisation"]["scale"] == pytest.approx(train_clips["valence"].std(ddof=0))
    mse = result.history["train_valence_mse"]
    assert mse.iloc[-1] < 0.8 * mse.iloc[0], mse.tolist()
    # The head reads the valence off the very CLS token the classifier reads.
    specs = vit.model_input(train_clips, meta, n_jobs=1, progress=False)
    predicted = vit.representation(model, specs) @ head["weight"].numpy().T + head["bias"].numpy()
    assert spearmanr(predicted[:, 0], train_clips["valence"]).statistic > 0.5
    # Its own folder: the label-only run is not replaced.
    assert vit.checkpoint_dir(dataset, a=1) != vit.checkpoint_dir(dataset, a=1, valence_weight=1.0)
    for bad, match in (({"valence_weight": -1.0}, "valence_weight"),
                       ({"valence_weight": 1.0, "mixup_alpha": 0.2}, "mixup"),):
        with pytest.raises(ParameterError, match=match):
            vit.train(dataset, out_dir=folder / "bad", **dict(TRAIN, **bad))
    unrated = Dataset(name="vit-test", clips=dataset.clips.assign(valence=np.nan), root=dataset.root)
    with pytest.raises(ParameterError, match="valences"):
        vit.train(unrated, out_dir=folder / "unrated", **dict(TRAIN, valence_weight=1.0))


def test_balanced_order_sees_both_classes_equally_and_every_clip_each_epoch():
    labels = np.array([0] * 10 + [1] * 4)
    order = vit.balanced_order(labels, generator=torch.Generator().manual_seed(0))
    again = vit.balanced_order(labels, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(order, again) and len(order) == 20
    assert np.bincount(labels[order]).tolist() == [10, 10]
    seen = np.bincount(order, minlength=len(labels))
    assert (seen[:10] == 1).all()  # the larger class: each clip once
    assert set(seen[10:]) <= {2, 3} and seen[10:].sum() == 10  # the smaller: whole passes, then a partial one
    balanced = vit.balanced_order(np.array([0, 1] * 5), generator=torch.Generator().manual_seed(1))
    assert sorted(balanced) == list(range(10))  # balanced classes: a permutation


def test_span_mask_hides_contiguous_spans():
    mask = vit.span_mask(64, 54, ratio=0.5, span=3, generator=torch.Generator().manual_seed(0))
    again = vit.span_mask(64, 54, ratio=0.5, span=3, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (64, 54) and mask.dtype == torch.bool and torch.equal(mask, again)
    share = mask.float().mean(1)
    assert (share > 0.2).all() and (share <= 0.5 + 1e-9).all()  # overlapping spans hide fewer, never more
    for row in mask.numpy():  # every run of hidden tokens is at least one span long (or ends the clip)
        edges = np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0]))
        lengths = edges[1::2] - edges[::2]
        assert (lengths[:-1] >= 3).all() and (lengths >= 1).all()
    with pytest.raises(Exception, match="ratio"):
        vit.span_mask(2, 54, ratio=1.0, span=3, generator=torch.Generator())


def test_masked_pretraining_learns_to_fill_in_and_initialises_the_classifier(workspace):
    folder, dataset = workspace
    data = vit.prepare(dataset, logmel=LOGMEL, n_jobs=1, progress=False)
    model = vit.build_model("quick", n_mels=data["specs"].shape[2], n_frames=data["specs"].shape[3], seed=0)
    train_specs = data["specs"][data["split"] == "train"]
    out = vit.masked_pretrain(train_specs, model.config, out_dir=folder / "mim", epochs=12, batch_size=8,
                              init=model.vit.state_dict(), progress=False)
    losses = [row["reconstruction_loss"] for row in out["history"]]
    assert losses[-1] < 0.8 * losses[0], losses  # it learns to predict hidden stripes
    assert not any(key.startswith("embeddings.mask_token") for key in out["state"])
    model.vit.load_state_dict(out["state"])  # the classifier's encoder takes every weight
    again = vit.masked_pretrain(train_specs, model.config, out_dir=folder / "mim", epochs=12, batch_size=8,
                                progress=False)  # finished: read back, not redone
    assert _same(again["state"], out["state"]) and again["history"] == out["history"]
    with pytest.raises(vit.CheckpointError):  # a half-done run with other settings is not silently mixed in
        meta = json.loads((folder / "mim" / vit.META_FILE).read_text())
        meta["status"] = "training"
        (folder / "mim" / vit.META_FILE).write_text(json.dumps(dict(meta, resume_file="none")))
        vit.masked_pretrain(train_specs, model.config, out_dir=folder / "mim", epochs=13, batch_size=8,
                            progress=False)


def test_predict_file_windows_a_25_s_file(workspace, tmp_path):
    from mer import predict
    from mer.cli import predict as predict_cli

    folder, dataset = workspace
    result = vit.train(dataset, out_dir=folder / "ten-seconds", **dict(TRAIN, epochs=1, logmel={"n_mels": 32}))
    rng = np.random.default_rng(1)
    song = np.concatenate([_chord(440, False, 12.5, rng), _chord(150, True, 12.5, rng)])
    path = tmp_path / "song.wav"
    sf.write(path, song, SR)
    table = predict.predict_file(path, checkpoint=result.checkpoint)
    assert list(table["window"]) == ["0", "1", "2", "all"]
    assert list(table["partial"]) == [False, False, True, True]
    assert table["end_s"].iloc[2] == pytest.approx(25.0)
    weights = np.array([10, 10, 5])
    assert table["p_happy"].iloc[3] == pytest.approx(np.average(table["p_happy"].iloc[:3], weights=weights))
    assert len(predict.predict_file(path, checkpoint=result.checkpoint, window="first")) == 2
    status = predict_cli.main([str(tmp_path / "missing.wav"), "--checkpoint", str(result.checkpoint)])
    assert status != 0


def test_pretrained_offline_without_weights_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(vit.PretrainedNotFound, match="not on this machine"):
        vit.build_model("thesis", pretrained="no-such-org/no-such-vit-weights")


def test_pretrained_rgb_weights_are_adapted_to_one_channel(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    source = ViTForImageClassification(ViTConfig(image_size=32, patch_size=16, num_channels=3, hidden_size=32,
                                                 num_hidden_layers=1, num_attention_heads=2,
                                                 intermediate_size=64, num_labels=1000))
    source.save_pretrained(tmp_path / "imagenet-vit")
    model = vit.build_model(pretrained=str(tmp_path / "imagenet-vit"), n_mels=32, n_frames=64)
    rgb = source.vit.embeddings.patch_embeddings.projection.weight
    mono = model.vit.embeddings.patch_embeddings.projection.weight
    torch.testing.assert_close(mono, rgb.mean(dim=1, keepdim=True))
    assert model.vit.embeddings.position_embeddings.shape == (1, 1 + 2 * 4, 32)
    assert model(pixel_values=torch.zeros(1, 1, 32, 64)).logits.shape == (1, 2)


def test_two_process_data_parallel_training_matches_one_process(tmp_path):
    """The path ``accelerate launch`` takes on several GPUs, run here as two CPU
    processes (torchrun, gloo): each process trains on its half of every batch
    and the gradients are averaged, so the weights equal a one-process run's
    up to float rounding; only the main process writes the checkpoint."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = ["-m", "mer", "train", "--profile", "quick", "-q"]
    single = subprocess.run([sys.executable, *command, "--out-dir", str(tmp_path / "one")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             *command, "--out-dir", str(tmp_path / "two")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert double.returncode == 0, double.stderr[-2000:]
    assert double.stdout.count("checkpoint:") == 1  # one process reports and writes
    one, two = load_file(str(tmp_path / "one" / vit.WEIGHTS_FILE)), load_file(str(tmp_path / "two" / vit.WEIGHTS_FILE))
    assert one.keys() == two.keys()
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-4
    assert json.loads((tmp_path / "two" / vit.META_FILE).read_text())["status"] == "done"


def test_mixup_blends_each_batch_with_a_shuffled_copy():
    import torch

    batch = torch.randn(8, 1, 16, 12, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0])
    mixed, other, lam = vit.mixup(batch, target, generator=torch.Generator().manual_seed(3), alpha=0.4)
    again = vit.mixup(batch, target, generator=torch.Generator().manual_seed(3), alpha=0.4)
    assert 0.0 <= lam <= 1.0 and again[2] == lam and torch.equal(again[0], mixed)  # seeded: reproducible
    # Each mixed clip is lam * itself + (1 - lam) * the clip whose label is ``other``.
    for i in range(len(batch)):
        partners = [j for j in range(len(batch))
                    if torch.allclose(mixed[i], lam * batch[i] + (1 - lam) * batch[j], atol=1e-6)]
        assert partners and int(other[i]) in {int(target[j]) for j in partners}
    assert sorted(other.tolist()) == sorted(target.tolist())  # a permutation of the labels


def test_representation_is_what_the_head_reads():
    torch.manual_seed(0)
    model = vit.build_model("quick", n_mels=128, n_frames=108)
    x = np.random.default_rng(0).normal(size=(5, 1, 128, 108)).astype(np.float32)
    cls = vit.representation(model, x, pooling="cls", batch_size=2)
    assert cls.shape == (5, model.config.hidden_size)
    with torch.no_grad():
        logits = model(pixel_values=torch.as_tensor(x)).logits
        np.testing.assert_allclose(model.classifier(torch.as_tensor(cls)).numpy(), logits.numpy(), atol=1e-5)
    mean = vit.representation(model, x, pooling="mean")
    assert mean.shape == cls.shape and not np.allclose(mean, cls)
    with pytest.raises(ParameterError, match="pooling"):
        vit.representation(model, x, pooling="max")


def test_seed_spread_trains_each_seed_once_and_reuses_the_chapters_model(workspace):
    folder, dataset = workspace
    options = {k: v for k, v in TRAIN.items() if k not in ("seed", "progress")} | {"epochs": 1}
    first = vit.train(dataset, seed=0, progress=False, **options)
    written = (first.checkpoint / vit.META_FILE).stat().st_mtime_ns
    spread = vit.seed_spread(dataset, [0, 1], progress=False, **options)
    assert (first.checkpoint / vit.META_FILE).stat().st_mtime_ns == written
    assert list(spread["seed"]) == [0, 1]
    # Seed 0 is the model trained above, read back (same checkpoint), not trained again.
    assert spread.loc[0, "checkpoint"] == first.checkpoint.name
    assert spread.loc[0, "balanced_accuracy"] == vit.evaluate(first, dataset, progress=False).value("balanced_accuracy")
    assert spread.loc[1, "checkpoint"] != first.checkpoint.name
    assert spread.attrs["mean"] == pytest.approx(spread["balanced_accuracy"].mean())
    assert spread.attrs["sd"] == pytest.approx(spread["balanced_accuracy"].std(ddof=1))
    with pytest.raises(ParameterError, match="seeds"):
        vit.seed_spread(dataset, [0], seed=1, **options)


def test_clip_representations_are_one_pass_of_representation(workspace):
    _, dataset = workspace
    result = vit.train(dataset, **(TRAIN | {"epochs": 1}))
    tables = vit.clip_representations(result.model, dataset.clips, result.meta, progress=False)
    x = vit.model_input(dataset.clips, result.meta, progress=False)
    assert list(tables) == ["cls", "mean"]
    for pooling, table in tables.items():
        assert list(table.index) == list(dataset.clips["clip_id"])
        np.testing.assert_allclose(table.to_numpy(), vit.representation(result.model, x, pooling=pooling), atol=1e-6)
