"""Run the soak: ``python -m soak`` (``SOAK_ORDERS=40`` for the short one)."""

from soak.run import main

raise SystemExit(main())
