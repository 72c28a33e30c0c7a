"""Every mistake is reported with its file, line, policy, field and a suggestion; all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from retention.errors import UserError
from retention.policy.load import PolicyError, load_policies
from tests.policy.support import policies, problems

# (YAML, the exact problem lines the user sees)
CASES: list[tuple[str, str, list[str]]] = [
    (
        "misspelt policy key",
        "policies:\n  - name: a\n    delet_after: 90d\n",
        ["p.yaml:3: policy 'a': unknown key `delet_after` (did you mean `delete_after`?)"],
    ),
    (
        "misspelt top-level key",
        "polices:\n  - name: a\n    delete_after: 90d\n",
        [
            "p.yaml:1: unknown key `polices` (did you mean `policies`?)",
            "p.yaml:1: missing `policies:` (a list of policies)",
        ],
    ),
    (
        "misspelt match key",
        "policies:\n  - name: a\n    delete_after: 9d\n    match:\n      agent: [x]\n",
        ["p.yaml:5: policy 'a': match: unknown key `agent` (did you mean `agents`?)"],
    ),
    (
        "condition outside match",
        "policies:\n  - name: a\n    delete_after: 9d\n    regions: [EU]\n",
        ["p.yaml:4: policy 'a': unknown key `regions`: conditions go under `match:`"],
    ),
    (
        "rule inside match",
        "policies:\n  - name: a\n    match:\n      delete_after: 9d\n",
        [
            "p.yaml:2: policy 'a': delete_after: missing: give delete_after (a deletion rule) "
            "or retain_for (a retention rule)",
            "p.yaml:4: policy 'a': match: unknown key `delete_after`: it belongs to the policy, "
            "not under `match:`",
        ],
    ),
    (
        "both rules",
        "policies:\n  - name: a\n    delete_after: 9d\n    retain_for: 1d\n",
        [
            "p.yaml:4: policy 'a': retain_for: a policy has either delete_after (a deletion "
            "rule) or retain_for (a retention rule), not both"
        ],
    ),
    (
        "neither rule",
        "policies:\n  - name: a\n    description: nothing\n",
        [
            "p.yaml:2: policy 'a': delete_after: missing: give delete_after (a deletion rule) "
            "or retain_for (a retention rule)"
        ],
    ),
    (
        "duration with a spelled unit",
        "policies:\n  - name: a\n    delete_after: 10 days\n",
        ["p.yaml:3: policy 'a': delete_after: bad duration `10 days`: did you mean `10d`?"],
    ),
    (
        "negative duration",
        "policies:\n  - name: a\n    delete_after: -3d\n",
        [
            "p.yaml:3: policy 'a': delete_after: negative duration `-3d`; durations must be 0 "
            "or more"
        ],
    ),
    (
        "unknown unit",
        "policies:\n  - name: a\n    delete_after: 3x\n",
        [
            "p.yaml:3: policy 'a': delete_after: unknown unit `x` in `3x`; units are h (hours), "
            "d (days) and w (weeks)"
        ],
    ),
    (
        "years",
        "policies:\n  - name: a\n    retain_for: 2y\n",
        ["p.yaml:3: policy 'a': retain_for: unknown unit `y`: did you mean `730d`?"],
    ),
    (
        "fractional duration",
        "policies:\n  - name: a\n    delete_after: 1.5d\n",
        ["p.yaml:3: policy 'a': delete_after: `1.5d` is not a whole number: did you mean `36h`?"],
    ),
    (
        "number without unit",
        "policies:\n  - name: a\n    delete_after: 90\n",
        [
            "p.yaml:3: policy 'a': delete_after: `90` has no unit: did you mean `90d`? (write an "
            "integer and a unit h, d or w, e.g. `90d`)"
        ],
    ),
    (
        "forever on a deletion rule",
        "policies:\n  - name: a\n    delete_after: forever\n",
        [
            "p.yaml:3: policy 'a': delete_after: `forever` is only for retain_for; a deletion "
            "rule needs a duration like `90d`"
        ],
    ),
    (
        "retain nothing",
        "policies:\n  - name: a\n    retain_for: 0d\n",
        [
            "p.yaml:3: policy 'a': retain_for: `0d` holds nothing; give a positive duration or "
            "`forever`"
        ],
    ),
    (
        "duration as a list",
        "policies:\n  - name: a\n    retain_for: [1d]\n",
        [
            "p.yaml:3: policy 'a': retain_for: expected a duration like `90d` or `forever`, "
            "got a list"
        ],
    ),
    (
        "unknown region, lowercase region",
        "policies:\n  - name: a\n    delete_after: 1d\n    match:\n      regions: [US, EUR, APC]\n",
        [
            "p.yaml:5: policy 'a': match.regions[1]: unknown region `EUR`; regions are US, EU "
            "and APAC (did you mean `EU`?)",
            "p.yaml:5: policy 'a': match.regions[2]: unknown region `APC`; regions are US, EU "
            "and APAC (did you mean `APAC`?)",
        ],
    ),
    (
        "unknown status",
        "policies:\n  - name: a\n    delete_after: 1d\n    match:\n      statuses: complete\n",
        [
            "p.yaml:5: policy 'a': match.statuses: unknown status `complete`; statuses are "
            "completed and failed (did you mean `completed`?)"
        ],
    ),
    (
        "non-terminal status",
        "policies:\n  - name: a\n    delete_after: 1d\n    match:\n      statuses: [active]\n",
        [
            "p.yaml:5: policy 'a': match.statuses: `active` is not a terminal status: only "
            "completed and failed calls can be deleted or retained (omit statuses to match both)"
        ],
    ),
    (
        "mapping where a list is expected",
        "policies:\n  - name: a\n    delete_after: 1d\n    match:\n      agents: {x: 1}\n",
        [
            "p.yaml:5: policy 'a': match.agents: expected an agent id or name (a glob), a list "
            "of them or {file: PATH} (one per line), got a mapping"
        ],
    ),
    (
        "nested list",
        "policies:\n  - name: a\n    delete_after: 1d\n    match:\n      agents: [x, [y]]\n",
        [
            "p.yaml:5: policy 'a': match.agents[1]: expected an agent id or name (a glob), "
            "got a list"
        ],
    ),
    (
        "empty list",
        "policies:\n  - name: a\n    delete_after: 1d\n    match:\n      agents: []\n",
        [
            "p.yaml:5: policy 'a': match.agents: is an empty list, which matches no call; remove "
            "it to match all"
        ],
    ),
    (
        "metadata value as a mapping",
        "policies:\n  - name: a\n    delete_after: 1d\n    match:\n      metadata:\n"
        "        tier: {a: b}\n",
        [
            "p.yaml:6: policy 'a': match.metadata.tier: expected a value (a glob), a list of "
            "them or {file: PATH} (one per line), got a mapping"
        ],
    ),
    (
        "metadata as a list",
        "policies:\n  - name: a\n    delete_after: 1d\n    match:\n      metadata: [tier]\n",
        ["p.yaml:5: policy 'a': match.metadata: expected a mapping of key: value(s), got a list"],
    ),
    (
        "null metadata value",
        "policies:\n  - name: a\n    delete_after: 1d\n    match:\n      metadata: {tier: }\n",
        [
            "p.yaml:5: policy 'a': match.metadata.tier: is empty; give a value (a glob) or a list "
            "of them"
        ],
    ),
    (
        "match left empty",
        "policies:\n  - name: a\n    delete_after: 1d\n    match:\n",
        ["p.yaml:4: policy 'a': match: is empty (null); write `match: {}` to match every call"],
    ),
    (
        "match as a list",
        "policies:\n  - name: a\n    delete_after: 1d\n    match: [x]\n",
        ["p.yaml:4: policy 'a': match: expected a mapping, got a list"],
    ),
    (
        "missing name",
        "policies:\n  - delete_after: 1d\n",
        ["p.yaml:2: policy #1: name: missing; every policy needs a unique name"],
    ),
    (
        "non-string name",
        "policies:\n  - name: 12\n    delete_after: 1d\n",
        ["p.yaml:2: policy #1: name: expected text, got a number (quote it)"],
    ),
    (
        "unusable name",
        "policies:\n  - name: 'a b'\n    delete_after: 1d\n",
        [
            "p.yaml:2: policy #1: name: `a b` is not a usable name: use up to 100 letters, "
            "digits, `-`, `_` and `.`"
        ],
    ),
    (
        "duplicate names in one file",
        "policies:\n  - name: a\n    delete_after: 1d\n  - name: a\n    delete_after: 2d\n",
        ["p.yaml:4: policy 'a': name: duplicate name, also defined at p.yaml:2"],
    ),
    (
        "duplicate key",
        "policies:\n  - name: a\n    delete_after: 1d\n    delete_after: 2d\n",
        ["p.yaml:4: policy 'a': duplicate key `delete_after` (also on line 3)"],
    ),
    (
        "duplicate metadata key (a hold that could never match)",
        "policies:\n  - name: a\n    retain_for: forever\n    match:\n      metadata:\n"
        "        legal_hold: true\n        legal_hold: 'yes'\n",
        [
            "p.yaml:7: policy 'a': match.metadata: duplicate key `legal_hold` (also on line 6);"
            " list the values instead"
        ],
    ),
    (
        "policy not a mapping",
        "policies:\n  - support-90d\n",
        ["p.yaml:2: policy #1: expected a policy (a mapping with `name:`), got text"],
    ),
    (
        "policies not a list",
        "policies:\n  name: a\n",
        ["p.yaml:2: policies: expected a list of policies (`- name: ...`), got a mapping"],
    ),
    ("no policies", "policies: []\n", ["p.yaml:1: policies: the file defines no policies"]),
    ("null policies", "policies:\n", ["p.yaml:1: policies: the file defines no policies"]),
    (
        "empty file",
        "# only a comment\n",
        ["p.yaml: the file is empty; expected `policies:` and a list of policies"],
    ),
    (
        "a bare list",
        "- name: a\n  delete_after: 1d\n",
        ["p.yaml:1: expected `policies:` at the top, got a list (forgot `policies:`?)"],
    ),
    (
        "YAML syntax error",
        "policies:\n  - name: a\n    delete_after: [1d\n",
        [
            "p.yaml:4: YAML syntax error: while parsing a flow sequence, did not find expected "
            "',' or ']'"
        ],
    ),
    (
        "alias",
        "policies:\n  - &x {name: a, delete_after: 1d}\n  - *x\n",
        ["p.yaml:3: YAML aliases (*name) are not supported here"],
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_mistake_is_named_precisely(case: str, text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_all_problems_are_reported_at_once_one_per_line() -> None:
    text = """\
    policies:
      - name: a
        delete_after: 3x
      - name: b
        retain_for: 1d
        match: {regions: [Mars]}
      - name: c
        delete_after: 1d
        match: {statuses: [started]}
    """
    found = problems(text)
    assert [line.split(": ")[0] for line in found] == ["p.yaml:3", "p.yaml:6", "p.yaml:9"]
    with pytest.raises(PolicyError) as caught:
        policies(text)
    assert isinstance(caught.value, UserError) and caught.value.exit_code == 2
    assert str(caught.value).splitlines() == found


def test_duplicate_names_across_files_name_both_places(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("policies:\n  - name: x\n    delete_after: 1d\n")
    (tmp_path / "b.yml").write_text(
        "policies:\n  - {name: w, delete_after: 1d}\n  - {name: x, delete_after: 2d}\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_policies([tmp_path])
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'b.yml'}:3: policy 'x': name: duplicate name, also defined at "
        f"{tmp_path / 'a.yaml'}:2"
    ]


def test_problems_of_several_files_are_listed_together(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("policies:\n  - {name: x, delete_after: 1 d}\n")
    (tmp_path / "b.yaml").write_text("policies:\n  - {name: z, retain_for: forevr}\n")
    with pytest.raises(PolicyError) as caught:
        load_policies([tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"])
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'c.yaml'}: no such file or directory",
        f"{tmp_path / 'a.yaml'}:2: policy 'x': delete_after: bad duration `1 d`: did you mean "
        "`1d`?",
        f"{tmp_path / 'b.yaml'}:2: policy 'z': retain_for: bad duration `forevr`; write an "
        "integer and a unit h, d or w, e.g. `90d`",
    ]


def test_directories_load_their_own_yaml_sorted_not_subdirectories(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("policies:\n  - {name: b, delete_after: 1d}\n")
    (tmp_path / "a.yml").write_text("policies:\n  - {name: a, delete_after: 1d}\n")
    (tmp_path / "notes.txt").write_text("not a policy")
    (tmp_path / ".hidden.yaml").write_text("garbage: [")
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "s.yaml").write_text("policies:\n  - {name: s, delete_after: 0d}\n")
    loaded = load_policies([tmp_path])
    assert [p.name for p in loaded.policies] == ["a", "b"]
    assert [s.path for s in loaded.sources] == [str(tmp_path / "a.yml"), str(tmp_path / "b.yaml")]
    # The same file named twice (directory and file) is loaded once.
    again = load_policies([tmp_path, tmp_path / "a.yml"])
    assert [p.name for p in again.policies] == ["a", "b"]


def test_sources_carry_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    import hashlib

    data = b"policies:\n  - {name: a, delete_after: 1d}\n"
    (tmp_path / "p.yaml").write_bytes(data)
    loaded = load_policies([tmp_path / "p.yaml"])
    assert loaded.sources[0].sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (
            "empty-dir",
            "{d}: no *.yaml or *.yml files in this directory (subdirectories are not read)",
        ),
        ("missing", "{d}/nope.yaml: no such file or directory"),
        ("not-utf8", "{d}/bad.yaml:2: not UTF-8 text"),
        ("too-large", "{d}/big.yaml: larger than 1 MiB; is it a policy file?"),
    ],
)
def test_missing_or_unreadable_policy_sets(tmp_path: Path, setup: str, expected: str) -> None:
    target = {"empty-dir": tmp_path, "missing": tmp_path / "nope.yaml"}.get(setup)
    if setup == "not-utf8":
        target = tmp_path / "bad.yaml"
        target.write_bytes(b"policies:\n  - name: \xff\n")
    elif setup == "too-large":
        target = tmp_path / "big.yaml"
        target.write_bytes(b"#" * (1 << 20) + b"\n")
    assert target is not None
    with pytest.raises(PolicyError) as caught:
        load_policies([target])
    assert [str(p) for p in caught.value.problems] == [expected.format(d=tmp_path)]


def test_no_paths_at_all() -> None:
    with pytest.raises(PolicyError, match="no policy files given"):
        load_policies([])


def test_alias_bombs_are_refused_quickly() -> None:
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        bomb.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 9) + "]")
    found = problems("\n".join(bomb) + "\n")
    assert found == ["p.yaml:2: YAML aliases (*name) are not supported here"]


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    found = problems("policies: " + "[" * 5000 + "]" * 5000 + "\n")
    assert len(found) == 1
    assert found[0].startswith("p.yaml") and "nest" in found[0]


def test_huge_numbers_are_problems_not_crashes() -> None:
    # int() of more than 4300 digits raises ValueError since Python 3.11.
    digits = "9" * 5000
    assert problems(f"policies:\n  - {{name: a, delete_after: {digits}d}}\n") == [
        f"p.yaml:2: policy 'a': delete_after: `{digits[:20]}...` is too long; use `forever` to "
        "retain without end"
    ]
    big = policies(
        f"policies:\n  - {{name: a, delete_after: 1d, match: {{metadata: {{num: {digits}}}}}}}\n"
    )
    assert len(big.policies) == 1
