# A stand-in for the official postgres image where no registry answers: Debian bookworm's
# postgresql-15 on the local minbase, with the same interface docker-compose.yml uses
# (POSTGRES_USER/PASSWORD/DB, /docker-entrypoint-initdb.d, /var/lib/postgresql/data, pg_isready).
ARG BASE_IMAGE=ledgerline-local/debian:bookworm-minbase-v2
FROM ${BASE_IMAGE}

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && mkdir -p /docker-entrypoint-initdb.d /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql

ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
