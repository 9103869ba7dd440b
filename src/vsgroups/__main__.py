"""``python -m vsgroups``: the same as the ``vsgroups`` command."""

from .cli import main

raise SystemExit(main())
