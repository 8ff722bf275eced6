"""shared.service: what a service started of its own is stopped with it (ServiceDefinition.on_stop)."""
from shared.service import ServiceDefinition, build_app
from shared.settings import ServiceSettings


async def test_every_stop_hook_runs_in_order_when_the_service_stops_even_after_one_fails() -> None:
    ran: list[str] = []

    async def first() -> None:
        ran.append("first")
        raise RuntimeError("its process was gone already")

    async def second() -> None:
        ran.append("second")

    settings = ServiceSettings(database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none",
                               role="api", migrate_on_start=False, allow_open=True)
    app = build_app(ServiceDefinition(context="hooks", title="hooks", settings=settings,
                                      migrations_package="shared.migrations", on_stop=[first, second]),
                    freeze_heap=False)
    async with app.router.lifespan_context(app):
        assert ran == []
    assert ran == ["first", "second"]
