"""module.channels_last=auto: the faster format is measured on this machine, cached per machine and model,
agreed by every run sharing the cache, kept in checkpoints, and the probe leaves the run untouched."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from conftest import random_image_loader as loader
from convnetlab.errors import InputError
from convnetlab.lit import ImageClassifier
from convnetlab.lit import memory_format as mf
from convnetlab.models import build_model

LENET = {"arch": "lenet5", "num_classes": 4, "in_channels": 3, "input_size": 32}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05, "momentum": 0.9}
SHAPE = (8, 3, 32, 32)
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVNETLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / mf.CACHE_FILE


def timings(nchw_ms: float, last_ms: float, calls: list | None = None):
    def measure(*args, **kwargs):
        if calls is not None:
            calls.append(args)
        return nchw_ms, last_ms
    return measure


def fail_if_measured(*args, **kwargs):
    raise AssertionError("the probe ran although the answer was known")


@pytest.mark.parametrize(("nchw_ms", "last_ms", "expected"), [(10.0, 8.0, True), (8.0, 10.0, False)])
def test_the_faster_format_wins_and_is_cached_per_machine_and_model(cache, nchw_ms, last_ms, expected):
    model = build_model(**LENET)
    choice = mf.choose(model, LENET, SHAPE, CPU, measure=timings(nchw_ms, last_ms))
    assert (choice.channels_last, choice.source) == (expected, "probe")
    (entry,) = json.loads(cache.read_text()).values()
    assert entry["channels_last"] is expected and entry["model"]["input"] == list(SHAPE)
    assert entry["machine"] == mf.machine_key(CPU)
    again = mf.choose(model, LENET, SHAPE, CPU, measure=fail_if_measured)
    assert (again.channels_last, again.source) == (expected, "cache")


def test_another_input_shape_mode_or_precision_is_measured_again(cache):
    model, calls = build_model(**LENET), []
    mf.choose(model, LENET, SHAPE, CPU, measure=timings(10, 8, calls))
    mf.choose(model, LENET, (16, 3, 32, 32), CPU, measure=timings(10, 8, calls))
    mf.choose(model, LENET, SHAPE, CPU, train=False, measure=timings(10, 8, calls))
    mf.choose(model, LENET, SHAPE, CPU, precision="bf16-mixed", measure=timings(10, 8, calls))
    mf.choose(model, {**LENET, "num_classes": 5}, SHAPE, CPU, measure=timings(10, 8, calls))
    assert len(calls) == 5 and len(json.loads(cache.read_text())) == 5


def test_runs_sharing_a_cache_agree_with_the_first_answer_stored(cache):
    """Two runs that both measured (e.g. two DDP ranks, or a race) take whichever answer was stored first."""
    model = build_model(**LENET)
    first = mf.choose(model, LENET, SHAPE, CPU, measure=timings(10, 8))
    entries = json.loads(cache.read_text())
    cache.write_text("{}")
    second = mf.choose(model, LENET, SHAPE, CPU, measure=timings(8, 10))  # measures, finds no entry: stores NCHW
    assert (first.channels_last, second.channels_last) == (True, False)
    cache.write_text(json.dumps(entries))
    key = next(iter(entries))
    racing = mf._add(cache, key, {"channels_last": False})  # a late writer adopts the stored answer
    assert racing["channels_last"] is True and json.loads(cache.read_text())[key]["channels_last"] is True


def test_a_damaged_cache_is_measured_again_and_an_unwritable_one_only_warns(cache, tmp_path, monkeypatch, caplog):
    model = build_model(**LENET)
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert mf.choose(model, LENET, SHAPE, CPU, measure=timings(10, 8)).source == "probe"
    assert len(json.loads(cache.read_text())) == 1
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CONVNETLAB_CACHE_DIR", str(blocker / "cache"))  # a directory cannot be made there
    assert mf.choose(model, LENET, SHAPE, CPU, measure=timings(8, 10)).channels_last is False
    assert "could not cache the memory-format choice" in caplog.text


def test_networks_without_convolutions_stay_nchw_without_a_probe():
    head = build_model(arch="linear_head", num_classes=4, in_channels=16)
    assert mf.choose(head, {"arch": "linear_head"}, (8, 16, 1, 1), CPU, measure=fail_if_measured).channels_last is False


def test_the_probe_times_both_formats_and_leaves_weights_and_random_state_untouched():
    torch.manual_seed(0)
    model = build_model(arch="resnet18", num_classes=4, width=0.125, input_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    nchw_ms, last_ms = mf.probe(model, SHAPE, CPU, rounds=2)
    assert nchw_ms > 0 and last_ms > 0
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # incl. BN running stats
    assert model.conv1.weight.is_contiguous() and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("train", [True, False])
def test_the_probe_runs_training_steps_for_fit_and_no_grad_eval_passes_otherwise(train):
    seen = []
    model = build_model(**LENET)
    model.register_forward_hook(lambda m, args, out: seen.append((m.training, torch.is_grad_enabled())))
    mf.probe(model, SHAPE, CPU, train=train, rounds=2)
    assert seen == [(train, train)] * 6  # a warm-up and two timed steps per format, copies of the model


def module(channels_last) -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(backbone=LENET, num_classes=4, optimizer=SGD, mean=[0.5] * 3, std=[0.25] * 3,
                           channels_last=channels_last)


class Shapes(pl.LightningDataModule):
    """Random images with the attributes ImageDataModule exposes for the probe."""

    batch_size, eval_batch_size, channels, train_image_size, image_size = 8, 8, 3, 32, 32

    def train_dataloader(self):
        return loader(16)

    def val_dataloader(self):
        return loader(8, seed=1)


def fit(tmp_path, classifier, ckpt_path=None, epochs=1) -> pl.Trainer:
    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
                         callbacks=[ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1)])
    trainer.fit(classifier, datamodule=Shapes(), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("measured_faster", [True, False])
def test_auto_trains_in_the_measured_format_and_the_checkpoint_keeps_it(tmp_path, monkeypatch, measured_faster):
    calls = []
    monkeypatch.setattr(mf, "probe", timings(*((10, 8) if measured_faster else (8, 10)), calls))
    classifier = module("auto")
    assert not classifier.uses_channels_last  # unresolved until a Trainer sets it up
    fit(tmp_path, classifier)
    assert len(calls) == 1 and calls[0][1] == (8, 3, 32, 32)  # the data's batch shape
    assert classifier.uses_channels_last is measured_faster
    conv = next(m for m in classifier.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) is measured_faster
    checkpoint = torch.load(tmp_path / "epoch=0.ckpt", weights_only=True)
    assert checkpoint["memory_format"] == {"channels_last": measured_faster}
    assert checkpoint["hyper_parameters"]["channels_last"] == "auto"
    monkeypatch.setattr(mf, "probe", fail_if_measured)
    (tmp_path / "cache").rename(tmp_path / "elsewhere")  # no cache: only the checkpoint can say
    restored = ImageClassifier.load_from_checkpoint(tmp_path / "epoch=0.ckpt")
    assert restored.uses_channels_last is measured_faster
    monkeypatch.setattr(mf, "probe", timings(*((8, 10) if measured_faster else (10, 8))))  # now the other wins
    resumed = module("auto")
    fit(tmp_path / "resume", resumed, ckpt_path=tmp_path / "epoch=0.ckpt", epochs=2)
    assert resumed.uses_channels_last is measured_faster


@pytest.mark.parametrize("channels_last", [True, False])
def test_an_explicit_format_skips_the_probe(tmp_path, monkeypatch, channels_last):
    monkeypatch.setattr(mf, "probe", fail_if_measured)
    classifier = module(channels_last)
    fit(tmp_path, classifier)
    assert classifier.uses_channels_last is channels_last


def test_an_unknown_memory_format_word_is_refused():
    with pytest.raises(InputError, match="channels_last='yes': use true, false or auto"):
        module("yes")


def test_a_slow_model_is_timed_in_one_round(monkeypatch):
    """A probe step over SLOW_STEP_S (a large model on a CPU): one warm-up and one timed step per format."""
    seen = []
    model = build_model(**LENET)
    model.register_forward_hook(lambda m, args, out: seen.append(1))
    monkeypatch.setattr(mf, "SLOW_STEP_S", 0.0)
    mf.probe(model, SHAPE, CPU, rounds=3)
    assert len(seen) == 4


@pytest.mark.parametrize("channels_last", [True, False])
def test_normalize_gives_the_model_its_own_format_whatever_layout_the_batch_arrives_in(channels_last):
    """Batches of JPEG region decodes arrive channels-last (``collate_present``), others NCHW."""
    classifier = module(channels_last)
    nchw = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    expected = (nchw.float() - 0.5 * 255) / (0.25 * 255)
    for batch in (nchw, nchw.contiguous(memory_format=torch.channels_last)):
        images = classifier.normalize(batch)
        assert images.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        torch.testing.assert_close(images, expected)
