"""A DataLoader's worker processes: each builds the batches handed to it and sends them back.

``Workers`` starts ``num_workers`` processes, each with a pipe of its own. At the start of an
epoch each worker gets the epoch's order of sample indices once; the main process then hands
out the batches as (start, stop) into that order, round-robin, and takes the answers back
oldest first, so the batches come in order. Nothing is shared between processes but the pipes:
no lock that a dying worker could leave taken, no buffer that two writers could fill against
each other. Whatever way a worker or the main process ends, the other learns of it (a broken
pipe, the process's sentinel, a timeout) instead of waiting forever.

Read next: ``data/datasets.py`` (the real data sets), then ``train.py``.
"""
from __future__ import annotations

import collections
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import traceback
import weakref

from ..tensor import Tensor


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


def start_method(context):
    """The multiprocessing context that starts the workers: ``context`` itself, the one named
    (``"fork"``, ``"spawn"``, ``"forkserver"``), or by default "fork" where the OS has it
    (workers inherit the dataset instead of unpickling a copy), else "spawn"."""
    if context is None:
        methods = multiprocessing.get_all_start_methods()
        return multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    if isinstance(context, str):
        if context not in multiprocessing.get_all_start_methods():
            raise ValueError(f"multiprocessing_context: expected None, one of "
                             f"{multiprocessing.get_all_start_methods()} or a multiprocessing context, "
                             f"got {context!r}")
        return multiprocessing.get_context(context)
    if not isinstance(context, multiprocessing.context.BaseContext):
        raise TypeError(f"multiprocessing_context: expected None, a start method's name or a multiprocessing "
                        f"context, got {type(context).__name__}")
    return context


class WorkerDied(RuntimeError):
    """A worker process exited while it owed the main process a batch."""


class WorkerTraceback(Exception):
    """The traceback of an exception raised in a worker process (the cause of the one raised here)."""


class Workers:
    """``count`` worker processes, each with a pipe of its own to the main process, that build
    ``build(order[start:stop])`` for each (start, stop) handed out.

    The k-th batch handed out goes to worker ``k % count``; a worker answers its pipe in the
    order it was asked, so taking the answers back oldest first gives the batches in order.
    No lock is shared between processes, so a worker that dies at any moment (crash, kill, out
    of memory) cannot leave the others or the main process waiting on a lock it held. That is
    why this is not a ``multiprocessing.Pool``: terminating a Pool while a worker writes a result
    to the queue they share leaves that queue's lock taken and the Pool's threads hung.
    """

    def __init__(self, count, build, timeout=0, context=None):
        context = start_method(context)
        self.pipes, self.processes = [], []
        for _ in range(count):
            ours, theirs = context.Pipe()
            _pipe_ends.add(ours)
            process = context.Process(target=_worker_loop, args=(theirs, build, PARENT_CHECK_S),
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


def _worker_loop(pipe, build, parent_check_s):
    """A worker process: keep the epoch's order of sample indices when it arrives; for each
    (start, stop) that arrives, build the batch of ``order[start:stop]`` and send it back. Exit
    at None, when the pipe breaks, or when the process that started it is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process: it stops the workers
    _pipe_ends.add(pipe)  # a process this worker forks (a dataset's helper) closes it
    parent_pid = os.getppid()  # the main process (or, with "forkserver", the server, which ends with it)
    order = None
    while True:
        while not pipe.poll(parent_check_s):
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
            answer = (True, _host_arrays(build(order[start:stop])))
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
