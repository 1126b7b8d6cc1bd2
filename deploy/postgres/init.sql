-- PostgreSQL initialisation for docker-compose.yml (run once, on an empty data volume, by the
-- postgres image's entrypoint as the superuser, connected to POSTGRES_DB = crm).
--
-- One role per service, each owning the schema named after its service. `crm-migrate` runs once per
-- service as that service's role, so the role owns its tables too: it can create and swap tables at
-- run time (customer360's rebuild) and no service can read or change another's tables
-- (ARCHITECTURE.md, guarantee 1). The passwords are DEVELOPMENT ONLY; docker-compose.yml uses the same
-- ones. On Kubernetes the roles and passwords come from the database operator (deploy/README.md).
--
-- Adding a service: copy one block below (role, schema, grant) and its migrate line in
-- docker-compose.yml.

DO $$
BEGIN
    IF current_database() <> 'crm' THEN
        RAISE EXCEPTION 'init.sql expects to run in database crm, not %', current_database();
    END IF;
END
$$;

-- Nobody but the owner and the roles below may connect to the platform's database.
REVOKE ALL ON DATABASE crm FROM PUBLIC;

-- customer: customers, contacts, consent, credit rating, grading (event store + relay cursor)
CREATE ROLE customer LOGIN PASSWORD 'customer-dev';
CREATE SCHEMA customer AUTHORIZATION customer;

-- customer360: the 360 view read model, its tracking and rebuild tables
CREATE ROLE customer360 LOGIN PASSWORD 'customer360-dev';
CREATE SCHEMA customer360 AUTHORIZATION customer360;

-- gateway: idempotency keys
CREATE ROLE gateway LOGIN PASSWORD 'gateway-dev';
CREATE SCHEMA gateway AUTHORIZATION gateway;

-- CONNECT to use the database; CREATE because `crm-migrate` runs `CREATE SCHEMA IF NOT EXISTS` for its
-- schema, and PostgreSQL checks that privilege before it sees that the schema exists.
GRANT CONNECT, CREATE ON DATABASE crm TO customer, customer360, gateway;
