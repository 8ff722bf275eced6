from shared.service import cli
from services.invoicing.main import definition

raise SystemExit(cli(definition))
