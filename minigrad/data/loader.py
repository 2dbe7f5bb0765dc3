"""``DataLoader``: cuts a dataset into batches, in a fresh seeded order each epoch.

The order of epoch ``e`` is ``np.random.default_rng([seed, e]).permutation(N)``: it depends
only on the seed and the epoch number, so a run is repeatable, every epoch is shuffled
differently, a resumed run (``load_state_dict``) continues with the same order, and splitting
a batch into micro-batches later (``train.accumulate``) cannot change which samples meet.
A ``sampler`` (any iterable of sample indices with a length) replaces that order with its own.

``num_workers > 0`` builds batches in that many worker processes (worth it when a dataset's
``__getitem__`` does real work: decoding, augmenting). Each worker gets the epoch's order once;
the main process then hands out the batches as (start, stop) into it, round-robin, and takes
the results back in the same order, so the batches are exactly those of ``num_workers=0``.
Workers build host arrays only; moving a batch to the device (through pinned host memory with
``pin_memory=True`` on CUDA) happens in the main process.

Read next: ``data/datasets.py`` (the real data sets), then ``train.py``.
"""
from __future__ import annotations

import collections
import itertools
import math
import multiprocessing
import multiprocessing.connection
import numbers
import os
import pickle
import signal
import traceback
import weakref

from .. import backend, random
from ..backend import np
from ..tensor import Tensor
from .dataset import TensorDataset


class DataLoader:
    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, num_workers=0, collate_fn=None,
                 pin_memory=False, drop_last=False, *, timeout=0, persistent_workers=False, prefetch_factor=2,
                 seed=None, device=None):
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if seed is not None and (not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed: expected a non-negative int or None, got {seed!r}")
        check_worker_options(num_workers, timeout, persistent_workers, prefetch_factor, collate_fn)
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
            workers = _Workers(self.num_workers, self.dataset, self.collate_fn, self.timeout)
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


def check_worker_options(num_workers, timeout, persistent_workers, prefetch_factor, collate_fn):
    if not isinstance(num_workers, numbers.Integral) or isinstance(num_workers, bool) or num_workers < 0:
        raise ValueError(f"num_workers: expected an int >= 0, got {num_workers!r}")
    if not isinstance(timeout, numbers.Real) or isinstance(timeout, bool) or not 0 <= timeout < math.inf:
        raise ValueError(f"timeout: expected finite seconds >= 0 (0: wait as long as it takes), got {timeout!r}")
    if timeout and num_workers == 0:
        raise ValueError(f"timeout: limits the wait for a worker process's batch, so it needs num_workers > 0, "
                         f"got timeout={timeout!r} with num_workers=0")
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


# ----------------------------------------------------------------------------- worker processes
STOP_WAIT_S = 5.0     # how long a stopping worker may take to exit before it is terminated, then killed
PARENT_CHECK_S = 5.0  # how often an idle worker looks whether the main process still exists
MAX_PREFETCH = 64     # batches handed out to one worker wait in its pipe: they must fit its buffer

# The ends of the workers' pipes that this process holds: the main process's ends, or in a
# worker its own end. A process forked from this one (a worker, or anyone's child, or a worker's
# child) closes its copies at once, so a pipe breaks as soon as either of its two processes
# dies: a worker stops when the main process dies, even while blocked sending a batch, and the
# main process learns of a dead worker even while sending to it.
_pipe_ends = weakref.WeakSet()


def _close_pipe_ends_in_child():
    for end in list(_pipe_ends):
        end.close()
    _pipe_ends.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_pipe_ends_in_child)


class WorkerDied(RuntimeError):
    """A worker process exited while it owed the main process a batch."""


class WorkerTraceback(Exception):
    """The traceback of an exception raised in a worker process (the cause of the one raised here)."""


