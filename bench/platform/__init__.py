"""make bench-platform: the whole platform under load (five services as processes, PostgreSQL,
Kafka), each figure of issue 9 beside its raw ceiling, measured in one run. See __main__.py."""
