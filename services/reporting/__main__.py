from shared.service import cli
from services.reporting.main import definition

raise SystemExit(cli(definition))
