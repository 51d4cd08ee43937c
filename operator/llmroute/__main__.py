"""``python -m llmroute`` is the ``llmroute`` command."""

from llmroute.cli import main

raise SystemExit(main())
