"""The HTML pages' templates (retention/templates): autoescaping is on for every one,
so a value from the API, the log or a policy file renders as text, markup or not; and
a name a template uses but is not given is an error, never an empty string."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import pytest

import retention.audit.html_report as log_page
import retention.run.html_report as run_page
from retention import html
from retention.audit.certificate_doc import HtmlWriter
from retention.audit.html_report import LogFacts, LogTally
from retention.html import ENV, macros, render
from retention.policy.load import parse_policies
from retention.run.context import RunContext
from retention.run.stats import RunStats
from tests.run.htmlpage import Page

TEMPLATES = Path(run_page.__file__).parents[1] / "templates"
MARKUP = "<img src=x onerror=alert(1)>"
SYNTAX = "{{7*7}}"  # template syntax in a value is text too, never evaluated
HOSTILE = f"{MARKUP} {SYNTAX}"
POLICIES = """\
policies:
  - name: erasure
    delete_after: 0d
    legal_basis: "<img src=x onerror=alert(1)> {{7*7}}"
  - name: hold
    retain_for: forever
    case: "<img src=x onerror=alert(1)> {{7*7}}"
    match: {agents: ["agent_*"]}
"""


def run_report() -> str:
    """A run report with the hostile text in every place a string reaches the page."""
    policies = parse_policies([(f"{MARKUP}.yaml", POLICIES)]).policies
    stats = RunStats(dry_run=False)
    stats.finished_unix, stats.exit_code = stats.started_unix + 5, 0
    stats.stop_reason = HOSTILE
    stats.agent_names["agent_1"] = HOSTILE
    stats.by_agent["agent_1"] = Counter(deleted=3, **{HOSTILE: 1})
    stats.by_region[HOSTILE] = Counter(deleted=3)
    stats.by_policy["erasure"] = Counter(deleted=3)
    stats.due_by_policy["erasure"] = 5
    stats.held_from["erasure"] = Counter(hold=2)
    stats.held_by[HOSTILE] = 2
    stats.skipped[HOSTILE] = 1
    stats.cited.update({"erasure": 5, "hold": 2})
    stats.record_failure(HOSTILE)
    stats.record_forecast(HOSTILE, 86400 * 3)
    context = RunContext(
        run_id=HOSTILE,
        dry_run=False,
        now=datetime(2026, 6, 1, tzinfo=UTC),
        shard=HOSTILE,
        policy_sources=((f"{MARKUP}.yaml", HOSTILE),),
        policies=policies,
        version=HOSTILE,
    )
    return run_page.render_run_html(stats, context)


def log_report() -> str:
    """An audit log report whose lines carry the hostile text wherever a string goes."""
    tally = LogTally()
    ts = "2026-05-01T02:00:00+00:00"
    started = {"event": "run_started", "run_id": HOSTILE, "ts": ts, "mode": HOSTILE}
    tally.take({**started, "shard": HOSTILE, "policies": [{"path": HOSTILE, "sha256": HOSTILE}]})
    for event in ("deleted", "failed"):
        tally.take({"event": event, "run_id": HOSTILE, "ts": ts, "policy": HOSTILE})
    tally.take({"event": "failed", "run_id": HOSTILE, "ts": ts, "error": HOSTILE})
    tally.take({"event": "run_finished", "run_id": HOSTILE, "ts": ts, "stopped_by": HOSTILE})
    tally.close()
    made = datetime(2026, 6, 1, tzinfo=UTC)
    about = LogFacts(Path(HOSTILE), files=1, made_at=made, live_run=True)
    return log_page.render_log_html(tally, about)


def certificate() -> str:
    """The certificate's HTML, head, a row and the API's totals, hostile throughout."""
    data: dict[str, Any] = {
        "policy": {"name": HOSTILE, "files": [{"path": HOSTILE, "sha256": HOSTILE}]},
        "log": dict.fromkeys(("path", "sha256", "lines", "last_seq", "last_hash"), HOSTILE)
        | {"verdict": HOSTILE},
        "erased": {
            "calls": 1,
            "by_event": {HOSTILE: 1},
            "first_redacted_at": HOSTILE,
            "last_redacted_at": HOSTILE,
            "not_found": 0,
        },
        "checkpoint": {"seq": 7, "note": HOSTILE, "key": HOSTILE},
        "runs": [{"run_id": HOSTILE, "held_by": {HOSTILE: 1}, "stopped_by": HOSTILE}],
        "open_intents": {"count": 1, "calls": [HOSTILE]},
        "made_at": HOSTILE,
        "tool_version": HOSTILE,
    }
    out = io.StringIO()
    writer = HtmlWriter(out, with_api=True)
    writer.head(data)
    writer.row({"call_id": HOSTILE, "event": HOSTILE, "api": HOSTILE})
    writer.tail({HOSTILE: {HOSTILE: 1}})
    return out.getvalue()


PAGES: dict[str, Callable[[], str]] = {
    "run report": run_report,
    "audit log report": log_report,
    "certificate": certificate,
}


def test_autoescaping_is_on_for_every_template_shipped() -> None:
    names = sorted(p.name for p in TEMPLATES.iterdir())
    assert names == sorted(ENV.list_templates())
    assert {"page.html", "macros.html", "run_report.html"} <= set(names)
    decide = ENV.autoescape
    assert callable(decide)
    assert all(decide(name) for name in names)
    assert decide("any.txt") and decide(None)  # any other name, and a string template
    assert isinstance(ENV.undefined, type) and issubclass(ENV.undefined, jinja2.StrictUndefined)


@pytest.mark.parametrize("name", PAGES)
def test_a_hostile_value_renders_as_text_on_every_page(name: str) -> None:
    text = PAGES[name]()
    doc = Page(text)
    assert doc.tags["img"] == 0
    assert "onerror" not in {key for key, _ in doc.attributes}
    assert MARKUP not in text  # only ever escaped in the source
    assert doc.text.count(HOSTILE) >= 5  # shown whole, as text, in many places
    assert f"{MARKUP} 49" not in doc.text
    assert doc.tags["script"] == 0


def test_every_template_is_rendered_by_the_hostile_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """So the test above covers each template: a new one must be added here."""
    used: set[str] = set()
    fresh = html.environment()  # no template cached yet: each one goes through the loader
    loader = fresh.loader
    assert loader is not None
    real = loader.get_source

    def get_source(env: jinja2.Environment, template: str) -> Any:
        used.add(template)
        return real(env, template)

    monkeypatch.setattr(loader, "get_source", get_source)
    monkeypatch.setattr(html, "ENV", fresh)
    for make in PAGES.values():
        make()
    assert used == set(ENV.list_templates())


@pytest.mark.parametrize(
    ("module", "make"), [(run_page, run_report), (log_page, log_report)], ids=["run", "log"]
)
def test_a_name_a_page_uses_but_is_not_given_is_an_error(
    module: Any, make: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    given: dict[str, Any] = {}

    def capture(template: str, **context: Any) -> str:
        given.update(context, _template=template)
        return ""

    monkeypatch.setattr(module, "render", capture)
    make()
    template = given.pop("_template")
    assert render(template, **given)  # everything given: the page
    for missing in given:  # each value given is used, and required
        with pytest.raises(jinja2.UndefinedError):
            render(template, **{k: v for k, v in given.items() if k != missing})


def test_a_macro_called_without_an_argument_it_uses_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError):
        macros("certificate.html")["tail"]()
    with pytest.raises(jinja2.UndefinedError):
        macros("macros.html")["table"]({"name": "t"})  # a table without columns or rows
