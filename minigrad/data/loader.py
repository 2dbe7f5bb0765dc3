"""``DataLoader``: cuts a dataset into batches, in a fresh seeded order each epoch.

The order of epoch ``e`` is ``np.random.default_rng([seed, e]).permutation(N)``: it depends
only on the seed and the epoch number, so a run is repeatable, every epoch is shuffled
differently, a resumed run (``load_state_dict``) continues with the same order, and splitting
a batch into micro-batches later (``train.accumulate``) cannot change which samples meet.
A ``sampler`` (any iterable of sample indices with a length) replaces that order with its own.

``num_workers > 0`` builds batches in that many worker processes (``data/workers.py``; worth it
when a dataset's ``__getitem__`` does real work: decoding, augmenting), exactly the batches of
``num_workers=0``, in order. Workers build host arrays only; moving a batch to the device
(through pinned host memory with ``pin_memory=True`` on CUDA) happens in the main process.

Read next: ``data/workers.py`` (the worker processes), then ``data/datasets.py``.
"""
from __future__ import annotations

import functools
import itertools
import math
import numbers
import os
import weakref

from .. import backend, random
from ..backend import np
from ..tensor import Tensor
from .dataset import TensorDataset
from .workers import MAX_PREFETCH, Workers, start_method


class DataLoader:
    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, num_workers=0, collate_fn=None,
                 pin_memory=False, drop_last=False, *, timeout=0, multiprocessing_context=None,
                 persistent_workers=False, prefetch_factor=2, seed=None, device=None):
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if seed is not None and (not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed: expected a non-negative int or None, got {seed!r}")
        check_worker_options(num_workers, timeout, multiprocessing_context, persistent_workers, prefetch_factor,
                             collate_fn)
        if sampler is not None and shuffle:
            raise ValueError("sampler: the sampler sets the order, so shuffle must be False (as PyTorch)")
        if sampler is not None and not (hasattr(sampler, "__iter__") and hasattr(sampler, "__len__")):
            raise TypeError(f"sampler: expected an iterable of sample indices with a length, got "
                            f"{type(sampler).__name__}")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last, self.sampler = bool(shuffle), bool(drop_last), sampler
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        self.num_workers, self.persistent_workers = int(num_workers), bool(persistent_workers)
        self.prefetch_factor, self.pin_memory = int(prefetch_factor), bool(pin_memory)
        self.timeout = float(timeout)  # seconds to wait for a worker's batch; 0: no limit
        self.multiprocessing_context = multiprocessing_context  # None: "fork" where the OS has it
        if seed is None:  # take one from minigrad's global generator: mg.manual_seed still fixes it
            seed = random.generator().integers(2**63) if shuffle else 0  # (unshuffled: nothing drawn)
        self.seed = int(seed)
        self.device = backend.parse_device(device)
        self.epoch = 0  # the epoch the next iteration will run
        self._workers = None  # the worker processes kept between epochs (persistent_workers)

    def __len__(self):
        """ceil(N / batch_size) batches, or floor(N / batch_size) with drop_last."""
        full, rest = divmod(self._num_samples(), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _num_samples(self):
        return len(self.sampler) if self.sampler is not None else len(self.dataset)

    def set_epoch(self, epoch):
        if not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"epoch: expected a non-negative int, got {epoch!r}")
        self.epoch = int(epoch)

    def epoch_order(self, epoch):
        """The sample indices of ``epoch`` in the order they are served."""
        if self.sampler is not None:
            return np.asarray(list(self.sampler), dtype=np.int64)
        n = len(self.dataset)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def __iter__(self):
        order = self.epoch_order(self.epoch)
        self.epoch += 1  # counted when the epoch starts: a second `for` gets a new order
        spans = [(start, start + self.batch_size) for start in range(0, len(self) * self.batch_size, self.batch_size)]
        host_batches = (self._in_workers(order, spans) if self.num_workers
                        else (host_batch(self.dataset, self.collate_fn, order[start:stop]) for start, stop in spans))
        return (self._to_device(batch) for batch in host_batches)

    def _to_device(self, batch):
        """Host arrays (in tuples, lists, dicts) become Tensors on the loader's device; with
        ``pin_memory`` on CUDA each array is first staged in page-locked host memory, which the
        GPU copies from directly (PyTorch's pin_memory). Anything else is left as collate made it."""
        if isinstance(batch, (tuple, list)):
            return type(batch)(self._to_device(field) for field in batch)
        if isinstance(batch, dict):
            return {key: self._to_device(field) for key, field in batch.items()}
        if isinstance(batch, Tensor):
            batch = batch.array
        if isinstance(batch, np.ndarray):
            if self.pin_memory and self.device != "cpu":
                batch = backend.pinned_host_copy(batch)
            return Tensor(batch, device=self.device)
        return batch

    # ------------------------------------------------------------------ worker processes
    def _in_workers(self, order, spans):
        """Host batches built by the worker processes: ``order[start:stop]`` for each span, in order.

        At most ``prefetch_factor * num_workers`` batches are in flight: enough to keep every
        worker busy while the training step runs, without loading the whole epoch ahead.
        Persistent workers serve the next epoch too, unless this one ended in an error.
        """
        workers, pending, ended_well = self._idle_workers(), iter(spans), False
        try:
            workers.share(order)
            for span in itertools.islice(pending, self.prefetch_factor * self.num_workers):
                workers.hand_out(span)
            while workers.waiting:
                batch = workers.take_back()
                span = next(pending, None)  # one batch taken back, one handed out
                if span is not None:
                    workers.hand_out(span)
                yield batch
            ended_well = True
        except GeneratorExit:  # the loop over the loader stopped early (break): the next epoch drops
            ended_well = True      # the batches still owed
            raise
        finally:
            self._end_epoch(workers, ended_well)

    def _idle_workers(self):
        """The persistent workers, or new ones (also when a second loop over this loader starts
        while the persistent workers serve the first). Batches still owed from an epoch left
        early (break) are taken back and dropped here, not when the loop was left: code run
        while a generator is closed cannot raise (a Ctrl-C there would be printed and lost)."""
        workers = self._workers
        if workers is not None and (workers.stopped or workers.owner != os.getpid()):
            workers = self._workers = None  # (in a forked child: the parent's workers are not ours)
        if workers is not None and not workers.in_use and workers.waiting:
            drained = False
            try:
                drained = workers.drain()
            finally:
                if not drained:
                    self._workers = None
                    workers.stop()
                    workers = None
        if workers is None or workers.in_use:
            build = functools.partial(host_batch, self.dataset, self.collate_fn)
            workers = Workers(self.num_workers, build, self.timeout, self.multiprocessing_context)
            if self.persistent_workers and self._workers is None:
                self._workers = workers
                workers.finalizer = weakref.finalize(self, workers.stop)
        workers.in_use = True
        return workers

    def _end_epoch(self, workers, ended_well):
        """Persistent workers are kept for the next epoch, unless this one ended in an error; all
        others stop."""
        workers.in_use = False
        if not (ended_well and workers is self._workers):
            if workers is self._workers:
                self._workers = None  # the next epoch starts new ones
            workers.stop()

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

    def __getstate__(self):  # a loader travels to other processes without its worker processes
        return {**self.__dict__, "_workers": None}


def check_worker_options(num_workers, timeout, multiprocessing_context, persistent_workers, prefetch_factor,
                         collate_fn):
    if not isinstance(num_workers, numbers.Integral) or isinstance(num_workers, bool) or num_workers < 0:
        raise ValueError(f"num_workers: expected an int >= 0, got {num_workers!r}")
    if not isinstance(timeout, numbers.Real) or isinstance(timeout, bool) or not 0 <= timeout < math.inf:
        raise ValueError(f"timeout: expected finite seconds >= 0 (0: wait as long as it takes), got {timeout!r}")
    if timeout and num_workers == 0:
        raise ValueError(f"timeout: limits the wait for a worker process's batch, so it needs num_workers > 0, "
                         f"got timeout={timeout!r} with num_workers=0")
    if multiprocessing_context is not None:
        if num_workers == 0:
            raise ValueError(f"multiprocessing_context: starts worker processes, so it needs num_workers > 0 "
                             f"(as PyTorch), got {multiprocessing_context!r} with num_workers=0")
        start_method(multiprocessing_context)  # a bad one is named here, not at the first epoch
    if persistent_workers and num_workers == 0:
        raise ValueError("persistent_workers: needs num_workers > 0 (as PyTorch), got num_workers=0")
    if (not isinstance(prefetch_factor, numbers.Integral) or isinstance(prefetch_factor, bool)
            or not 1 <= prefetch_factor <= MAX_PREFETCH):
        raise ValueError(f"prefetch_factor: expected an int from 1 to {MAX_PREFETCH} (a worker's batches in "
                         f"flight wait in its pipe), got {prefetch_factor!r}")
    if collate_fn is not None and not callable(collate_fn):
        raise TypeError(f"collate_fn: expected a function of a list of samples, got {type(collate_fn).__name__}")


def host_batch(dataset, collate_fn, indices):
    """The batch of ``indices`` as host arrays: what a worker process (or the main one) builds."""
    if isinstance(dataset, TensorDataset) and collate_fn is default_collate:
        return tuple(array[indices] for array in dataset.arrays)  # one indexing per array, no loop
    return collate_fn([dataset[int(i)] for i in indices])


# ----------------------------------------------------------------------------- collate
def default_collate(samples):
    """Stack a list of samples into one batch, field by field (PyTorch's default_collate):
    tuples and lists of fields give a tuple of stacked arrays, dicts a dict, arrays and numbers
    one stacked array (Python floats as float64, ints as int64, NumPy scalars and arrays keeping
    their dtype, as PyTorch does here)."""
    first = samples[0]
    if isinstance(first, (tuple, list)):
        if any(len(sample) != len(first) for sample in samples):
            raise ValueError(f"default_collate: every sample must have {len(first)} fields, got "
                             f"{sorted({len(sample) for sample in samples})}")
        return tuple(default_collate([sample[k] for sample in samples]) for k in range(len(first)))
    if isinstance(first, dict):
        return {key: default_collate([sample[key] for sample in samples]) for key in first}
    return np.stack([_host(sample) for sample in samples])


def _host(value):
    if isinstance(value, Tensor):
        return value.numpy()
    if isinstance(value, bool):
        return np.asarray(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, np.generic):  # np.uint8(3) stays uint8
        return np.asarray(value, dtype=np.int64)
    return np.asarray(value)


# ----------------------------------------------------------------------------- samplers
class Sampler:
    """An order of sample indices for one epoch: define ``__iter__`` and ``__len__``."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


class SequentialSampler(Sampler):
    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class SubsetRandomSampler(Sampler):
    """The given indices in a fresh random order each epoch (from minigrad's seeded generator:
    other orders than PyTorch's for the same seed)."""

    def __init__(self, indices):
        self.indices = list(indices)

    def __iter__(self):
        order = random.generator().permutation(len(self.indices))
        return iter([self.indices[i] for i in order])

    def __len__(self):
        return len(self.indices)


class RandomSampler(SubsetRandomSampler):
    """Every sample once, in a fresh random order each epoch (see ``SubsetRandomSampler``)."""

    def __init__(self, data_source):
        super().__init__(range(len(data_source)))
