"""Data parallelism over MPI: N processes that compute exactly the gradient of one.

Every rank runs the same program on the same global plan (sample order, batches, steps: they
depend on the seed, the epoch, the data set and the batch size, never on the number of ranks)
and keeps only its slice of each global batch. Read top to bottom:

1. Who am I: ``world()`` gives this process's ``rank``, the ``size`` of the job and whether it
   ``is_distributed``. mpi4py is imported only when a launcher (``mpiexec``) started the
   process; a plain ``python`` run never imports MPI and every collective below is a no-op.
2. The sharding rule: ``shard(batch_size, rank, size)``, NumPy's ``array_split``: slices differ
   by at most one sample and may be empty (more ranks than samples). No padding, no duplicated
   or dropped samples: the ranks' slices are exactly the global batch.
3. The two collectives of a step (``train.accumulate`` calls them):
   - ``sum_normalizer``, before the first micro-batch: Allreduce(SUM) of the counted targets,
     so every rank divides its summed loss by the WHOLE batch's normaliser;
   - ``sum_gradients``, after the last micro-batch: one Allreduce(SUM) of all gradients packed
     in one flat buffer. Never divided by the world size: the shares already add up.
4. Exact metrics: ``sum`` reduces numerators and counts, never per-rank means.
5. Staying together: ``check_same_plan`` (ranks that disagree stop, the message naming the
   option) and ``abort_on_error`` (an exception on one rank ends the whole job, never a hang).

Why sums and not the usual average over ranks? PyTorch DDP, Horovod and friends average the
ranks' gradients, each a mean over its own shard. With shards of 2 and 1 samples whose losses
are 1, 2 and 6, that gives (mean(1, 2) + mean(6)) / 2 = 3.75 instead of (1 + 2 + 6) / 3 = 3:
the lone sample weighs 1/2, not 1/3. The same happens with equal shards as soon as targets are
masked (ignore_index) or weighted. Dividing sums by the global normaliser is exact for any split.

GPUs: CuPy gradients are copied to host memory, reduced there and copied back (explicit
copies). A CUDA-aware MPI or NCCL (``cupy.cuda.nccl``) would skip the copies; it is not used
because it could not be tested here.

Read next: nothing more: this is the end of the path that the package docstring
(``__init__.py``) and the README lay out.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import traceback

from . import backend
from .backend import np
from .tensor import Tensor

# Environment variables that MPI launchers set in every process they start (MPICH/Intel MPI's
# Hydra, Open MPI, PMIx-based launchers such as srun --mpi=pmix).
LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")
MPI_INSTALL_HINT = "pip install mpi4py mpich (or pip install minigrad[mpi])"
ABORT_GRACE_SECONDS = 0.5  # mpiexec drops output still in flight when a rank aborts


# ----------------------------------------------------------------------------- 1. who am I
def launched_by_mpi():
    """True when an MPI launcher started this process (checked without importing MPI)."""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


_world = None


def world():
    """This process's ``World``: under ``mpiexec``, MPI's COMM_WORLD; otherwise one process.

    Under MPI it also installs an exception hook: an exception nobody catches on one rank
    would otherwise leave the other ranks waiting in their next collective forever, so after
    printing the traceback the hook aborts the whole job (see ``World.abort``).
    """
    global _world
    if _world is None:
        _world = World(_comm_world()) if launched_by_mpi() else World()
        if _world.is_distributed:
            sys.excepthook = _abort_after(sys.excepthook)
    return _world


def _abort_after(print_exception):
    def hook(kind, error, trace):
        print_exception(kind, error, trace)
        _world.abort(error, traceback_printed=True)
    return hook


def _comm_world():
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise RuntimeError(f"this process was started by an MPI launcher, but mpi4py is not installed: "
                           f"{MPI_INSTALL_HINT}") from error
    return MPI.COMM_WORLD


class World:
    """The ranks of a job and the collectives minigrad needs. ``World()`` is one process alone:
    rank 0 of 1, and every collective returns its input unchanged."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1

    @property
    def is_distributed(self):
        return self.comm is not None

    def __repr__(self):
        return f"World(rank={self.rank}, size={self.size}, distributed={self.is_distributed})"

    def device_for_this_rank(self, device):
        """``"cuda"`` without an index, under MPI: the ranks on one machine take its GPUs in turn
        (local rank 0 -> cuda:0, 1 -> cuda:1, ..., round robin past the last GPU). Anything else
        (``cpu``, an explicit ``cuda:N``) is kept. Read from the launcher's environment, not a
        collective: ranks given different devices must not wait for each other here."""
        if self.comm is None or str(device).strip().lower() != "cuda":
            return device
        return f"cuda:{local_rank(self.rank) % backend.cuda_device_count()}"

    # ------------------------------------------------------------------ 2. the sharding rule
    def shard(self, batch_size):
        """This rank's slice of a global batch of ``batch_size`` samples (see ``shard``)."""
        return shard(batch_size, self.rank, self.size)

    # ------------------------------------------------------------------ 3. the two collectives
    def sum_normalizer(self, local_normalizer):
        """Collective 1: the whole batch's normaliser, from each rank's counted targets."""
        if self.comm is None:
            return local_normalizer
        return float(self.sum(np.array([local_normalizer], dtype=np.float64))[0])

    def sum_gradients(self, parameters, extras=()):
        """Collective 2: replace every parameter's ``.grad`` by its sum over all ranks, in ONE
        Allreduce(SUM) of a flat buffer; ``extras`` (floats, e.g. this rank's share of the loss)
        ride along at its end and come back summed.

        A rank whose shard was empty (no backward, ``.grad`` None) sends zeros. The buffer also
        counts, per parameter, the ranks that had a gradient: one that got none anywhere keeps
        ``.grad = None``, as in one process, so the optimizer skips it the same way. The extras
        travel in the parameters' dtype (a float32 model's summed loss is rounded to float32).
        """
        if self.comm is None:
            return list(extras)
        parameters = list(parameters)
        flat, device = pack_gradients(parameters, extras)  # a fresh array: safe to reduce in place
        host = backend.to_host(flat)  # a GPU's buffer is staged through host memory (an explicit copy)
        self.allreduce_in_place(host)
        return unpack_gradients(parameters, backend.to_device(host, device), len(extras))

    # ------------------------------------------------------------------ 4. exact metrics
    def sum(self, values):
        """Allreduce(SUM) of a host NumPy array (a new array; the input is left alone)."""
        return self.allreduce_in_place(np.array(values, order="C"))  # a contiguous copy MPI can write into

    def allreduce_in_place(self, buffer):
        """Replace a contiguous host array by its sum over all ranks, element by element."""
        if self.comm is not None:
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        return buffer

    def max(self, value):
        """The largest of every rank's ``value`` (a Python number)."""
        if self.comm is None:
            return value
        from mpi4py import MPI
        return self.comm.allreduce(value, op=MPI.MAX)

    def barrier(self):
        if self.comm is not None:
            self.comm.Barrier()

    # ------------------------------------------------------------------ 5. staying together
    def check_same_plan(self, plan):
        """Raise ``PlanMismatch`` on every rank, naming the options, if ranks disagree on ``plan``
        (a dict: option name -> JSON-able value, nothing that depends on the world size).

        Costs one allgather of a short digest; the plans themselves travel only on a mismatch.
        All ranks see the same digests, so all of them raise (or none does): nobody is left
        waiting in a collective.
        """
        if self.comm is None:
            return
        digests = self.comm.allgather(plan_digest(plan))
        if len(set(digests)) > 1:
            raise PlanMismatch(describe_differences(self.comm.allgather(plan)))

    @contextlib.contextmanager
    def abort_on_error(self):
        """Inside this block, an exception (or a non-zero ``sys.exit``) on one rank ends the whole
        job: the rank prints its message, then MPI_Abort makes ``mpiexec`` kill every other rank
        (which may be blocked in a collective, waiting for this one forever) and exit non-zero."""
        try:
            yield
        except BaseException as error:
            if self.comm is None or (isinstance(error, SystemExit) and error.code in (0, None)):
                raise
            self.abort(error)

    def abort(self, error, traceback_printed=False):
        """Print why this rank fails, then MPI_Abort: ``mpiexec`` ends every rank and exits non-zero."""
        code = (error.code if isinstance(error.code, int) else 1) if isinstance(error, SystemExit) else 1
        why = (f"exited with status {code}" if isinstance(error, SystemExit)
               else f"failed ({type(error).__name__}: {error})")
        print(f"minigrad: rank {self.rank} of {self.size} {why}; aborting all ranks", file=sys.stderr, flush=True)
        if isinstance(error, SystemExit) and not isinstance(error.code, int):
            print(error.code, file=sys.stderr)  # argparse and the CLI print their own messages
        elif not isinstance(error, SystemExit) and not traceback_printed:
            traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_SECONDS)  # let mpiexec forward this output before it tears the job down
        self.comm.Abort(code)


