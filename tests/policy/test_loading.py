"""Loading never drops a policy silently: every `*.yaml`/`*.yml` entry of a directory,
in any letter case, loads or is a problem naming it; any other non-hidden entry is
named in a warning; `validate` shows all problems at once, duplicates included."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.cli import main
from retention.policy.load import PolicyError, load_policies

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOOD = "policies:\n  - {{name: {name}, delete_after: 1d}}\n"
KINDS = ["good", "broken-yaml", "broken-symlink", "directory", "fifo", "unreadable", "symlink"]
STEMS = st.text(alphabet="abcdefgh_-", min_size=1, max_size=6)
SUFFIXES = st.sampled_from(
    [".yaml", ".yml", ".YAML", ".Yml", ".yAmL", ".txt", ".yaml.bak", "", ".json", ".ym"]
)
ENTRIES = st.lists(
    st.tuples(st.booleans(), STEMS, SUFFIXES, st.sampled_from(KINDS)),
    min_size=1,
    max_size=8,
    unique_by=lambda e: (e[1] + e[2]).lower(),  # distinct even on a case-insensitive disk
)


def _make(path: Path, kind: str, index: int) -> None:
    if kind == "good":
        path.write_text(GOOD.format(name=f"p{index}"))
    elif kind == "broken-yaml":
        path.write_text("policies: [\n")
    elif kind == "broken-symlink":
        path.symlink_to(path.parent / "does-not-exist")
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "unreadable":
        path.write_text(GOOD.format(name=f"p{index}"))
        path.chmod(0)
    else:  # a symlink to a good file elsewhere
        target = path.parent.parent / f"target-{index}.yaml"
        target.write_text(GOOD.format(name=f"p{index}"))
        path.symlink_to(target)


@FAST
@given(entries=ENTRIES)
def test_every_policy_entry_loads_or_is_named_in_a_problem(
    tmp_path_factory: pytest.TempPathFactory, entries: list[tuple[bool, str, str, str]]
) -> None:
    root = tmp_path_factory.mktemp("case")
    directory = root / "policies"
    directory.mkdir()
    for index, (hidden, stem, suffix, kind) in enumerate(entries):
        _make(directory / (("." if hidden else "") + stem + suffix), kind, index)
    ignored: list[Path] = []
    loaded: list[str] = []
    problems: list[str] = []
    try:
        loaded = [s.path for s in load_policies([directory], ignored).sources]
    except PolicyError as err:
        problems = [str(p) for p in err.problems]
    readable = os.geteuid() == 0  # root reads a mode-0 file
    for hidden, stem, suffix, kind in entries:
        path = str(directory / (("." if hidden else "") + stem + suffix))
        policy = suffix.lower() in (".yaml", ".yml")
        if hidden:
            assert path not in loaded and Path(path) not in ignored
            assert not any(p.startswith(path + ":") for p in problems)
        elif not policy:
            assert Path(path) in ignored
            assert path not in loaded
        elif kind in ("good", "symlink") or (kind == "unreadable" and readable):
            if not problems:  # otherwise nothing is returned at all
                assert path in loaded
            assert not any(p.startswith(path + ":") for p in problems)
        else:
            assert any(p.startswith(path + ":") or p.startswith(path + " ") for p in problems), (
                path,
                problems,
            )
    visible_policies = [e for e in entries if not e[0] and e[2].lower() in (".yaml", ".yml")]
    if not visible_policies:
        assert any("no *.yaml or *.yml files" in p for p in problems)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("broken-symlink", "a broken symlink (its target does not exist)"),
        ("directory", "a directory named like a policy file"),
        ("fifo", "not a regular file"),
    ],
)
def test_a_policy_name_that_is_not_a_readable_file_is_an_error(
    tmp_path: Path, kind: str, message: str
) -> None:
    (tmp_path / "deletion.yaml").write_text(GOOD.format(name="d"))
    _make(tmp_path / "Holds.YML", kind, 1)
    with pytest.raises(PolicyError) as caught:
        load_policies([tmp_path])
    assert len(caught.value.problems) == 1
    assert str(caught.value.problems[0]).startswith(f"{tmp_path / 'Holds.YML'}: {message}")


def test_validate_reports_every_problem_duplicates_included_and_warns_about_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(
        textwrap.dedent(
            """\
            policies:
              - {name: hold, retain_for: forever, match: {metadata: {legal_hold: yes}}}
              - {name: ok, delete_after: 1d}
            """
        )
    )
    (tmp_path / "B.YAML").write_text("policies:\n  - {name: hold, retain_for: 1 year}\n")
    (tmp_path / "c.yml").symlink_to(tmp_path / "gone.yaml")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sweeps").mkdir()
    with pytest.raises(SystemExit) as done:
        main(["validate", str(tmp_path)])
    out, err = capsys.readouterr()
    assert done.value.code == 2 and out == ""
    lines = err.splitlines()
    assert lines[:2] == [
        f"warning: {tmp_path / 'notes.txt'}: not read (not *.yaml or *.yml); only a "
        "directory's own *.yaml and *.yml files are",
        f"warning: {tmp_path / 'sweeps'}: not read (a subdirectory); only a directory's own "
        "*.yaml and *.yml files are",
    ]
    assert lines[2:] == [
        f"{tmp_path / 'c.yml'}: a broken symlink (its target does not exist)",
        f"{tmp_path / 'B.YAML'}:2: policy 'hold': retain_for: unknown unit `year`: did you "
        "mean `365d`?",
        f"{tmp_path / 'a.yaml'}:2: policy 'hold': match.metadata.legal_hold: `yes` unquoted is "
        'a boolean in YAML 1.1 but text in YAML 1.2; write `true` for the boolean, or `"yes"` '
        "in quotes for the word",
        f"{tmp_path / 'a.yaml'}:2: policy 'hold': name: duplicate name, also defined at "
        f"{tmp_path / 'B.YAML'}:2",
        "4 problems in the policy files",
    ]


def test_a_valid_set_still_warns_about_entries_it_does_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "A.YAML").write_text(GOOD.format(name="a"))
    (tmp_path / "policy.yaml.bak").write_text(GOOD.format(name="old"))
    (tmp_path / ".hidden.yaml").write_text("garbage: [")
    with pytest.raises(SystemExit) as done:
        main(["validate", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert done.value.code == 0
    assert f"warning: {tmp_path / 'policy.yaml.bak'}: not read" in out
    assert ".hidden.yaml" not in out
    assert "valid: 1 policies (1 deletion, 0 retention) from 1 file, 1 warning" in out
