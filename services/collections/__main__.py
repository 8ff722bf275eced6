from shared.service import cli
from services.collections.main import definition

raise SystemExit(cli(definition))
