"""``python -m vsgroups.sim``: the same as ``vsgroups sim``."""

import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