def local_rank(rank):
    """This process's index among the ranks on its machine, as the launcher tells it (MPICH,
    Open MPI, PMIx, Slurm); ``rank`` when none does (a single machine)."""
    for name in ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "PMIX_LOCAL_RANK", "SLURM_LOCALID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return rank


class PlanMismatch(RuntimeError):
    """Ranks disagree on the training plan or configuration; the message names the options."""


# ----------------------------------------------------------------------------- the sharding rule
def shard(batch_size, rank, world_size):
    """Rank ``rank``'s ``slice`` of a global batch: ``np.array_split(range(batch_size), world_size)[rank]``.

    The first ``batch_size % world_size`` ranks take one sample more than the others; with more
    ranks than samples the last ones take none. Slices are contiguous and in rank order, so the
    rank's first sample has index ``slice.start`` in the global batch (dropout masks use it).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank: expected 0 <= rank < world_size = {world_size}, got {rank}")
    base, extra = divmod(batch_size, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def shard_sizes(batch_size, world_size):
    """Every rank's number of samples of a global batch, e.g. [4, 3, 3] for 10 on 3 ranks."""
    return [len(range(batch_size)[shard(batch_size, rank, world_size)]) for rank in range(world_size)]


# ----------------------------------------------------------------------------- the flat buffer
def pack_gradients(parameters, extras):
    """One flat array on the parameters' device: every gradient (zeros where ``.grad`` is None),
    then one has-a-gradient flag per parameter, then the extras. Returns (array, device)."""
    if not parameters:
        raise ValueError("sum_gradients: expected at least one parameter, got none")
    dtypes, devices = {p.dtype for p in parameters}, {p.device for p in parameters}
    if len(dtypes) > 1 or len(devices) > 1:
        raise ValueError(f"sum_gradients: parameters must share one dtype and device to travel in one "
                         f"buffer, got dtypes {sorted(map(str, dtypes))} and devices {sorted(devices)}")
    (dtype,), (device,) = dtypes, devices
    xp = backend.xp_for(device)
    pieces = [p.grad.array.ravel() if p.grad is not None else xp.zeros(p.array.size, dtype) for p in parameters]
    flags = xp.asarray([p.grad is not None for p in parameters], dtype=dtype)
    return xp.concatenate([*pieces, flags, xp.asarray(list(extras), dtype=dtype)]), device


