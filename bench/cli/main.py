"""The ``heptathlon`` command line. Errors map to exit codes; a traceback shows only with --debug.

The commands live beside this module (run, results, profiles, nightly); this one builds the app,
holds the small ``db`` and ``dashboard`` commands, and turns errors into exit codes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from heptathlon.bench.cli import fleet as _fleet
from heptathlon.bench.cli import nightly as _nightly
from heptathlon.bench.cli import profiles as _profiles
from heptathlon.bench.cli import results as _results
from heptathlon.bench.cli import run as _run
from heptathlon.bench.cli import runs as _runs
from heptathlon.bench.cli.options import Db
from heptathlon.bench.cli.render import err
from heptathlon.bench.errors import HeptathlonError, Interrupted

app = typer.Typer(help="Heptathlon: hardware-aware efficiency benchmarking for ML inference.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
profiles_app = typer.Typer(help="Hardware profiles.", no_args_is_help=True)
db_app = typer.Typer(help="The results database.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
app.add_typer(db_app, name="db")
STATE: dict[str, Any] = {"debug": False}
# Usage errors (a flag value of the wrong type, an unknown option). Typer >= 0.2x vendors click, so
# `click.ClickException` is not their base there; typer.BadParameter derives from the right one.
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    STATE["debug"] = debug


def db_upgrade(db: Db = None) -> None:
    """Apply the Alembic migrations to the database."""
    from heptathlon.db.session import default_url, upgrade

    head = upgrade(db)
    err.print(f"database {db or default_url()} is at revision {head}")


def dashboard(db: Db = None, port: Annotated[int, typer.Option("--port")] = 8501) -> None:
    """Launch the Streamlit web leaderboard."""
    from heptathlon.db.session import default_url

    env = dict(os.environ, HEPTATHLON_DB=db or default_url())
    app_path = Path(str(resources.files("heptathlon.dashboard") / "app.py"))
    raise typer.Exit(subprocess.call([sys.executable, "-m", "streamlit", "run", str(app_path), "--server.port", str(port),
                                      "--server.headless", "true", "--browser.gatherUsageStats", "false"], env=env))


# In the order `--help` has always listed them.
_run.register(app)
_results.register(app)
_profiles.register(profiles_app)
db_app.command("upgrade")(db_upgrade)
_run.register_demo(app)
app.command()(dashboard)
_nightly.register(app)  # `nightly` and `alerts`
_runs.register(app)  # `runs`, `runs show`, `requeue`
_fleet.register(app)  # `worker`, `status` (docs/fleet.md)


def _interrupted(e: Interrupted) -> None:
    """SIGINT/SIGTERM: the line of each run it interrupted (recorded failed), then 130 or 143."""
    for line in e.run_errors:
        err.print(f"[red]error:[/] {line}", soft_wrap=True)
    if not e.run_errors:
        err.print(f"interrupted by {e.signame}")
    sys.exit(e.exit_code)


def main() -> None:
    from heptathlon.bench.app.signals import interruptible, last_interrupt

    try:
        with interruptible():  # SIGINT and SIGTERM raise Interrupted (heptathlon.bench.app.signals)
            rv = app(standalone_mode=False)  # returns the exit code of a typer.Exit in this mode
        if last_interrupt() is not None:  # typer returned 130 for it: say which run it interrupted
            _interrupted(last_interrupt())
        sys.exit(rv if isinstance(rv, int) else 0)
    except Interrupted as e:
        _interrupted(e)
    except HeptathlonError as e:
        if STATE["debug"]:
            raise
        err.print(f"[red]error:[/] {e}", soft_wrap=True)  # one line, however long, for logs and scripts
        sys.exit(e.exit_code)
    except typer.Exit as e:  # typer turns a KeyboardInterrupt (our Interrupted) into Exit(130)
        if isinstance(e.__cause__, Interrupted):
            _interrupted(e.__cause__)
        sys.exit(e.exit_code)
    except typer.Abort as e:  # click turns a KeyboardInterrupt (our Interrupted) into Abort
        cause = e.__cause__ or e.__context__
        if isinstance(cause, Interrupted):
            _interrupted(cause)
        err.print("aborted")
        sys.exit(130)
    except Exception as e:  # click usage errors and the like
        if isinstance(e, _CLICK_EXCEPTION):
            e.show()
            sys.exit(e.exit_code)
        if STATE["debug"]:
            raise
        err.print(f"[red]internal error:[/] {type(e).__name__}: {e} (re-run with --debug for a traceback)")
        sys.exit(70)


if __name__ == "__main__":
    main()
