"""The Hydra config tree composes for every option people type, and trainer variants mean what they say."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from convnetlab.cli.hydra_app import config_dir, register_resolvers

CONF = Path(config_dir())


def names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.name.startswith("_"))  # _*: bases


def composed(*overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


def test_config_dir_is_the_repositorys_conf():
    assert (CONF / "train.yaml").is_file() and (CONF / "eval.yaml").is_file()


@pytest.mark.parametrize("trainer", names("trainer"))
def test_every_trainer_variant_composes_from_the_shared_default(trainer):
    cfg = composed(f"trainer={trainer}")
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
    assert cfg.trainer.max_epochs == OmegaConf.load(CONF / "trainer" / "default.yaml").max_epochs


def test_gpu_trainers_use_bf16_and_a_measured_memory_format_and_ddp_syncs_batchnorm():
    gpu = composed("trainer=gpu")
    assert gpu.trainer.precision == "bf16-mixed" and gpu.module.channels_last == "auto"
    ddp = composed("trainer=ddp")
    assert ddp.trainer.sync_batchnorm is True and ddp.trainer.devices == -1
    cpu = composed("trainer=ddp_cpu")
    assert cpu.trainer.accelerator == "cpu" and cpu.trainer.devices == 2


@pytest.mark.parametrize("model", names("model"))
def test_every_model_config_takes_its_classes_and_size_from_the_data(model):
    cfg = composed(f"model={model}", "data=digits")
    assert model.startswith(cfg.model.arch)  # resnet18_cpu is a sized resnet18
    assert cfg.model.num_classes == 10 and cfg.model.in_channels == 1 and cfg.model.input_size == 32


def test_loggers_can_be_listed_and_scheduler_can_be_switched():
    cfg = composed("logger=[csv,tensorboard]", "scheduler=step", "optimizer=adamw")
    assert set(cfg.logger) == {"csv", "tensorboard"}
    assert cfg.module.scheduler._target_.endswith("schedules.step")
    assert cfg.module.optimizer._target_ == "torch.optim.AdamW"


def test_default_model_is_the_documented_cpu_sized_resnet18():
    cfg = composed()
    assert cfg.model.arch == "resnet18" and cfg.model.width == 0.25 and cfg.data.name == "shapes"
