"""flowlab.train.batching.Batches on its own: order, resumption, processes, contexts."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from flowlab.train.batching import Batches, as_args, check_finite_data, training_contexts


def _ids(batches):
    return [b[:, 0].long().tolist() for b in batches]


def test_an_epoch_reads_each_sample_at_most_once_in_a_seeded_order():
    x = torch.arange(10.0).view(10, 1)
    batches = Batches(x, batch_size=3, seed=0)
    assert batches.steps_per_epoch == 3  # the 10th sample is dropped, not a short batch
    epoch0 = _ids(batches.epoch(0))
    flat = [i for batch in epoch0 for i in batch]
    assert len(flat) == len(set(flat)) == 9
    assert _ids(batches.epoch(0)) == epoch0  # the same seed, the same order
    assert _ids(batches.epoch(1)) != epoch0  # the next epoch reshuffles
    assert _ids(Batches(x, batch_size=3, seed=1).epoch(0)) != epoch0


def test_a_resumed_position_reads_what_the_uninterrupted_epoch_reads():
    batches = Batches(torch.arange(20.0).view(20, 1), batch_size=4, seed=3)
    full = _ids(batches.epoch(2))
    assert _ids(batches.epoch(2, first=3)) == full[3:]
    assert batches.position(13) == (2, 3)  # step 14 reads batch 3 of epoch 2 (5 per epoch)


def test_processes_split_the_global_batches_of_one_process():
    x = torch.arange(32.0).view(32, 1)
    one = _ids(Batches(x, batch_size=8, seed=0).epoch(0))
    ranks = [_ids(Batches(x, batch_size=8, seed=0, world_size=2, rank=r).epoch(0))
             for r in range(2)]
    for k, global_batch in enumerate(one):
        assert len(ranks[0][k]) == len(ranks[1][k]) == 4
        assert sorted(ranks[0][k] + ranks[1][k]) == sorted(global_batch)


def test_fewer_samples_than_a_batch_is_an_error_that_says_what_to_do():
    with pytest.raises(ValueError, match="after holding out 5 for validation.*lower batch_size"):
        Batches(torch.zeros(7, 2), batch_size=8, held_out=5)


def test_batches_go_to_the_dtype_and_contexts_come_in_pairs():
    x, c = torch.randn(16, 2), torch.randn(16, 3)
    batches = Batches(TensorDataset(x, c), batch_size=4, dtype=torch.float64, conditional=True)
    bx, bc = next(batches.epoch(0))
    assert bx.dtype == bc.dtype == torch.float64 and bc.shape == (4, 3)
    assert as_args((bx, bc)) == (bx, bc) and as_args(bx) == (bx,)
    labels = torch.arange(16)  # integer contexts keep their dtype
    _, bl = next(Batches(TensorDataset(x, labels), batch_size=4, conditional=True,
                         dtype=torch.float64).epoch(0))
    assert bl.dtype == torch.long
    with pytest.raises(TypeError, match="MyFlow is conditional.*TensorDataset\\(x, c\\)"):
        next(Batches(x, batch_size=4, conditional=True, model_name="MyFlow").epoch(0))


class _Pairs(Dataset):
    """A dataset of (image, label) pairs, read through a DataLoader."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        return torch.full((1, 2, 2), float(i), dtype=torch.float64), i


def test_a_dataset_is_read_through_a_loader_in_the_same_order_as_a_tensor():
    loaded = Batches(_Pairs(), batch_size=4, seed=5, dtype=torch.float32)
    tensor = Batches(torch.arange(12.0).view(12, 1), batch_size=4, seed=5)
    for from_dataset, from_tensor in zip(loaded.epoch(1), tensor.epoch(1)):
        assert from_dataset.shape == (4, 1, 2, 2) and from_dataset.dtype == torch.float32
        assert from_dataset[:, 0, 0, 0].tolist() == from_tensor[:, 0].tolist()


def test_contexts_of_the_training_samples_cycle_and_bad_data_is_named():
    c = torch.arange(3.0).view(3, 1)
    assert training_contexts(TensorDataset(torch.zeros(3, 2), c), 5)[:, 0].tolist() == [
        0, 1, 2, 0, 1]
    pairs = [(torch.zeros(2), torch.tensor([float(i)])) for i in range(3)]
    assert training_contexts(pairs, 4)[:, 0].tolist() == [0, 1, 2, 0]
    bad = torch.zeros(4, 2)
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="the training data"):
        check_finite_data(bad, "training")
    with pytest.raises(ValueError, match="the test contexts"):
        check_finite_data(TensorDataset(torch.zeros(4, 2), bad), "test")
