"""``profiles list`` and ``profiles check``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from heptathlon.bench.cli.options import Json
from heptathlon.bench.cli.render import out, progress


def profiles_list(as_json: Json = False) -> None:
    """List the hardware profiles in hw_profiles/."""
    from heptathlon.bench.profile import list_profiles
    from heptathlon.runners.adapters.registry import validate_runtime_sections

    profs = [validate_runtime_sections(p) for p in list_profiles()]  # each runtime's section, defaults filled
    if as_json:
        print(json.dumps([p.model_dump(mode="json") for p in profs]))
        return
    t = Table(title="hardware profiles")
    for c in ("name", "device", "cores", "threads", "precision", "memory", "default", "description"):
        t.add_column(c)
    for p in profs:
        t.add_row(p.name, p.device, str(p.cpu.cores or "all"), str(p.cpu.threads), p.precision,
                  p.memory_limit or "—", "yes" if p.default else "", p.description)
    out.print(t)


def profiles_check(name: Annotated[str, typer.Argument(help="Profile name (see `heptathlon profiles list`).")],
                   spin_s: Annotated[float, typer.Option(
                       "--spin-seconds", help="Length of the CPU-bound probes.")] = 1.0,
                   as_json: Json = False) -> None:
    """Run probes under a profile and show, control by control, that it really holds."""
    from dataclasses import asdict

    from heptathlon.bench.profile import load_profile
    from heptathlon.runners.adapters.registry import validate_runtime_sections
    from heptathlon.runners.probe import check_profile

    prof = validate_runtime_sections(load_profile(name))
    with progress() as prog:
        prog.add_task(f"probing {name}", total=None)
        results = check_profile(prof, spin_s=spin_s)
    if as_json:
        print(json.dumps([asdict(r) for r in results], default=str))
    else:
        t = Table(title=f"profile {name}: do its controls hold?", title_justify="left")
        for c in ("control", "requested", "observed", "mechanism", "holds", "detail"):
            t.add_column(c)
        for r in results:
            mark = {True: "[green]yes[/]", False: "[red]NO[/]", None: "[dim]—[/]"}[r.ok]
            t.add_row(r.control, str(r.requested), str(r.observed), r.mechanism or "—", mark, r.detail)
        out.print(t)
    if any(r.ok is False for r in results):
        raise typer.Exit(1)


def register(profiles_app: typer.Typer) -> None:
    profiles_app.command("list")(profiles_list)
    profiles_app.command("check")(profiles_check)
