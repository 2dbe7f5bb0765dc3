"""Writing a file so that no reader ever sees half of it: ``atomic_write``.

Checkpoints, downloaded data and the command line's metrics all go through it. The bytes go to
a temporary file in the target's directory, are flushed to disk, and only then is the file
renamed over the target (``os.replace``, atomic on one file system): a crash or an error
midway leaves the previous file intact and no temporary file behind.

Read next: ``distributed.py`` (the same training over several processes).
"""
from __future__ import annotations

import contextlib
import glob
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode="wb", suffix=".tmp"):
    """``with atomic_write(path) as file:`` write to ``file``; ``path`` changes only on success.

    On a clean exit the temporary file is synced to disk, given the usual permissions and
    renamed over ``path``; on any exception it is removed and the exception propagates.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=suffix)
    try:
        with os.fdopen(handle, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the rename makes them visible
        make_readable(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def temporary_pattern(path, suffix=".tmp"):
    """The names ``atomic_write(path)`` gives its temporary files, as a glob pattern."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(glob.escape(directory), "." + glob.escape(name) + ".*" + suffix)


def remove_stale_temporaries(path, suffix=".tmp"):
    """Delete what a killed writer of ``path`` left (atomic_write cleans up after any exception,
    but not after SIGKILL or a power cut). Only names atomic_write makes for ``path`` are touched."""
    for temporary in glob.glob(temporary_pattern(path, suffix)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def failed_write(path, error, what="file"):
    """An OSError naming the file that could not be written and what is left there: thanks to
    atomic_write, the previous version of ``path`` (if any) is intact."""
    previous = f"the previous {what} there is intact" if os.path.exists(path) else f"no {what} was written"
    return OSError(f"could not write {path} ({getattr(error, 'strerror', None) or error}); {previous}")


def make_readable(path):
    """mkstemp creates files readable by their owner only; give them the usual umask permissions."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
