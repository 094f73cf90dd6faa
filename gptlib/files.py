"""Files written atomically: a reader finds the old file or the new one, never half of one.

The data goes into a temporary file in the same folder, is flushed to disk, and
the temporary file is renamed over the target (os.replace, atomic on one file
system). A crash, a full disk or a Ctrl-C in the middle leaves the previous file
as it was and no temporary file behind. Checkpoints, tokenizers and saved
figures are all written this way.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write into that appears at `path` only when the `with` block ends without an error.

    with atomic_file(path) as f:
        torch.save(obj, f)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable; Windows cannot open a folder this way
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
