"""Many names for one file, for hypothesis: `.`, `..`, `//`, symlinked directories,
symlink chains and hard links, applied in any order.

`spell` builds the name with the filesystem's own tools (os.symlink, os.link, mkdir)
and never with the code under test, so a test's expectation ("this names that file")
holds by construction.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from hypothesis import strategies as st

Trick = Literal["dot", "dotdot", "slash", "dirlink", "filelink", "hardlink"]
# The last component stays the file's own name: only directories are respelled.
DIRECTORY_TRICKS: tuple[Trick, ...] = ("dot", "dotdot", "slash", "dirlink")
NO_HARD_LINK: tuple[Trick, ...] = (*DIRECTORY_TRICKS, "filelink")
ALL: tuple[Trick, ...] = (*NO_HARD_LINK, "hardlink")


def tricks(choices: Sequence[Trick] = ALL) -> st.SearchStrategy[list[Trick]]:
    return st.lists(st.sampled_from(list(choices)), min_size=1, max_size=4)


def spell(target: Path, steps: Sequence[Trick], scratch: Path) -> Path:
    """Another absolute name for `target`; links are made in a new directory of `scratch`.

    `hardlink` needs `target` to exist (a hard link names an inode).
    """
    links = Path(tempfile.mkdtemp(dir=scratch))
    path = str(target)
    for n, step in enumerate(steps):
        head, name = os.path.split(path)
        if step == "dot":
            path = f"{head}/./{name}"
        elif step == "slash":
            path = f"{head}//{name}"
        elif step == "dotdot":
            os.makedirs(os.path.join(head, f"sub{n}"), exist_ok=True)
            path = f"{head}/sub{n}/../{name}"
        elif step == "dirlink":
            link = links / f"dir{n}"
            link.symlink_to(head, target_is_directory=True)
            path = f"{link}/{name}"
        elif step == "filelink":
            link = links / f"file{n}"
            link.symlink_to(path)
            path = str(link)
        else:
            link = links / f"hard{n}"
            os.link(path, link, follow_symlinks=True)
            path = str(link)
    return Path(path)
