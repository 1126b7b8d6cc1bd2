-- PostgreSQL initialisation for docker-compose.yml (run once, on an empty data volume, by the
-- postgres image's entrypoint as the superuser, connected to POSTGRES_DB = crm).
--
-- One role per service, each owning the schema named after its service. `crm-migrate` runs once per
-- service as that service's role, so the role owns its tables too: it can create and swap tables at
-- run time (customer360's rebuild) and no service can read or change another's tables
-- (ARCHITECTURE.md, guarantee 1). The passwords are DEVELOPMENT ONLY; docker-compose.yml uses the same
-- ones. On Kubernetes the roles and passwords come from the database operator (deploy/README.md).
--
-- No role is granted anything on another's schema: a service reaches another's data only through its
-- events and its RPC. Write a role or schema name that is an SQL reserved word quoted ("order").
--
-- Adding a service: copy one block below (role, schema), add the role to the GRANT at the end, and
-- add its migrate line in docker-compose.yml.

DO $$
BEGIN
    IF current_database() <> 'crm' THEN
        RAISE EXCEPTION 'init.sql expects to run in database crm, not %', current_database();
    END IF;
END
$$;

-- Nobody but the owner and the roles below may connect to the platform's database.
REVOKE ALL ON DATABASE crm FROM PUBLIC;

-- customer: customers, contacts, consent, credit, grading (event store + relay cursor, policy tracking)
CREATE ROLE customer LOGIN PASSWORD 'customer-dev';
CREATE SCHEMA customer AUTHORIZATION customer;

-- marketing: campaigns with their results, leads (event store + relay cursor, policy tracking)
CREATE ROLE marketing LOGIN PASSWORD 'marketing-dev';
CREATE SCHEMA marketing AUTHORIZATION marketing;

-- sales: opportunities, quotes, pipeline and forecast (event store + relay cursor, policy tracking)
CREATE ROLE sales LOGIN PASSWORD 'sales-dev';
CREATE SCHEMA sales AUTHORIZATION sales;

-- order: orders placed to paid, cancelled, returned (event store + relay cursor, policy tracking).
-- ORDER is a reserved word in SQL: the role and the schema are always written quoted.
CREATE ROLE "order" LOGIN PASSWORD 'order-dev';
CREATE SCHEMA "order" AUTHORIZATION "order";

-- service: after-sales cases, SLAs, complaints, surveys, FAQ (event store + relay cursor, policy tracking)
CREATE ROLE service LOGIN PASSWORD 'service-dev';
CREATE SCHEMA service AUTHORIZATION service;

-- loyalty: points, tiers, benefits (event store + relay cursor, policy tracking)
CREATE ROLE loyalty LOGIN PASSWORD 'loyalty-dev';
CREATE SCHEMA loyalty AUTHORIZATION loyalty;

-- customer360: the 360 view read model, its tracking and rebuild tables
CREATE ROLE customer360 LOGIN PASSWORD 'customer360-dev';
CREATE SCHEMA customer360 AUTHORIZATION customer360;

-- gateway: idempotency keys
CREATE ROLE gateway LOGIN PASSWORD 'gateway-dev';
CREATE SCHEMA gateway AUTHORIZATION gateway;

-- CONNECT to use the database; CREATE because `crm-migrate` runs `CREATE SCHEMA IF NOT EXISTS` for its
-- schema, and PostgreSQL checks that privilege before it sees that the schema exists.
GRANT CONNECT, CREATE ON DATABASE crm
    TO customer, marketing, sales, "order", service, loyalty, customer360, gateway;
