"""shared.db.positional: SQLAlchemy-style `:name` parameters turned into asyncpg's `$n`, for
execute_many. A cast (`::type`), a repeated name and names with digits or underscores are the
cases that could go wrong."""
from shared.db import positional


def test_names_are_numbered_in_order_of_first_use_and_a_repeated_name_keeps_its_number():
    sql, names = positional("INSERT INTO t (a, b, c) VALUES (:p, :amt_2, :p) ON CONFLICT DO NOTHING")
    assert sql == "INSERT INTO t (a, b, c) VALUES ($1, $2, $1) ON CONFLICT DO NOTHING"
    assert names == ("p", "amt_2")


def test_casts_are_not_parameters():
    sql, names = positional("SELECT CAST(:s AS jsonb), x::text, :v::int, y::numeric(12,2)")
    assert sql == "SELECT CAST($1 AS jsonb), x::text, $2::int, y::numeric(12,2)"
    assert names == ("s", "v")
