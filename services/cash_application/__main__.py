from shared.service import cli
from services.cash_application.main import definition

raise SystemExit(cli(definition))
