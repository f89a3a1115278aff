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
    from farmhand.cli.main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