class _Workers:
    """``count`` worker processes, each with a pipe of its own to the main process.

    The k-th batch handed out goes to worker ``k % count``; a worker answers its pipe in the
    order it was asked, so taking the answers back oldest first gives the batches in order.
    No lock is shared between processes, so a worker that dies at any moment (crash, kill, out
    of memory) cannot leave the others or the main process waiting on a lock it held. That is
    why this is not a ``multiprocessing.Pool``: terminating a Pool while a worker writes a result
    to the queue they share leaves that queue's lock taken and the Pool's threads hung.
    """

    def __init__(self, count, dataset, collate_fn, timeout=0):
        # "fork" where the OS has it: workers inherit the dataset instead of unpickling a copy.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.pipes, self.processes = [], []
        for _ in range(count):
            ours, theirs = context.Pipe()
            _pipe_ends.add(ours)
            process = context.Process(target=_worker_loop, args=(theirs, dataset, collate_fn, os.getpid()),
                                      name="minigrad DataLoader worker", daemon=True)
            process.start()
            theirs.close()  # the worker's end lives in the worker only: its death closes the pipe
            self.pipes.append(ours)
            self.processes.append(process)
        self.timeout, self.waiting, self.handed_out = timeout, collections.deque(), 0
        self.in_use = self.stopped = False
        self.finalizer = None  # the loader's, for persistent workers: stop them with the loader
        self.owner = os.getpid()  # a forked child inherits this object, not the workers

    def share(self, order):
        """Send each worker the epoch's order of sample indices, while it owes nothing (so it is
        reading): a batch is then handed out as a small (start, stop) into it. Handing out index
        lists instead could deadlock, once a list outgrows the pipe's buffer: the main process
        blocked writing to a worker that is blocked writing its previous batch back."""
        if self.waiting:
            raise RuntimeError(f"DataLoader workers still owe {len(self.waiting)} batches of the last epoch")
        for worker in range(len(self.pipes)):
            self._send(worker, ("order", order))

    def hand_out(self, span):
        worker = self.handed_out % len(self.pipes)
        self._send(worker, ("batch", *span))
        self.waiting.append(worker)  # which worker owes each batch, oldest first
        self.handed_out += 1

    def _send(self, worker, message):
        try:
            self.pipes[worker].send(message)
        except OSError:  # the pipe broke: the worker is gone
            raise worker_died(self.processes[worker]) from None

    def take_back(self):
        """The oldest batch handed out. An exception raised in the worker is raised here, with the
        worker's traceback as its cause."""
        worker, (built, answer) = self._receive()
        if not built:
            error, worker_traceback = answer
            pid = self.processes[worker].pid
            raise error from WorkerTraceback(f"in DataLoader worker process {worker} (pid {pid}):\n"
                                             f"{worker_traceback}")
        return answer

    def _receive(self):
        """The oldest answer owed, as (worker, answer). A worker that died raises ``WorkerDied``, as
        PyTorch's loader does, instead of leaving the main process waiting forever for its batch."""
        worker = self.waiting[0]
        pipe, process = self.pipes[worker], self.processes[worker]
        if not multiprocessing.connection.wait([pipe, process.sentinel], timeout=self.timeout or None):
            raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds (timeout={self.timeout}): "
                               f"worker process {worker} (pid {process.pid}) has not sent its batch")
        self.waiting.popleft()  # from here on the batch is taken: received, or lost with its worker
        if not pipe.poll():  # only the sentinel is ready: the worker exited without answering
            raise worker_died(process)
        try:
            return worker, pipe.recv()
        except (EOFError, OSError):  # it died in the middle of sending
            raise worker_died(process) from None

    def drain(self):
        """Take back, and drop, the batches still owed (their errors too, if the workers sent
        them); False if that fails: a worker died or timed out, or these workers were stopped."""
        try:
            while self.waiting and not self.stopped:
                self._receive()
        except Exception:
            return False
        return not self.stopped

    def stop(self):
        """Ask each worker to exit; terminate, then kill, any that has not after STOP_WAIT_S (a
        worker shares no lock, so killing it cannot hang anything). Stopping twice does nothing."""
        if self.stopped or os.getpid() != self.owner:
            self.stopped = True  # (only the process that started the workers may stop them)
            return
        self.stopped = True
        if self.finalizer is not None:
            self.finalizer.detach()  # it would only keep these stopped workers alive
        for pipe in self.pipes:
            try:
                pipe.send(None)
            except OSError:  # that worker is gone already
                pass
        wait_s = 0 if self.waiting else STOP_WAIT_S  # busy workers would first build what they owe
        for process in self.processes:
            process.join(wait_s)
            for end in (process.terminate, process.kill):
                if process.exitcode is None:
                    end()
                    process.join(STOP_WAIT_S)
        for pipe in self.pipes:
            _pipe_ends.discard(pipe)
            pipe.close()
        for process in self.processes:
            if process.exitcode is not None:
                process.close()  # its sentinel's file descriptor


def worker_died(process):
    process.join(STOP_WAIT_S)  # its pipe broke as it exited: this sets the exit code
    code = process.exitcode
    how = ("still running, its pipe broken" if code is None else
           f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}")
    return WorkerDied(f"DataLoader worker process (pid [{process.pid}]) exited unexpectedly ({how}); "
                      f"its batch is lost")


def _worker_loop(pipe, dataset, collate_fn, parent_pid):
    """A worker process: keep the epoch's order of sample indices when it arrives; for each
    (start, stop) that arrives, build the batch of ``order[start:stop]`` and send it back. Exit
    at None, when the pipe breaks, or when the main process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process: it stops the workers
    _pipe_ends.add(pipe)  # a process this worker forks (a dataset's helper) closes it
    order = None
    while True:
        while not pipe.poll(PARENT_CHECK_S):
            if os.getppid() != parent_pid:
                return  # the main process died, and some other process holds the pipe open
        try:
            message = pipe.recv()
        except EOFError:
            return
        if message is None:
            return
        if message[0] == "order":
            order = message[1]
            continue
        _, start, stop = message
        try:
            answer = (True, _host_arrays(host_batch(dataset, collate_fn, order[start:stop])))
        except Exception as error:  # the dataset's or collate_fn's
            answer = (False, (_sendable(error), traceback.format_exc()))
        try:
            pipe.send(answer)
        except OSError:  # a broken pipe
            return
        except Exception as error:  # a batch that cannot be pickled
            pipe.send((False, (_sendable(error), traceback.format_exc())))


def _sendable(error):
    """``error`` itself if it survives pickling (as the main process will unpickle it), otherwise
    a RuntimeError with its type and message (an exception class whose __init__ takes other
    arguments than its message cannot be rebuilt from a pickle)."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def _host_arrays(batch):
    """Tensors in a worker's batch travel back as their host arrays (the main process rewraps them)."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(_host_arrays(field) for field in batch)
    if isinstance(batch, dict):
        return {key: _host_arrays(field) for key, field in batch.items()}
    return batch.numpy() if isinstance(batch, Tensor) else batch


# ----------------------------------------------------------------------------- collate
def default_collate(samples):
    """Stack a list of samples into one batch, field by field (PyTorch's default_collate):
    tuples and lists of fields give a tuple of stacked arrays, dicts a dict, arrays and numbers
    one stacked array (Python floats as float64, ints as int64, as PyTorch does here)."""
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
    if isinstance(value, numbers.Integral):
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
