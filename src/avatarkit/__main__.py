"""``python -m avatarkit``: the same as the ``avatarkit`` command."""

from avatarkit.cli import main

raise SystemExit(main())
