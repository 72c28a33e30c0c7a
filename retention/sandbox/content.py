"""Fake but realistic sensitive content for generated calls: people, numbers, words.

Every phone number is in the fictional +1 555 range and every person is made up,
so tests can search any output for these strings to prove nothing leaked.
"""

from __future__ import annotations

from typing import Final

from retention.api.models import Call

# Every generated phone number starts with this: a test that finds it in a log leaked one.
PHONE_PREFIX: Final = "+1555"

FIRST_NAMES: Final = (
    "Dana",
    "Ravi",
    "Marisol",
    "Tobias",
    "Keiko",
    "Olu",
    "Ingrid",
    "Mateo",
    "Priya",
    "Lars",
    "Ama",
    "Yusuf",
)
LAST_NAMES: Final = (
    "Whitfield",
    "Okonkwo",
    "Castellanos",
    "Lindqvist",
    "Haraguchi",
    "Adeyemi",
    "Brennan",
    "Novak",
    "Iyer",
    "Fontaine",
)

# (topic used in the summary, what the caller says, what the agent answers)
TOPICS: Final = (
    (
        "reschedule an appointment",
        "Hi, this is {name}, I need to move my appointment on the {day}th.",
        "Of course, {first}. I can offer the {day2}th at 3pm instead.",
    ),
    (
        "dispute a charge",
        "There's a charge of ${amount} on my card ending {last4} that I don't recognise.",
        "I'm sorry about that, {first}. I've opened dispute case {case}.",
    ),
    (
        "update a delivery address",
        "Please send my order to {street} instead, it's {name}.",
        "Done, {first}. Order {case} now ships to the new address.",
    ),
    (
        "cancel a subscription",
        "I'd like to cancel my plan, my account is under {name}.",
        "I've scheduled the cancellation, {first}; reference {case}.",
    ),
    (
        "ask about an insurance claim",
        "I'm calling about claim {case}, my date of birth is 19{yy}-0{month}-1{day1}.",
        "Thanks {first}, the claim is approved for ${amount}.",
    ),
    (
        "report a lost card",
        "I lost my card ending {last4}, I'm {name}.",
        "I've frozen it, {first}. A new card arrives in {day1} days.",
    ),
)

STREETS: Final = ("Maple Court", "Harbour Road", "Linden Allee", "Sakura Dori", "Quay Street")

ERROR_MESSAGES: Final = (
    "Carrier rejected the call to {phone}: SIP 486 Busy Here",
    "LLM provider timeout after 30s while speaking with {name}",
    "Media stream closed unexpectedly (caller {phone})",
    "Tool call 'lookup_account' failed for {name}: 502 from upstream",
)

AGENT_BASE_NAMES: Final = (
    "support-us",
    "support-eu",
    "sales-outbound",
    "billing",
    "appointments",
    "collections",
    "claims-apac",
    "onboarding",
)

DESCRIPTIONS: Final = (
    "Answers inbound support calls.",
    "Handles billing questions and disputes.",
    "Books and moves appointments.",
    "Outbound reminders and surveys.",
)

TTS_VOICES: Final = (
    "a0e99841-438c-4a64-b679-ae501e7d6091",
    "694f9389-aac1-45b6-b726-9d9369183238",
    "79a125e8-cd45-4c13-8a67-188112f4dd22",
)

ENVS: Final = ("production",) * 7 + ("staging", "staging", "dev")
TIERS: Final = ("free", "free", "trial", "pro", "pro", "enterprise")
CUSTOMERS: Final = 40  # metadata.customer_id is one of cus_1000 .. cus_1039


def phone(bits: int) -> str:
    """A fictional North American number: +1 555 and seven digits."""
    return f"{PHONE_PREFIX}{bits % 10_000_000:07d}"


def person(bits: int) -> tuple[str, str]:
    """(first name, full name) of a made-up caller."""
    first = FIRST_NAMES[bits % len(FIRST_NAMES)]
    last = LAST_NAMES[(bits // 16) % len(LAST_NAMES)]
    return first, f"{first} {last}"


def summary(bits: int, caller_phone: str) -> str:
    """The one-line summary written after a call: same person and topic as its transcript."""
    _, name = person(bits)
    topic = TOPICS[(bits >> 8) % len(TOPICS)][0]
    return f"{name} called to {topic}; the agent resolved it (callback {caller_phone})."


def conversation(bits: int, caller_phone: str) -> list[tuple[str, str]]:
    """[(role, text), ...] of one call, derived from `bits` only."""
    first, name = person(bits)
    _, user_line, agent_line = TOPICS[(bits >> 8) % len(TOPICS)]
    values = {
        "name": name,
        "first": first,
        "day": 10 + (bits >> 12) % 18,
        "day2": 10 + (bits >> 17) % 18,
        "day1": 1 + (bits >> 22) % 8,
        "amount": 20 + (bits >> 25) % 900,
        "last4": f"{(bits >> 35) % 10_000:04d}",
        "case": f"CS-{(bits >> 49) % 1_000_000:06d}",
        "street": f"{1 + (bits >> 30) % 200} {STREETS[(bits >> 38) % len(STREETS)]}",
        "yy": 50 + (bits >> 41) % 49,
        "month": 1 + (bits >> 45) % 9,
    }
    turns = [
        ("assistant", "Thanks for calling, how can I help you today?"),
        ("user", user_line.format(**values)),
        ("assistant", agent_line.format(**values)),
        ("user", f"Great, you can reach me at {caller_phone} if anything changes."),
        ("assistant", f"Noted. Anything else, {first}?"),
        ("user", "No, that's all. Thank you!"),
    ]
    return turns


def error_message(bits: int, caller_phone: str) -> str:
    _, name = person(bits)
    template = ERROR_MESSAGES[(bits >> 5) % len(ERROR_MESSAGES)]
    return template.format(phone=caller_phone, name=name)


def sensitive_strings(call: Call) -> list[str]:
    """The distinctive personal strings of a call, for tests proving none leaked.

    Phone numbers, summary, transcript lines, error message and customer id; not
    short metadata values such as `true` or `production`, which match too widely.
    """
    found = [call.summary, call.error_message]
    if call.telephony_params is not None:
        found += [call.telephony_params.to, call.telephony_params.from_]
    if isinstance(call.transcript, list):
        found += [turn.get("text") for turn in call.transcript if isinstance(turn, dict)]
    customer = (call.metadata or {}).get("customer_id")
    found.append(customer if isinstance(customer, str) else None)
    return [text for text in found if isinstance(text, str) and text]
