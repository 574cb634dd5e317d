"""The trainer and evaluation on (x, c) data (issue 29): a conditional flow trains with
`Trainer`, is selected and evaluated on log p(x | c), and samples at contexts."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from flowlab.data.toy2d import TOY_CLASSES, toy_dataset, toy_dataset_with_labels
from flowlab.models.realnvp import realnvp
from flowlab.train import Trainer
from flowlab.train.evaluate import evaluate_nll


def _moons(n: int, seed: int) -> TensorDataset:
    x, y = toy_dataset_with_labels("two_moons", n, seed=seed)
    return TensorDataset(x.float(), torch.nn.functional.one_hot(y, 2).float())


def test_a_conditional_realnvp_trains_with_the_trainer_and_uses_its_context(tmp_path):
    torch.manual_seed(0)
    train, test = _moons(2000, 0), _moons(500, 1)
    flow = realnvp(2, couplings=4, hidden=(32, 32), context_features=2)
    trainer = Trainer(flow, train, test, steps=300, batch_size=128, lr=3e-3, log_every=50,
                      eval_every=100, run_dir=str(tmp_path / "run"), progress=False,
                      n_samples=20)
    rows = trainer.fit()
    assert trainer.test_result is not None
    assert [r["step"] for r in rows if "val_nll" in r] == [100, 200, 300]
    # the context helps: scored with the other moon's label the test data are far less likely
    x, c = test.tensors
    right = evaluate_nll(flow, test)["nll"]
    wrong = evaluate_nll(flow, TensorDataset(x, c.flip(1)))["nll"]
    assert right < wrong - 1.0
    assert trainer.test_result["nll"] == pytest.approx(right, rel=1e-5)
    # samples at the training contexts (default) and at given ones
    assert trainer.sample(6).shape == (6, 2)
    lower = trainer.sample(400, context=torch.tensor([0.0, 1.0]), seed=0)
    upper = trainer.sample(400, context=torch.tensor([1.0, 0.0]), seed=0)
    assert lower[:, 1].mean() < upper[:, 1].mean()  # the lower moon lies below the upper one
    assert (tmp_path / "run" / "samples").is_dir()


class Pairs(Dataset):
    """(x, c) pairs one at a time: the DataLoader path of the trainer."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return self.data[i]


def test_a_dataset_of_pairs_gives_the_same_steps_as_a_tensor_dataset():
    data = _moons(512, 0)
    losses = []
    for train in (data, Pairs(data)):
        torch.manual_seed(0)
        flow = realnvp(2, couplings=2, hidden=(8,), context_features=2)
        rows = Trainer(flow, train, None, steps=6, batch_size=64, log_every=3,
                       val_fraction=0.0, progress=False).fit()
        losses.append([r["loss"] for r in rows if "loss" in r])
        assert evaluate_nll(flow, train)["nll"] > 0
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_a_conditional_model_without_contexts_says_what_to_pass():
    flow = realnvp(2, couplings=2, hidden=(8,), context_features=2)
    x = toy_dataset("two_moons", 256).float()
    with pytest.raises(TypeError, match=r"give data that yield \(x, context\) pairs"):
        Trainer(flow, x, None, steps=2, batch_size=64, val_fraction=0.0, progress=False).fit()
    with pytest.raises(TypeError, match=r"evaluate it on data that yield \(x, context\)"):
        evaluate_nll(flow, x)


def test_an_unconditional_model_ignores_labels_as_before():
    """(x, label) pairs for an unconditional flow: the label is not a context."""
    data = _moons(256, 0)
    flow = realnvp(2, couplings=2, hidden=(8,))
    Trainer(flow, data, None, steps=2, batch_size=64, val_fraction=0.0, progress=False).fit()
    assert evaluate_nll(flow, data)["nll"] == pytest.approx(
        evaluate_nll(flow, data.tensors[0])["nll"])


@pytest.mark.parametrize("name", list(TOY_CLASSES))
def test_toy_labels_name_the_component_of_every_point(name):
    x, y = toy_dataset_with_labels(name, 3000, seed=3)
    assert torch.equal(x, toy_dataset(name, 3000, seed=3))
    assert y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(TOY_CLASSES[name]))
    if name == "rings":
        from flowlab.data.toy2d import RINGS_RADII

        radius = torch.tensor(RINGS_RADII, dtype=x.dtype)[y]
        assert (x.norm(dim=1) - radius).abs().mean() < 0.1
    if name == "eight_gaussians":
        from flowlab.data.toy2d import _eight_centres

        assert (x - _eight_centres(x.dtype)[y]).norm(dim=1).max() < 1.5
    if name == "two_moons":  # label 0: the upper moon
        assert x[y == 0, 1].mean() > x[y == 1, 1].mean()
