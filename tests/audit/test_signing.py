"""Signed checkpoints and the witness: keygen, and the tamper matrix they add.

The chain alone shows an edit, but not a chain rebuilt by someone who can write the
file, nor lines cut off the end. A signature shows the first; the witness the second.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from retention.audit.signing import Signer
from retention.audit.witness import Witness
from retention.cli import main
from tests.audit.logs import RECORDS, write
from tests.audit.signed import make_key, rechain, signed_log

# Checkpoints after run-1's run_finished (record 9), run-3's (18) and run-4's (20).
_AFTER_RUNS = (9, 18, 20)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Signer, Path]]:
    directory = tmp_path_factory.mktemp("keys")
    return {name: make_key(directory, name) for name in ("a", "b")}


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out, err


def _log(tmp_path: Path, signer: Signer) -> tuple[Path, list[bytes]]:
    lines = signed_log(RECORDS, dict.fromkeys(_AFTER_RUNS, signer))
    return write(tmp_path / "audit.jsonl", lines), lines


# -- keygen ---------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = tmp_path / "audit-key"
    code, out, err = _cli(capsys, "audit", "keygen", str(private))
    assert code == 0
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert (tmp_path / "audit-key.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    body = private.read_text().splitlines()[1]  # a line of the key's base64
    assert body not in out + err
    assert "PRIVATE KEY-----" not in out + err


def test_keygen_never_overwrites_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private = tmp_path / "audit-key"
    private.write_text("precious")
    code, _, err = _cli(capsys, "audit", "keygen", str(private))
    assert code == 2
    assert err.count("\n") == 1
    assert "already exists" in err
    assert private.read_text() == "precious"
    assert not (tmp_path / "audit-key.pub").exists()


def test_a_private_key_others_may_read_is_refused_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict[str, tuple[Signer, Path]]
) -> None:
    private = tmp_path / "loose-key"
    private.write_bytes(keys["a"][0].path.read_bytes())
    private.chmod(0o640)
    policies = tmp_path / "p.yaml"
    policies.write_text("policies:\n  - name: p\n    delete_after: 30d\n")
    code, _, err = _cli(
        capsys,
        "run",
        "--policies",
        str(policies),
        "--audit-log",
        str(tmp_path / "audit.jsonl"),
        "--signing-key",
        str(private),
    )
    assert code == 2
    assert err.count("\n") == 1
    assert f"--signing-key {private}" in err
    assert f"chmod 600 {private}" in err
    assert not (tmp_path / "audit.jsonl").exists()


# -- signatures -------------------------------------------------------------------------


def test_a_signed_log_verifies_and_says_which_key_signed_what(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict[str, tuple[Signer, Path]]
) -> None:
    signer, public = keys["a"]
    path, _ = _log(tmp_path, signer)
    code, out, _ = _cli(capsys, "audit", "verify", str(path), "--public-key", str(public))
    assert code == 0, out
    # Checkpoint lines sit at seq 11, 21 and 24 (each one after the record it follows).
    assert f"key {signer.key_id} ({public}): 3 checkpoints, seq 11..24" in out
    assert "checkpoints 3, signature checked" in out
    assert "not covered" not in out


def test_lines_after_the_last_checkpoint_are_reported_not_covered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict[str, tuple[Signer, Path]]
) -> None:
    signer, public = keys["a"]
    lines = signed_log(RECORDS, {9: signer})  # one checkpoint, at seq 11, then 11 records
    path = write(tmp_path / "audit.jsonl", lines)
    code, out, _ = _cli(capsys, "audit", "verify", str(path), "--public-key", str(public))
    assert code == 0
    assert "not covered 11 lines after the last checkpoint (seq 11)" in out


def test_without_public_keys_signatures_are_said_unchecked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict[str, tuple[Signer, Path]]
) -> None:
    path, _ = _log(tmp_path, keys["a"][0])
    code, out, _ = _cli(capsys, "audit", "verify", str(path))
    assert code == 0
    assert "checkpoints 3, signature NOT checked (no --public-key)" in out


def test_a_chain_rebuilt_after_an_edit_is_caught_by_a_signature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict[str, tuple[Signer, Path]]
) -> None:
    signer, public = keys["a"]
    _, lines = _log(tmp_path, signer)
    record = json.loads(lines[4])  # c1's `deleted`, under the first checkpoint
    record["redacted_at"] = "2026-11-01T09:00:00Z"
    tampered = rechain([*lines[:4], json.dumps(record).encode() + b"\n", *lines[5:]])
    path = write(tmp_path / "audit.jsonl", tampered)
    # The chain alone is fooled...
    code, out, _ = _cli(capsys, "audit", "verify", str(path))
    assert code == 0
    # ...the signature is not: the first checkpoint no longer signs its chain.
    code, out, err = _cli(capsys, "audit", "verify", str(path), "--public-key", str(public))
    assert code == 1
    assert "BROKEN at line 11: forged checkpoint" in out
    assert "line 11" in err


def test_a_forged_checkpoint_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict[str, tuple[Signer, Path]]
) -> None:
    real, public = keys["a"]
    other = keys["b"][0]
    lines = signed_log(RECORDS, {9: real, 18: other})
    # The forger signs with its own key but names the trusted key's fingerprint.
    forged = json.loads(lines[20])
    assert forged["event"] == "checkpoint"
    forged["key"] = real.key_id
    path = write(
        tmp_path / "audit.jsonl", rechain([*lines[:20], json.dumps(forged).encode(), *lines[21:]])
    )
    code, out, _ = _cli(capsys, "audit", "verify", str(path), "--public-key", str(public))
    assert code == 1
    assert "BROKEN at line 21: forged checkpoint" in out


def test_a_checkpoint_signed_by_an_unknown_key_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict[str, tuple[Signer, Path]]
) -> None:
    lines = signed_log(RECORDS, {9: keys["a"][0], 18: keys["b"][0]})
    path = write(tmp_path / "audit.jsonl", lines)
    code, out, _ = _cli(capsys, "audit", "verify", str(path), "--public-key", str(keys["a"][1]))
    assert code == 1
    assert (
        f"BROKEN at line 21: checkpoint signed by an unknown key {keys['b'][0].key_id[:16]}" in out
    )


def test_key_rotation_across_two_keys_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict[str, tuple[Signer, Path]]
) -> None:
    (old, old_pub), (new, new_pub) = keys["a"], keys["b"]
    lines = signed_log(RECORDS, {9: old, 18: new, 20: new})
    path = write(tmp_path / "audit.jsonl", lines)
    code, out, _ = _cli(
        capsys,
        "audit",
        "verify",
        str(path),
        "--public-key",
        str(old_pub),
        "--public-key",
        str(new_pub),
    )
    assert code == 0, out
    assert f"key {old.key_id} ({old_pub}): 1 checkpoints, seq 11..11" in out
    assert f"key {new.key_id} ({new_pub}): 2 checkpoints, seq 21..24" in out


def test_a_checkpoint_that_does_not_cover_the_line_before_it_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict[str, tuple[Signer, Path]]
) -> None:
    signer, public = keys["a"]
    lines = signed_log(RECORDS, {9: signer})
    # A genuine checkpoint moved later: its signature holds, its place does not.
    moved = [*lines[:10], *lines[11:15], lines[10], *lines[15:]]
    path = write(tmp_path / "audit.jsonl", rechain(moved))
    code, out, _ = _cli(capsys, "audit", "verify", str(path), "--public-key", str(public))
    assert code == 1
    assert "BROKEN at line 15: checkpoint does not cover the line before it" in out


# -- the witness --------------------------------------------------------------------------


def _witness(directory: Path, lines: list[bytes]) -> Path:
    directory.mkdir()
    witness = Witness(directory)
    for line in lines:
        record = json.loads(line)
        if record["event"] == "checkpoint":
            witness.record(record["seq"], line)
    return directory


def test_the_witness_proves_every_checkpoint_still_in_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict[str, tuple[Signer, Path]]
) -> None:
    path, lines = _log(tmp_path, keys["a"][0])
    witness = _witness(tmp_path / "witness", lines)
    assert sorted(os.listdir(witness)) == [
        "checkpoint-000000000011.json",
        "checkpoint-000000000021.json",
        "checkpoint-000000000024.json",
    ]
    code, out, _ = _cli(capsys, "audit", "verify", str(path), "--witness", str(witness))
    assert code == 0
    assert f"witness     3 of 3 witnessed checkpoints found in the log ({witness})" in out


def test_truncation_is_caught_by_the_witness_naming_the_first_missing_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict[str, tuple[Signer, Path]]
) -> None:
    signer, public = keys["a"]
    path, lines = _log(tmp_path, signer)
    witness = _witness(tmp_path / "witness", lines)
    write(path, lines[:20])  # cut after seq 20: checkpoints 21 and 24 are gone
    # Signatures alone cannot see it: what is left is intact and signed.
    code, out, _ = _cli(capsys, "audit", "verify", str(path), "--public-key", str(public))
    assert code == 0
    code, out, err = _cli(capsys, "audit", "verify", str(path), "--witness", str(witness))
    assert code == 1
    assert (
        "witnessed checkpoint seq 21 (checkpoint-000000000021.json) is missing: "
        "the log ends at seq 20, it was cut short" in out
    )
    assert "checkpoint-000000000021.json" in err


def test_a_log_rebuilt_after_an_edit_fails_against_the_witness(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict[str, tuple[Signer, Path]]
) -> None:
    path, lines = _log(tmp_path, keys["a"][0])
    witness = _witness(tmp_path / "witness", lines)
    # Rebuilt from scratch without checkpoints, one line dropped: no signature to fail.
    rebuilt = [line for line in lines if json.loads(line)["event"] != "checkpoint"]
    records = [json.loads(line) for line in rebuilt]
    for record in records:
        record.pop("seq"), record.pop("hash")
    del records[5:7]  # call c3's intent and outcome
    path = write(path, signed_log(records, {}))
    code, out, _ = _cli(capsys, "audit", "verify", str(path), "--witness", str(witness))
    assert code == 1
    assert "BROKEN at line 11: witnessed checkpoint seq 11 (checkpoint-000000000011.json)" in out
    assert "has another hash here: the log was rebuilt after an edit" in out


def test_a_witness_file_is_never_overwritten(
    tmp_path: Path, keys: dict[str, tuple[Signer, Path]]
) -> None:
    _, lines = _log(tmp_path, keys["a"][0])
    witness = _witness(tmp_path / "witness", lines)
    from retention.audit.witness import WitnessWriteError

    with pytest.raises(WitnessWriteError, match="already holds"):
        Witness(witness).record(11, b"{}\n")
    assert (witness / "checkpoint-000000000011.json").read_bytes() == lines[10]


# -- the README's recipes, run as an auditor would run them ----------------------------

_README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _block_after(marker: str, language: str) -> str:
    start = _README.index(marker)
    match = re.search(rf"^```{language}\n(.*?)^```", _README[start:], re.M | re.S)
    assert match is not None
    return match.group(1)


def test_the_readme_python_recipe_checks_signatures_without_this_tool(
    tmp_path: Path, keys: dict[str, tuple[Signer, Path]]
) -> None:
    signer, public = keys["a"]
    path, lines = _log(tmp_path, signer)
    script = tmp_path / "check.py"
    script.write_text(_block_after("**Signed checkpoints.**", "python"))
    done = subprocess.run(
        [sys.executable, str(script), str(path), str(public)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    last = json.loads(lines[-1])
    assert done.stdout.splitlines()[-1] == (
        f"signed: seq 1..{last['covers_seq']}, hash {last['covers_hash']}"
    )
    # A rebuilt chain makes the recipe fail too.
    record = json.loads(lines[4])
    record["redacted_at"] = "2026-11-01T09:00:00Z"
    write(path, rechain([*lines[:4], json.dumps(record).encode() + b"\n", *lines[5:]]))
    done = subprocess.run(
        [sys.executable, str(script), str(path), str(public)], capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "InvalidSignature" in done.stderr


@pytest.mark.skipif(
    shutil.which("jq") is None or shutil.which("openssl") is None, reason="needs jq and openssl"
)
def test_the_readme_openssl_recipe_checks_the_last_signature(
    tmp_path: Path, keys: dict[str, tuple[Signer, Path]]
) -> None:
    signer, public = keys["a"]
    _, lines = _log(tmp_path, signer)  # tmp_path/audit.jsonl, as the recipe names it
    shutil.copy(public, tmp_path / "audit-key.pub")
    recipe = _block_after("or, for the last checkpoint", "sh")
    done = subprocess.run(["sh", "-c", recipe], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Signature Verified Successfully" in done.stdout
    # The last checkpoint with one byte of its signed form changed fails.
    last = json.loads(lines[-1])
    last["covers_seq"] -= 1
    changed = json.dumps(last, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    write(tmp_path / "audit.jsonl", [*lines[:-1], changed])
    done = subprocess.run(["sh", "-c", recipe], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0
