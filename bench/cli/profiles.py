"""``profiles list`` and ``profiles check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from heptathlon.bench.cli.options import Json
from heptathlon.bench.cli.render import err, out, progress


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

    from heptathlon.db.session import default_url, home_dir

    prof = validate_runtime_sections(load_profile(name))
    url = default_url()
    escape = {"db_path": Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None,
              "store_dir": home_dir() / "artifacts", "hide": [str(home_dir())]}
    with progress() as prog:
        prog.add_task(f"probing {name}", total=None)
        results = check_profile(prof, spin_s=spin_s, escape=escape)
    if as_json:
        print(json.dumps([asdict(r) for r in results], default=str))
    else:
        t = Table(title=f"profile {name}: do its controls hold?", title_justify="left")
        for c in ("control", "requested", "observed", "mechanism", "holds", "detail"):
            t.add_column(c)
        for r in results:
            mark = {True: "[green]yes[/]", False: "[red]NO[/]", None: "[dim]—[/]"}[r.ok]
            observed = r.observed if r.control != "sandbox.escape" else r.detail.split(";")[0]
            t.add_row(r.control, str(r.requested), str(observed), r.mechanism or "—", mark, r.detail)
        out.print(t)
        _print_escape(next((r for r in results if r.control == "sandbox.escape"), None))
    if any(r.ok is False for r in results):
        raise typer.Exit(1)


def _print_escape(r) -> None:
    """The escape probe, attempt by attempt; anything that got through is printed loudly."""
    if r is None or not isinstance(r.observed, list):
        return
    t = Table(title=f"escape probe ({r.mechanism or 'no sandbox'}): each attempt must be blocked", title_justify="left")
    for c in ("attempt", "target", "blocked", "detail"):
        t.add_column(c)
    for a in r.observed:
        t.add_row(a["attempt"], a["target"], "[green]blocked[/]" if a["blocked"] else "[red bold]GOT THROUGH[/]",
                  a["detail"])
    out.print(t)
    through = [a for a in r.observed if not a["blocked"]]
    if through and r.ok is False:
        err.print(f"[red bold]escape probe: {len(through)} attempt(s) got through the sandbox[/]")
    elif through:
        err.print(f"[yellow]escape probe: no sandbox here, {len(through)} attempt(s) got through; "
                  "code-carrying kinds are refused on this machine (apt-get install bubblewrap)[/]")


def register(profiles_app: typer.Typer) -> None:
    profiles_app.command("list")(profiles_list)
    profiles_app.command("check")(profiles_check)
