from services.workbench.main import cli

raise SystemExit(cli())
