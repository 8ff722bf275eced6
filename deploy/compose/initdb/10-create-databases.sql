-- Run once by the official postgres image, on the first start of an empty data volume
-- (/docker-entrypoint-initdb.d), as POSTGRES_USER (ledgerline) connected to POSTGRES_DB.
-- One database per bounded context: each context owns its event store and read models.
CREATE DATABASE ledgerline_invoicing OWNER ledgerline;
CREATE DATABASE ledgerline_cash_application OWNER ledgerline;
CREATE DATABASE ledgerline_collections OWNER ledgerline;
CREATE DATABASE ledgerline_disputes OWNER ledgerline;
CREATE DATABASE ledgerline_reporting OWNER ledgerline;
-- The workbench's users and sessions (no business data).
CREATE DATABASE ledgerline_workbench OWNER ledgerline;
