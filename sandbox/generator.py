"""Deterministic CRM data: the same seed always gives the same opportunities and moves."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ga4sync.sandbox.salesforce_data import SalesforceData

OPPORTUNITY_STAGES = [
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Proposal/Price Quote",
    "Negotiation/Review",
]
WON, LOST = "Closed Won", "Closed Lost"
LEAD_SOURCES = ["Web", "Phone Inquiry", "Partner Referral", "Trade Show", "Other"]
CURRENCIES = ["USD", "USD", "USD", "EUR", "GBP"]


def client_id(rng: random.Random) -> str:
    return f"{rng.randint(100_000_000, 2_147_483_647)}.{rng.randint(1_600_000_000, 1_790_000_000)}"


@dataclass
class OpportunityGenerator:
    """Opportunities created in [now - span, now - 1h] that walk forward through the stages."""

    seed: int = 42
    missing_client_id_rate: float = 0.1

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def populate(
        self, data: SalesforceData, count: int, now: datetime, span: timedelta = timedelta(hours=48)
    ) -> list[str]:
        ids = []
        for _ in range(count):
            start = (
                now - span + timedelta(seconds=self.rng.randint(0, int(span.total_seconds() * 0.5)))
            )
            fields: dict[str, Any] = {
                "Name": f"{self.rng.choice(['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli'])} "
                f"{self.rng.choice(['renewal', 'expansion', 'pilot', 'new logo'])}",
                "Amount": float(self.rng.choice([500, 1200, 2500, 9900, 15000, 48000])),
                "CurrencyIsoCode": self.rng.choice(CURRENCIES),
                "LeadSource": self.rng.choice(LEAD_SOURCES),
            }
            if self.rng.random() >= self.missing_client_id_rate:
                fields["GA_Client_ID__c"] = (
                    f"GA1.1.{client_id(self.rng)}"
                    if self.rng.random() < 0.3
                    else client_id(self.rng)
                )
            oid = data.create_opportunity(start, stage=OPPORTUNITY_STAGES[0], **fields)
            at = start
            steps = self.rng.randint(1, 4)
            stage_index = 0
            for _ in range(steps):
                at += timedelta(minutes=self.rng.randint(10, 600))
                if at >= now - timedelta(minutes=30):
                    break
                if self.rng.random() < 0.25:
                    data.move_opportunity(oid, self.rng.choice([WON, WON, LOST]), at)
                    break
                stage_index = min(stage_index + self.rng.randint(1, 2), len(OPPORTUNITY_STAGES) - 1)
                data.move_opportunity(oid, OPPORTUNITY_STAGES[stage_index], at)
            ids.append(oid)
        return ids

    def advance(self, data: SalesforceData, ids: list[str], moves: int, at: datetime) -> list[str]:
        """Move `moves` open opportunities one step (or to closed) at time `at`."""
        moved = []
        open_ids = [
            i
            for i in ids
            if not str(data.objects["Opportunity"][i]["StageName"]).startswith("Closed")
        ]
        for oid in self.rng.sample(open_ids, min(moves, len(open_ids))):
            current = data.objects["Opportunity"][oid]["StageName"]
            if self.rng.random() < 0.5:
                target = WON
            else:
                idx = OPPORTUNITY_STAGES.index(current) if current in OPPORTUNITY_STAGES else 0
                target = OPPORTUNITY_STAGES[min(idx + 1, len(OPPORTUNITY_STAGES) - 1)]
                if target == current:
                    target = WON
            data.move_opportunity(oid, target, at)
            moved.append(oid)
        return moved
