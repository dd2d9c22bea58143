"""``python -m gatewayasgi ...`` runs the CLI."""

from gatewayasgi.cli import main

raise SystemExit(main())
