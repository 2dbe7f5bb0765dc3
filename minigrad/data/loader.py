"""``DataLoader``: cuts a dataset into batches, in a fresh seeded order each epoch.

The order of epoch ``e`` is ``np.random.default_rng([seed, e]).permutation(N)``: it depends
only on the seed and the epoch number, so a run is repeatable, every epoch is shuffled
differently, a resumed run (``load_state_dict``) continues with the same order, and splitting
a batch into micro-batches later (``train.accumulate``) cannot change which samples meet.
"""
from __future__ import annotations

import numbers

from .. import backend, random
from ..backend import np
from ..tensor import Tensor
from .dataset import TensorDataset


class DataLoader:
    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None, device=None):
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if seed is not None and (not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed: expected a non-negative int or None, got {seed!r}")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        if seed is None:  # take one from minigrad's global generator: mg.manual_seed still fixes it
            seed = random.generator().integers(2**63) if shuffle else 0  # (unshuffled: nothing drawn)
        self.seed = int(seed)
        self.device = backend.parse_device(device)
        self.epoch = 0  # the epoch the next iteration will run

    def __len__(self):
        """ceil(N / batch_size) batches, or floor(N / batch_size) with drop_last."""
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def set_epoch(self, epoch):
        if not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"epoch: expected a non-negative int, got {epoch!r}")
        self.epoch = int(epoch)

    def epoch_order(self, epoch):
        """The sample indices of ``epoch`` in the order they are served."""
        n = len(self.dataset)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def __iter__(self):
        order = self.epoch_order(self.epoch)
        self.epoch += 1  # counted when the epoch starts: a second `for` gets a new order
        starts = range(0, len(self) * self.batch_size, self.batch_size)
        return (self._batch(order[start:start + self.batch_size]) for start in starts)

    def _batch(self, indices):
        if isinstance(self.dataset, TensorDataset):
            fields = [array[indices] for array in self.dataset.arrays]  # one indexing per array, no loop
        else:
            samples = [self.dataset[int(i)] for i in indices]
            fields = [np.stack([_host(sample[k]) for sample in samples]) for k in range(len(samples[0]))]
        return tuple(Tensor(field, device=self.device) for field in fields)

    # ------------------------------------------------------------------ resuming
    def state_dict(self):
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state):
        if not isinstance(state, dict) or "epoch" not in state:
            raise ValueError(f"state: expected a dict with key 'epoch', got {state!r}")
        seed = state.get("seed", self.seed)
        if not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"state['seed']: expected a non-negative int, got {seed!r}")
        self.set_epoch(state["epoch"])
        self.seed = int(seed)


def _host(value):
    return value.numpy() if isinstance(value, Tensor) else np.asarray(value)
