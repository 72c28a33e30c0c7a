"""Validation problems with their place in a policy file, and the error that carries them all."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from yaml import Node
from yaml.error import Mark

from retention.errors import UserError
from retention.policy.values import ValueFile


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake: `file:line: policy 'name': field: message`."""

    file: str
    line: int | None
    message: str
    policy: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [where]
        if self.policy is not None:
            parts.append(f"policy {self.policy}")
        if self.field is not None:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class PolicyError(UserError):
    """Every problem found in the policy files, one per line, sorted by file and line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def suggest(word: str, choices: Iterable[str]) -> str:
    """` (did you mean `x`?)` for the closest choice, or nothing when none is close."""
    options = list(choices)
    folded = {c.lower(): c for c in options}
    if word.lower() in folded:
        return f" (did you mean `{folded[word.lower()]}`?)"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        close = [folded[c] for c in difflib.get_close_matches(word.lower(), folded, n=1)]
    return f" (did you mean `{close[0]}`?)" if close else ""


class ValueMark(Mark):
    """The place of a value read from a value file (`{file: PATH}`): its own file and line."""

    def __init__(self, file: str, line: int) -> None:
        super().__init__(file, 0, line, 0, None, 0)


@dataclass
class Problems:
    """Collects problems while one file is checked, so all are reported at once, and the
    value files its policies read."""

    file: str
    found: list[Problem] = field(default_factory=list)
    value_files: list[ValueFile] = field(default_factory=list)

    def add(
        self,
        at: Node | Mark | None,
        message: str,
        *,
        policy: str | None = None,
        field: str | None = None,
    ) -> None:
        mark = at.start_mark if isinstance(at, Node) else at
        line = mark.line + 1 if mark is not None else None
        file = mark.name if isinstance(mark, ValueMark) else self.file
        self.found.append(Problem(file, line, message, policy, field))


def policy_label(name: str | None, index: int) -> str:
    """How a message names a policy: `'support-90d'`, or `#3` when it has no usable name."""
    return f"'{name}'" if name is not None else f"#{index + 1}"
