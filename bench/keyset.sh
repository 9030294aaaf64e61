#!/usr/bin/env bash
# Keyset (cursor) vs offset pagination: page 1 and page 1,000 of a 100,000-row table, 100 rows a
# page, through `CursorPagination` / `Pagination`, sea-orm and the response body. Prints the
# medians and the ratios (see chopin-core/benches/keyset.rs).
#
#   bash bench/keyset.sh            # PostgreSQL: CHOPIN_TEST_POSTGRES_URL or postgres://postgres@127.0.0.1:5432/test
#   bash bench/keyset.sh sqlite     # a SQLite file in a temporary directory
#
# PROFILE picks the cargo profile (default `bench`, i.e. release; `PROFILE=dev` builds in seconds
# from a test build and is fine for PostgreSQL, where the server does the work).
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-postgres}"
profile="${PROFILE:-bench}"
cargo bench -p chopin-web-core --profile "$profile" --bench keyset \
  --features postgres,sqlite,testing -- "$backend"
