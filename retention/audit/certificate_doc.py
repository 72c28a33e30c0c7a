"""The erasure certificate as a document (.md, .html or .json), written row by row.

The head (policy, runs, counts, held and pending calls, the covering checkpoint) is
known before the first row; the erased calls follow one row at a time; the API
check's totals close the document. Only ids, names, digests, times and counts are
written: nothing free-form from the log or the API (no `error` text, no metadata
value, transcript, summary or phone number).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, Any, Final, Protocol

from retention.audit.certificate import NOT_ATTEMPTED, UNSETTLED
from retention.audit.events import Event
from retention.html import macros

HELD_NOTE: Final = (
    "Calls held by a retention rule are counted, not listed: the audit log has no line "
    "for a call that was kept, only each run's counts by deletion and retention policy."
)
PENDING_NOTE: Final = (
    "Pending: calls the run found due under the policy and did not erase: failed, "
    "unconfirmed (sent, the API's answer lost: the next run asks the API), or not "
    "attempted (the run stopped first). A later run may have erased them: see the list."
)
ROW_KEYS: Final = ("seq", "call_id", "agent_id", "event", "redacted_at", "run_id")
API_KEYS: Final = ("api", "api_shows")


class DocumentWriter(Protocol):
    def head(self, data: Mapping[str, Any]) -> None: ...
    def row(self, row: Mapping[str, Any]) -> None: ...
    def tail(self, api: Mapping[str, Any] | None) -> None: ...


def _columns(with_api: bool) -> tuple[str, ...]:
    return ROW_KEYS + (API_KEYS if with_api else ())


class JsonWriter:
    """One JSON object; `erased_calls` is written one element at a time."""

    def __init__(self, out: IO[str], with_api: bool) -> None:
        self._out, self._first = out, True
        self._columns = _columns(with_api)

    def head(self, data: Mapping[str, Any]) -> None:
        text = json.dumps(dict(data), indent=2)
        self._out.write(text[: text.rstrip().rfind("}")].rstrip() + ',\n  "erased_calls": [')

    def row(self, row: Mapping[str, Any]) -> None:
        item = json.dumps({key: row.get(key) for key in self._columns}, separators=(",", ":"))
        self._out.write(("\n    " if self._first else ",\n    ") + item)
        self._first = False

    def tail(self, api: Mapping[str, Any] | None) -> None:
        api_text = json.dumps(api, indent=2).replace("\n", "\n  ")
        self._out.write(("\n  " if not self._first else "") + f'],\n  "api": {api_text}\n}}\n')


def _plain(value: object) -> str:
    """A value as text; a count by key as `key n, key n`."""
    if isinstance(value, dict):
        return ", ".join(f"{key} {count}" for key, count in value.items())
    return "" if value is None else str(value)


def _md(value: object) -> str:
    text = _plain(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _lines_of(data: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The head as titled sections of (label, value) pairs, shared by .md and .html."""
    log, policy, erased = data["log"], data["policy"], data["erased"]
    point = data["checkpoint"]
    sections: list[tuple[str, list[tuple[str, str]]]] = [
        (
            "Policy",
            [("name", policy["name"])]
            + [(f"file {f['path']}", f"sha256 {f['sha256']}") for f in policy["files"]],
        ),
        (
            "Audit log",
            [
                ("path", log["path"]),
                ("sha256", log["sha256"]),
                ("lines", str(log["lines"])),
                ("last seq / hash", f"{log['last_seq']} / {log['last_hash']}"),
                ("verdict", log["verdict"]),
            ],
        ),
        (
            "Erased",
            [
                ("calls", str(erased["calls"])),
                ("by event", ", ".join(f"{k} {v}" for k, v in erased["by_event"].items())),
                ("first redacted_at", str(erased["first_redacted_at"])),
                ("last redacted_at", str(erased["last_redacted_at"])),
                ("not found (no such call)", str(erased[Event.NOT_FOUND])),
            ],
        ),
        (
            "Signed checkpoint",
            [(k, str(v)) for k, v in point.items()]
            if point.get("seq")
            else [("none", point["note"])],
        ),
    ]
    return sections


