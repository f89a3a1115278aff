"""`python -m farmhand.agent` is the `farmhand` command."""

import sys

from farmhand.agent.cli import main

sys.exit(main())
