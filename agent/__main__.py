"""`python -m farmhand`, and the `farmhand` console script: the command line.

Before the CLI is imported, an agent that was handed its token in the environment or on its
command line starts itself again without it (`credentials.hide_and_reexec`): that costs one
interpreter start, not a second import of everything.
"""

import sys


def main() -> int:
    """Entry point of the `farmhand` console script."""
    argv = sys.argv[1:]
    if argv[:1] == ["agent"]:
        from farmhand.client import credentials

        credentials.hide_and_reexec(argv)
    _skip_httpx_command_line()
    from farmhand.cli.main import main as cli_main

    return cli_main(argv)


def _skip_httpx_command_line() -> None:
    """Keep httpx from importing its own command line in this process.

    httpx's `__init__` imports `httpx._main` (the `httpx` command), which loads click, rich
    and pygments when they are installed (the server extra brings them): some 30 ms of an
    agent's start, for code the `farmhand` command never runs. A `None` in `sys.modules`
    makes that import fail, and httpx then defines a stub `httpx.main` in its place.
    """
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