_RUN_COLUMNS: Final = (
    "run_id",
    "started_at",
    "finished_at",
    "mode",
    "exit_code",
    "stopped_by",
    "due",
    "erased",
    *UNSETTLED,
    NOT_ATTEMPTED,
    "held_by",
)


def _run_cells(run: Mapping[str, Any]) -> list[str]:
    cells = []
    for key in _RUN_COLUMNS:
        value = run.get(key)
        if key == "held_by":
            value = ", ".join(f"{k} {v}" for k, v in (value or {}).items()) or "0"
        cells.append("" if value is None else str(value))
    return cells


class MarkdownWriter:
    def __init__(self, out: IO[str], with_api: bool) -> None:
        self._out = out
        self._columns = _columns(with_api)

    def _table(self, header: tuple[str, ...]) -> None:
        self._out.write("| " + " | ".join(header) + " |\n")
        self._out.write("|" + "---|" * len(header) + "\n")

    def head(self, data: Mapping[str, Any]) -> None:
        out = self._out
        out.write(f"# Erasure certificate: {_md(data['policy']['name'])}\n\n")
        out.write(f"Made {data['made_at']} by retention {data['tool_version']}.\n\n")
        for title, pairs in _lines_of(data):
            out.write(f"## {title}\n\n")
            for label, value in pairs:
                out.write(f"- {_md(label)}: {_md(value)}\n")
            out.write("\n")
        out.write("## Runs that applied it\n\n")
        self._table(_RUN_COLUMNS)
        for run in data["runs"]:
            out.write("| " + " | ".join(_md(c) for c in _run_cells(run)) + " |\n")
        out.write(f"\n{HELD_NOTE}\n\n{PENDING_NOTE}\n\n")
        intents = data["open_intents"]
        out.write(f"Intents still open at the end of the log: {intents['count']}")
        listed = ", ".join(intents["calls"])
        out.write(f" ({listed})\n\n" if listed else "\n\n")
        out.write("## Calls erased\n\n")
        self._table(self._columns)

    def row(self, row: Mapping[str, Any]) -> None:
        self._out.write("| " + " | ".join(_md(row.get(k)) for k in self._columns) + " |\n")

    def tail(self, api: Mapping[str, Any] | None) -> None:
        self._out.write("\n## Fresh read from the API\n\n")
        if api is None:
            self._out.write("Not made (run with --api to re-read every erased call).\n")
            return
        for key, value in api.items():
            self._out.write(f"- {_md(key)}: {_md(value)}\n")


class HtmlWriter:
    """The macros of templates/certificate.html, autoescaped: a row per erased call."""

    def __init__(self, out: IO[str], with_api: bool) -> None:
        self._out = out
        self._columns = _columns(with_api)
        self._macros = macros("certificate.html")
        self._row = self._macros["row"]

    def head(self, data: Mapping[str, Any]) -> None:
        intents = data["open_intents"]
        self._out.write(
            self._macros["head"](
                name=data["policy"]["name"],
                made_at=data["made_at"],
                tool_version=data["tool_version"],
                sections=_lines_of(data),
                run_columns=_RUN_COLUMNS,
                runs=[_run_cells(run) for run in data["runs"]],
                held_note=HELD_NOTE,
                pending_note=PENDING_NOTE,
                open_intents=intents["count"],
                open_calls=", ".join(intents["calls"]),
                columns=self._columns,
            )
        )

    def row(self, row: Mapping[str, Any]) -> None:
        self._out.write(self._row([str(row.get(k, "")) for k in self._columns]))

    def tail(self, api: Mapping[str, Any] | None) -> None:
        pairs = None if api is None else [(key, _plain(value)) for key, value in api.items()]
        self._out.write(self._macros["tail"](pairs))


WRITERS: Final = (".md", ".html", ".json")


def writer_for(suffix: str, out: IO[str], with_api: bool) -> DocumentWriter:
    if suffix == ".json":
        return JsonWriter(out, with_api)
    if suffix == ".html":
        return HtmlWriter(out, with_api)
    return MarkdownWriter(out, with_api)
