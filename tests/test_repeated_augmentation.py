"""data.repeated_augmentations=k: each image k times per epoch across ranks, under k different augmentations,
resumable mid-epoch; k=1 keeps the plain resumable sampler."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DistributedSampler

from convnetlab.data.datamodule import ShapesDataModule
from convnetlab.data.resumable import EpochPermutationSampler, RepeatedAugmentationSampler

SHAPES = dict(num_classes=4, per_class_train=6, per_class_val=2, per_class_test=2, batch_size=8, num_workers=0)


def all_ranks(n: int, k: int, world: int, epoch: int = 0, **kwargs) -> list[list[int]]:
    samplers = [RepeatedAugmentationSampler(n, seed=7, repeats=k, num_replicas=world, rank=r, **kwargs)
                for r in range(world)]
    for s in samplers:
        s.set_epoch(epoch)
    return [list(s) for s in samplers]


@pytest.mark.parametrize("n, k, world", [(30, 4, 1), (30, 4, 2), (30, 3, 4), (31, 4, 8), (17, 2, 3)])
def test_each_index_appears_k_times_per_epoch_across_ranks(n, k, world):
    ranks = all_ranks(n, k, world, epoch=3)
    assert len({len(r) for r in ranks}) == 1  # every rank runs the same number of steps
    keys = [key for r in ranks for key in r]
    counts = Counter(key % n for key in keys)
    padding = len(keys) - n * k  # wrap-around padding to a multiple of the world size, as DistributedSampler
    assert 0 <= padding < world
    assert set(counts) == set(range(n)) and all(c >= k for c in counts.values())
    assert sum(c - k for c in counts.values()) == padding
    distinct = set(keys)
    assert len(distinct) == n * k  # the k copies of an image have k different keys (augmentation seeds)
    assert all(3 * k * n <= key < 4 * k * n for key in distinct)  # epoch 3's keys only: none repeat across epochs


def test_copies_go_to_different_ranks_when_there_are_as_many_ranks_as_copies():
    n, k = 12, 4
    ranks = all_ranks(n, k, world=k)
    for i in range(n):
        holders = [r for r, keys in enumerate(ranks) if any(key % n == i for key in keys)]
        assert sorted(holders) == list(range(k))


def test_epochs_differ_and_the_order_is_a_function_of_seed_and_epoch():
    assert all_ranks(20, 2, 1, epoch=0) == all_ranks(20, 2, 1, epoch=0)
    assert all_ranks(20, 2, 1, epoch=0) != all_ranks(20, 2, 1, epoch=1)


def test_dataset_epoch_length_is_torchvisions():
    n, k, world = 1000, 4, 2
    ranks = all_ranks(n, k, world, epoch_length="dataset")
    assert [len(r) for r in ranks] == [n // 256 * 256 // world] * world  # RASampler's num_selected_samples


def test_lightning_does_not_rewrap_it_under_ddp():
    assert isinstance(RepeatedAugmentationSampler(10, 0, 2, 2, 1), DistributedSampler)


def test_resume_mid_epoch_continues_exactly():
    full = RepeatedAugmentationSampler(50, seed=3, repeats=3, num_replicas=2, rank=1)
    full.set_epoch(2)
    expected = list(full)
    resumed = RepeatedAugmentationSampler(50, seed=3, repeats=3, num_replicas=2, rank=1)
    resumed.resume_at(2, 17)
    assert list(resumed) == expected[17:]
    assert list(resumed) == expected  # once: the next pass is the whole epoch again
    past_end = RepeatedAugmentationSampler(50, seed=3, repeats=3, num_replicas=2, rank=1)
    past_end.resume_at(1, len(past_end))  # a checkpoint at the end of epoch 1 starts epoch 2
    assert list(past_end) == expected


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ra_data")


def keyed_batches(dm) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images.clone(), labels.clone()) for images, labels in dm.train_dataloader()]


def test_the_k_copies_get_different_augmentations_and_a_datamodule_resumes_mid_epoch(shapes_root):
    k = 3
    dm = ShapesDataModule(root=shapes_root, repeated_augmentations=k, **SHAPES)
    dm.setup("fit")
    batches = keyed_batches(dm)
    assert isinstance(dm.train_sampler, RepeatedAugmentationSampler)
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    n = len(dm.train_dataset)
    assert len(images) == n * k
    keys = dm.train_sampler.epoch_keys()
    for j in range(0, len(keys), k):  # one process: the copies of an image sit side by side
        group = keys[j:j + k]
        assert len({int(key) % n for key in group}) == 1 and len(set(labels[j:j + k].tolist())) == 1
        assert all(not torch.equal(images[j + a], images[j + b]) for a in range(k) for b in range(a + 1, k))

    resumed = ShapesDataModule(root=shapes_root, repeated_augmentations=k, **SHAPES)
    resumed.setup("fit")
    resumed.resume_train_at(0, 4)  # 4 batches of epoch 0 were trained before the interruption
    rest = keyed_batches(resumed)
    assert len(rest) == len(batches) - 4
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(rest, batches[4:]))


def test_one_repeat_is_the_plain_resumable_sampler(shapes_root):
    dm = ShapesDataModule(root=shapes_root, **SHAPES)
    dm.setup("fit")
    dm.train_dataloader()
    assert type(dm.train_sampler) is EpochPermutationSampler and dm.repeated_augmentations == 1
