"""`ga4sync sandbox`: run the local CRM and GA4 stand-ins until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click
from ga4sync.cli.common import console
from ga4sync.sandbox.runner import SandboxEnvironment


@click.command()
@click.option(
    "--scenario",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scenario file (YAML/JSON) with records and stage history; see "
    "docs/scenarios.md. Without it, generated data is used.",
)
@click.option("--records", default=25, show_default=True, help="Generated opportunities.")
@click.option("--seed", default=42, show_default=True)
@click.option("--port-salesforce", default=0, type=int, help="0 picks a free port.")
@click.option("--port-ga4", default=0, type=int, help="0 picks a free port.")
@click.option(
    "--dir",
    "workdir",
    default=".ga4sync-sandbox",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the CA file, secrets and config are written.",
)
def sandbox(
    scenario: Path | None,
    records: int,
    seed: int,
    port_salesforce: int,
    port_ga4: int,
    workdir: Path,
) -> None:
    """Serve sandbox Salesforce, HubSpot and GA4 on 127.0.0.1 and print a ready config.

    The config has a Salesforce connector, plus a HubSpot connector for deals and/or contacts
    when the scenario has HubSpot records. Mappings come from ./mappings/ when that folder has
    them (so your edits count), else the shipped copies; the command prints which.
    """
    env = SandboxEnvironment(workdir, port_salesforce=port_salesforce, port_ga4=port_ga4)
    if scenario:
        env.load_scenario(scenario)
    else:
        env.seed(count=records, seed=seed)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        env.start()
    except OSError as exc:
        for started in ("sf_server", "ga4_server", "hubspot_server"):
            server = getattr(env, started, None)
            if server is not None:
                server.stop()  # the ones that did start before the port clash
        raise click.UsageError(
            f"cannot start the sandbox servers ({exc.strerror or exc}): is --port-salesforce "
            "or --port-ga4 already in use? 0 picks a free port"
        ) from None
    try:
        config = env.write_config(hubspot=env.scenario_hubspot_mappings())
        console.print(f"Salesforce (REST, HTTPS): {env.sf_server.url}")
        console.print(f"HubSpot (CRM v3, HTTP):   {env.hubspot_server.url} (token in secrets/)")
        console.print(
            f"GA4 Measurement Protocol: {env.ga4_server.url}/mp/collect "
            f"(hits: {env.ga4_server.url}/sandbox/hits)"
        )
        console.print(f"CA file to trust:         {env.ca_file}")
        console.print(f"Ready-to-use config:      {config}")
        for mapping in env.mapping_files:
            console.print(f"Mapping file used:        {mapping}")
        console.print(f"\nTry:  ga4sync --config {config} run\n")
        console.print(config.read_text())
        console.print("Press Ctrl-C to stop.")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        env.stop()
