"""Checkpoints survive code moves: one written by convnetlab 0.1.0 (before the architecture registry)
still loads, predicts the same logits, and new checkpoints name architectures, not import paths."""

from pathlib import Path

import torch

from convnetlab.lit import ImageClassifier

FIXTURES = Path(__file__).parent / "fixtures"
V010 = FIXTURES / "lenet5_digits_v0.1.0.ckpt"  # `convnetlab-train model=lenet5 data=digits`, 2 steps, at 0.1.0


def test_v0_1_0_checkpoint_loads_and_predicts_the_same_logits():
    module = ImageClassifier.load_from_checkpoint(V010, map_location="cpu", weights_only=True).eval()
    expected = torch.load(FIXTURES / "lenet5_digits_v0.1.0.logits.pt", weights_only=True)
    with torch.no_grad():
        logits = module(expected["images"])
    torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=1e-6)
    assert module.hparams.backbone["arch"] == "lenet5"
