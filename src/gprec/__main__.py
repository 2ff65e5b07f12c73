"""`python -m gprec ...`: the `gprec` command. torchrun starts it the same way in each of its
processes: `torchrun --nproc_per_node N -m gprec train ...` (docs/distributed.md)."""

import sys

from gprec.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
