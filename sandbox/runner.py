"""Start the sandbox servers together and write a ready-to-use ga4sync config for them.

Used by `ga4sync sandbox`, `ga4sync demo`, the tests and the benchmarks, so all of them meet
the same wire protocols a real deployment meets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from ga4sync.core.clock import ManualClock
from ga4sync.mappings import MAPPINGS_DIR
from ga4sync.sandbox.ga4 import Ga4Sandbox
from ga4sync.sandbox.generator import OpportunityGenerator
from ga4sync.sandbox.http import SandboxServer, make_tls
from ga4sync.sandbox.hubspot import HubspotSandbox
from ga4sync.sandbox.salesforce import SalesforceSandbox
from ga4sync.sandbox.scenario import apply_hubspot, apply_salesforce, load_scenario

GA4_SECRET = "sandbox-ga4-api-secret"
SF_SESSION = "sandbox-session"
HUBSPOT_TOKEN = "sandbox-hubspot-token"
MEASUREMENT_ID = "G-SANDBOX01"


def shipped_or_local_mapping(name: str, cwd: Path | None = None) -> Path:
    """The user's own `mappings/<name>` when the current folder has one, else the shipped copy.

    Sales ops edit `mappings/*.yaml` in their checkout; a sandbox config pointing at the copy
    inside site-packages would make those edits silently change nothing.
    """
    local = (cwd or Path.cwd()) / "mappings" / name
    return local.resolve() if local.is_file() else MAPPINGS_DIR / name


@dataclass
class SandboxEnvironment:
    workdir: Path
    port_salesforce: int = 0
    port_ga4: int = 0
    port_hubspot: int = 0
    clock: ManualClock = field(default_factory=lambda: ManualClock(datetime.now(UTC)))
    salesforce: SalesforceSandbox = field(default_factory=SalesforceSandbox)
    ga4: Ga4Sandbox = field(default_factory=lambda: Ga4Sandbox(expected_secret=GA4_SECRET))
    opportunity_ids: list[str] = field(default_factory=list)
    mapping_files: list[Path] = field(default_factory=list)
    hubspot_objects: list[str] = field(default_factory=list)
    """HubSpot objects the loaded scenario has records of."""
    """The mapping files the last written config uses (printed, so a user knows which)."""
    hubspot: HubspotSandbox = field(init=False)
    """HubSpot CRM v3 over plain HTTP; its search index lag and limits follow `clock`."""

    def __post_init__(self) -> None:
        self.hubspot = HubspotSandbox(clock=self.clock.now, tokens={HUBSPOT_TOKEN})
        self.salesforce.clock = self.clock.now  # query locators expire by this clock
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._servers: list[SandboxServer] = []

    # -- data ------------------------------------------------------------------------------
    def seed(
        self, *, count: int = 12, seed: int = 42, span: timedelta = timedelta(hours=48)
    ) -> OpportunityGenerator:
        gen = OpportunityGenerator(seed=seed)
        self.opportunity_ids += gen.populate(self.salesforce.data, count, self.clock.now(), span)
        return gen

    def load_scenario(self, path: str | Path) -> None:
        scenario = load_scenario(path, default_now=self.clock.now())
        self.opportunity_ids += apply_salesforce(scenario, self.salesforce.data)
        apply_hubspot(scenario, self.hubspot.data)
        self.hubspot_objects = [obj for obj, has in scenario.has_hubspot.items() if has]

    def scenario_hubspot_mappings(self) -> list[Path]:
        """One HubSpot mapping per object the loaded scenario has records of (deals, contacts)."""
        return [shipped_or_local_mapping(f"hubspot_{obj}.yaml") for obj in self.hubspot_objects]

    # -- servers ---------------------------------------------------------------------------
    def start(self) -> SandboxEnvironment:
        tls = make_tls(self.workdir)
        self.ca_file = tls.ca_file
        self.sf_server = SandboxServer(
            self.salesforce.app, port=self.port_salesforce, tls=tls.context
        ).start()
        self.ga4_server = SandboxServer(self.ga4.app, port=self.port_ga4).start()
        self.hubspot_server = self.hubspot.serve(self.port_hubspot)
        self._servers = [self.sf_server, self.ga4_server, self.hubspot_server]
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
        self._servers = []

    def __enter__(self) -> SandboxEnvironment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- config ----------------------------------------------------------------------------
    def _config_path(self, path: str | Path) -> str:
        """A path as the config file must hold it to be read back right from any folder.

        The config reader resolves a relative path against the config file's own folder, so a
        file inside the sandbox folder is written relative to it and anything else absolute
        (writing the path as it was given, relative to the current folder, resolved twice).
        """
        absolute = Path(path).resolve()
        try:
            return str(absolute.relative_to(self.workdir.resolve()))
        except ValueError:
            return str(absolute)

    def write_config(
        self,
        *,
        state_url: str | None = None,
        mapping: Path | None = None,
        name: str = "ga4sync.yaml",
        overlap: str = "10m",
        initial_lookback: str = "72h",
        salesforce: bool = True,
        hubspot: list[Path] | None = None,
        hubspot_options: dict[str, Any] | None = None,
        salesforce_options: dict[str, Any] | None = None,
    ) -> Path:
        """A config for the sandbox: Salesforce (unless told not to) and one HubSpot connector
        per mapping in `hubspot`, named after the mapping file (`hubspot_deals`, ...)."""
        secrets = self.workdir / "secrets"
        secrets.mkdir(exist_ok=True)
        (secrets / "ga4_api_secret").write_text(GA4_SECRET + "\n")
        (secrets / "salesforce_session").write_text(SF_SESSION + "\n")
        (secrets / "hubspot_token").write_text(HUBSPOT_TOKEN + "\n")
        mapping = mapping or shipped_or_local_mapping("salesforce_opportunity.yaml")
        config: dict[str, Any] = {
            "ga4": {
                "measurement_id": MEASUREMENT_ID,
                "api_secret": {"file": "secrets/ga4_api_secret"},
                "endpoint": self.ga4_server.url,
            },
            "state": {"url": state_url or "sqlite:///ga4sync-sandbox.db"},
            "connectors": [
                {
                    "name": "salesforce",
                    "type": "salesforce",
                    "mapping": self._config_path(mapping),
                    "instance_url": self.sf_server.url,
                    "ca_file": self._config_path(self.ca_file),
                    "auth": {
                        "method": "session",
                        "session_id": {"file": "secrets/salesforce_session"},
                    },
                    "every": "1m",
                    "overlap": overlap,
                    "initial_lookback": initial_lookback,
                    **(salesforce_options or {}),
                }
            ]
            if salesforce
            else [],
        }
        for hs_mapping in hubspot or []:
            stem = Path(hs_mapping).stem
            config["connectors"].append(
                {
                    "name": stem if stem.startswith("hubspot") else f"hubspot_{stem}",
                    "type": "hubspot",
                    "mapping": self._config_path(hs_mapping),
                    "host": self.hubspot_server.url,
                    "access_token": {"file": "secrets/hubspot_token"},
                    "every": "1m",
                    "overlap": overlap,
                    "initial_lookback": initial_lookback,
                    **(hubspot_options or {}),
                }
            )
        path = self.workdir / name
        self.mapping_files = [Path(c["mapping"]) for c in config["connectors"]]
        header = (
            "# Written by ga4sync for the local sandbox. Secrets are in secrets/;\n"
            "# copy this file as a starting point for a real config.\n"
        )
        path.write_text(header + yaml.safe_dump(config, sort_keys=False))
        return path
