"""Writing each epoch's files in a background thread, while the next epoch trains.

The training thread hands over one epoch's writes at a time: a list of (path, write) pairs,
`write()` writing the file at `path` under a temporary name and renaming it when complete
(layout.atomic_path). Everything a write needs is already a snapshot on the CPU (scores
tensors that training no longer touches, weights serialised to bytes), so training can go on
changing the model. One worker thread runs the writes in the order given, an epoch's after
the previous epoch's; the training loop puts each epoch's weights files last, so the last
weights file on disk still marks the last complete epoch, as when writing was inline.

At most one epoch is being written while the next trains: handing over epoch e+1 first waits
for epoch e's writes to finish. A failed write (disk full, quota, permissions) stops the run
at the next hand-over, or at the end, with one line naming the file and the system's error
and where each net can resume from. Ctrl-C waits for the epoch being written (a second
Ctrl-C: only for the file being written), then says where to resume from.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .resume import resume_hints
from .errors import ClustNetError


class WriteFailed(Exception):
    """A write of the worker failed with an OSError: the final path and the error."""

    def __init__(self, path, error):
        super().__init__(path, error)
        self.path, self.error = path, error

    def describe(self):
        reason = self.error.strerror or str(self.error)
        return f"cannot write {self.path}: {reason}"


class EpochWriter:
    """`with EpochWriter(exp, ind_ids, kind, epochs) as writer: ... writer.submit(writes)`.

    Leaving the block waits for every write. A failed write, Ctrl-C (KeyboardInterrupt) or a
    ClustNetError of training becomes one ClustNetError whose message ends with the command
    that resumes each net from its last complete epoch (ind_ids, kind, epochs say which)."""

    def __init__(self, exp, ind_ids, kind, epochs):
        self.exp, self.ind_ids, self.kind, self.epochs = exp, ind_ids, kind, epochs
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clustnet-writer")
        self._pending = None  # the future of the epoch being written
        self._abandon = threading.Event()  # set: write no further file
        self._interrupted = False  # a Ctrl-C came while waiting for the last writes

    def __enter__(self):
        return self

    def submit(self, writes):
        """Hand over one epoch's writes [(path, write), ...], run in this order after the
        previous epoch's are done. Returns the seconds spent waiting for that. Raises
        WriteFailed if one of the previous epoch's writes failed."""
        start = time.perf_counter()
        self.wait()
        self._pending = self._pool.submit(self.write_all, list(writes))
        return time.perf_counter() - start

    def write_all(self, writes):
        """Run `writes` in order, a failed one (OSError) as WriteFailed; none after an abandon."""
        for path, write in writes:
            if self._abandon.is_set():
                return
            try:
                write()
            except OSError as error:
                raise WriteFailed(path, error) from error

    def wait(self):
        """Wait for the epoch being written; raise what its writes raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _drain(self):
        """Wait for every write: a (second) Ctrl-C while waiting skips the files not started."""
        pending = self._pending
        try:
            self.wait()
        except KeyboardInterrupt:
            self._interrupted = True
            self._abandon.set()
            while pending is not None and not pending.done():
                try:
                    pending.exception()
                except KeyboardInterrupt:
                    pass
            self._pending = pending
            self.wait()
        finally:
            self._pool.shutdown(wait=True)

    def __exit__(self, kind, error, traceback):
        failure = error if isinstance(error, WriteFailed) else None
        try:
            self._drain()
        except WriteFailed as late:
            failure = failure or late
        if error is None and self._interrupted:  # Ctrl-C after training, during the last writes
            error = KeyboardInterrupt()
        if failure is None and error is None:
            return False
        hints = resume_hints(self.exp, self.ind_ids, self.kind, self.epochs)
        if failure is not None and (error is None or failure is error):
            raise ClustNetError(f"{failure.describe()}; {hints}") from None
        if isinstance(error, KeyboardInterrupt):
            failed = f"{failure.describe()}; " if failure is not None else ""
            raise ClustNetError(f"interrupted; {failed}{hints}") from None
        return False  # anything else (a diverging loss, a bug) goes on as it was
