from shared.service import cli
from services.disputes.main import definition

raise SystemExit(cli(definition))
