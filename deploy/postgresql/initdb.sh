#!/bin/sh
# Run once by the official postgres image when it creates the cluster (mounted
# into /docker-entrypoint-initdb.d/ by deploy/compose.yaml), as the postgres OS
# user over the local socket (pg_hba.conf: peer):
# - include goldenhour.conf from the cluster's postgresql.conf (in force from
#   the server's real start, right after this script);
# - create the hub's role, not a superuser, owning the hub's database, with the
#   password from GOLDENHOUR_DB_PASSWORD.
# pg_hba.conf comes in through `-c hba_file=` on the server's command line.
set -eu
echo "include '/etc/goldenhour/postgresql/goldenhour.conf'" >> "$PGDATA/postgresql.conf"
psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres \
     --set "password=${GOLDENHOUR_DB_PASSWORD:?set GOLDENHOUR_DB_PASSWORD}" <<'SQL'
CREATE ROLE goldenhour LOGIN PASSWORD :'password';
CREATE DATABASE goldenhour OWNER goldenhour;
SQL