def unpack_gradients(parameters, summed, num_extras):
    """Put the summed gradients back into ``.grad`` (views into ``summed``); return the extras."""
    flags_at = sum(p.array.size for p in parameters)
    tail = backend.to_host(summed[flags_at:])  # (flags, extras): one small copy, not one per parameter
    offset = 0
    for parameter, ranks_with_gradient in zip(parameters, tail):
        size = parameter.array.size
        parameter.grad = Tensor(summed[offset:offset + size].reshape(parameter.shape)) if ranks_with_gradient else None
        offset += size
    return [float(value) for value in tail[len(parameters):len(parameters) + num_extras]]


# ----------------------------------------------------------------------------- plans
def plan_digest(plan):
    """A short hash of ``plan``'s canonical JSON (keys sorted; values that JSON lacks as repr)."""
    text = json.dumps(plan, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def digest_of_arrays(arrays):
    """A short hash of host arrays' dtypes, shapes and bytes: ranks whose parameters drifted
    apart (or never matched: a different seed) disagree on it."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:32]


def describe_differences(plans):
    """'option: rank 0 has X, rank 1 has Y; ...' for every option on which ``plans`` differ."""
    canonical = [{key: json.dumps(value, sort_keys=True, default=repr) for key, value in plan.items()}
                 for plan in plans]
    names = sorted(set().union(*canonical))
    lines = []
    for name in names:
        values = [plan.get(name, "(missing)") for plan in canonical]
        if len(set(values)) > 1:
            shown = ", ".join(f"rank {rank} has {value}" for rank, value in enumerate(values))
            lines.append(f"{name!r}: {shown}")
    return "ranks disagree on the training plan: " + "; ".join(lines)
