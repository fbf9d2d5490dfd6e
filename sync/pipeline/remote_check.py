"""`--validate-remote`: ask Google's `/debug/mp/collect` about each mapping rule before sending.

Our own validator (rules.py) follows what Google documents; the validation server is the final
word. Checking the first event of every (mapping version, rule) pair once catches a rule that
Google refuses before any of its events reach production, at the cost of one extra request per
rule. Which pairs passed is remembered in memory by the `RemoteCheckMemo` the caller keeps
(the engine keeps one per process, so `ga4sync run` checks once per run and the daemon once per
mapping edit); it is deliberately not persisted, since a fresh check after a restart is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from ga4sync.ga4.payload import request_body
from ga4sync.ga4.rules import Mode
from ga4sync.pipeline.ga4_client import Ga4Client, SendOutcome
from ga4sync.state.store import ClaimedRow

RulePair = tuple[str, str]


@dataclass
class RemoteCheckMemo:
    """(mapping hash, rule) pairs whose first event Google's validation server accepted."""

    passed: set[RulePair] = field(default_factory=set)


@dataclass(frozen=True)
class RemoteVerdict:
    """Google's answer for one row: accepted, refused (with its message), or not reachable."""

    refused: dict[str, Any] | None = None
    unreachable: SendOutcome | None = None


def rule_pair(row: ClaimedRow) -> RulePair:
    return (row.mapping_hash or "", row.rule or row.event_name or "")


def debug_body(payload: dict[str, Any]) -> dict[str, Any]:
    """The single-event request as it would be sent, asking for the strict checks."""
    body = request_body([payload])
    body["validation_behavior"] = Mode.ENFORCE.value
    return body


def check_rules(
    client: Ga4Client,
    pool: Executor,
    items: Sequence[tuple[ClaimedRow, dict[str, Any]]],
    memo: RemoteCheckMemo,
) -> dict[str, RemoteVerdict]:
    """Verdicts by row key for rows of rules not yet accepted; other rows need no check.

    The first row of each unchecked rule is asked about; if Google accepts it the rule passes.
    If Google refuses it, every other row of that rule in this claim is asked about on its own,
    so one bad CRM record does not hold back the rule, and a broken rule sends nothing.
    """
    unchecked: dict[RulePair, list[tuple[ClaimedRow, dict[str, Any]]]] = {}
    for row, payload in items:
        pair = rule_pair(row)
        if pair not in memo.passed:
            unchecked.setdefault(pair, []).append((row, payload))
    verdicts: dict[str, RemoteVerdict] = {}
    if not unchecked:
        return verdicts
    firsts = [members[0] for members in unchecked.values()]
    for (row, _), verdict in zip(firsts, _ask(client, pool, firsts), strict=True):
        verdicts[row.key] = verdict
        if verdict.refused is None and verdict.unreachable is None:
            memo.passed.add(rule_pair(row))
    rest = [
        member
        for pair, members in unchecked.items()
        if pair not in memo.passed
        for member in members[1:]
    ]
    for (row, _), verdict in zip(rest, _ask(client, pool, rest), strict=True):
        verdicts[row.key] = verdict
    return verdicts


def _ask(
    client: Ga4Client, pool: Executor, items: Sequence[tuple[ClaimedRow, dict[str, Any]]]
) -> list[RemoteVerdict]:
    answers = pool.map(client.debug, [debug_body(payload) for _, payload in items])
    verdicts = []
    for outcome, messages in answers:
        if outcome.kind != "sent":
            verdicts.append(RemoteVerdict(unreachable=outcome))
        elif messages:
            verdicts.append(RemoteVerdict(refused=messages[0]))
        else:
            verdicts.append(RemoteVerdict())
    return verdicts


def describe_refusal(row: ClaimedRow, message: dict[str, Any]) -> str:
    """What a sales-ops person reads in `ga4sync outbox list`."""
    path = message.get("fieldPath") or "(payload)"
    return (
        f"GA4 validation server (--validate-remote) refused mapping rule `{row.rule}` "
        f"(mapping version {str(row.mapping_hash or '?')[:12]}): "
        f"{message.get('validationCode', 'VALUE_INVALID')} at {path}: "
        f"{message.get('description', '')}"
    )
