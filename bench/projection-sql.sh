#!/usr/bin/env bash
# PostgreSQL CPU per row of the SQL shapes a query-time JSON projection can take.
#
# Each variant runs `COPY (<query>) TO '/dev/null' (FORMAT binary)`: the server evaluates the
# projection and runs the binary send functions a driver would receive, without network or
# client cost. CPU is the backend's own on-CPU time (/proc/<pid>/schedstat, nanoseconds) around
# the executions, so other load on the machine does not inflate it. Variants are interleaved in
# every round (rotated order); the report shows the median over rounds of ns per row.
#
# Usage: bench/projection-sql.sh [ROUNDS]   (env: PGHOST PGPORT PGUSER PGDATABASE, OUT=file)
# Needs: psql, a superuser (COPY ... TO a server file), the server on this machine (schedstat).
set -euo pipefail
ROUNDS=${1:-7}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres} PGDATABASE=${PGDATABASE:-test}
OUT=${OUT:-$(dirname "$0")/results/projection-sql.md}
SCHEMA="pt_projection_bench_$$"
WORK=$(mktemp -d)
cleanup() { psql -qX -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

psql -qX -v ON_ERROR_STOP=1 <<SQL
CREATE SCHEMA $SCHEMA;
SET search_path = $SCHEMA;
CREATE TABLE posts (id bigint PRIMARY KEY, title text NOT NULL, slug text NOT NULL, body text NOT NULL,
  published boolean NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
  author_id bigint);
INSERT INTO posts
SELECT i, 'Post number ' || i || ' about "Rust" – ünïcode', 'post-' || i,
       repeat('Body text line with some words. ', 6) || E'\n' || i, i % 3 <> 0,
       timestamptz '2025-01-01 00:00:00+00' + i * interval '1.123457 seconds',
       timestamptz '2025-01-01 00:00:00+00' + i * interval '2 seconds',
       CASE WHEN i % 5 = 0 THEN NULL ELSE i % 97 END
FROM generate_series(1, 100000) i;
VACUUM ANALYZE posts;
SQL

# The blog's timestamp format (RFC 3339, UTC, milliseconds): to_char, and a to_char-free
# text form (truncate to ms, add 1 µs so that PostgreSQL prints all six digits, cut, patch).
tochar() { echo "to_char(p.$1 AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"; }
textts() { echo "replace(left((date_trunc('milliseconds', p.$1 AT TIME ZONE 'UTC') + interval '1 microsecond')::text, 23), ' ', 'T') || 'Z'"; }
# chrono's default serde form (`SecondsFormat::AutoSi`: 0, 3 or 6 fractional digits), from the
# text PostgreSQL prints (trailing zeros trimmed) padded back, or from to_char pieces.
autosi_text() { local t="(p.$1 AT TIME ZONE 'UTC')::text"; echo "replace(rpad($t, CASE WHEN length($t) > 23 THEN 26 WHEN length($t) > 19 THEN 23 ELSE 19 END, '0'), ' ', 'T') || 'Z'"; }
autosi_tochar() { local u="date_part('microseconds', p.$1)::int % 1000000"; echo "to_char(p.$1 AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN $u = 0 THEN '' WHEN $u % 1000 = 0 THEN to_char(p.$1, '.MS') ELSE to_char(p.$1, '.US') END || 'Z'"; }
post_pairs() { # $1 = timestamp formatter
  echo "'id', p.id, 'title', p.title, 'slug', p.slug, 'body', p.body, 'published', p.published, 'createdAt', $($1 created_at), 'updatedAt', $($1 updated_at), 'authorId', p.author_id"
}
post_cols() {
  echo "p.id AS \"id\", p.title AS \"title\", p.slug AS \"slug\", p.body AS \"body\", p.published AS \"published\", $($1 created_at) AS \"createdAt\", $($1 updated_at) AS \"updatedAt\", p.author_id AS \"authorId\""
}
NARROW_PAIRS="'id', p.id, 'authorId', p.author_id, 'published', p.published, 'slug', p.slug"
NARROW_COLS='p.id AS "id", p.author_id AS "authorId", p.published AS "published", p.slug AS "slug"'
TAIL='ORDER BY p.id LIMIT :n'

declare -A Q
Q[post.columns]="SELECT p.id, p.title, p.slug, p.body, p.published, p.created_at, p.updated_at, p.author_id FROM posts p $TAIL"
Q[post.json_build_object]="SELECT json_build_object($(post_pairs tochar)) FROM posts p $TAIL"
Q[post.jsonb_build_object]="SELECT jsonb_build_object($(post_pairs tochar)) FROM posts p $TAIL"
Q[post.row_to_json_subselect]="SELECT (SELECT row_to_json(j) FROM (SELECT $(post_cols tochar)) j) FROM posts p $TAIL"
Q[post.row_to_json_lateral]="SELECT row_to_json(j) FROM posts p CROSS JOIN LATERAL (SELECT $(post_cols tochar)) j $TAIL"
Q[post.to_jsonb_subselect]="SELECT (SELECT to_jsonb(j) FROM (SELECT $(post_cols tochar)) j) FROM posts p $TAIL"
Q[post.row_to_json_subselect_text_ts]="SELECT (SELECT row_to_json(j) FROM (SELECT $(post_cols textts)) j) FROM posts p $TAIL"
Q[narrow.columns]="SELECT p.id, p.author_id, p.published, p.slug FROM posts p $TAIL"
Q[narrow.json_build_object]="SELECT json_build_object($NARROW_PAIRS) FROM posts p $TAIL"
Q[narrow.row_to_json_subselect]="SELECT (SELECT row_to_json(j) FROM (SELECT $NARROW_COLS) j) FROM posts p $TAIL"
Q[narrow.row_to_json_lateral]="SELECT row_to_json(j) FROM posts p CROSS JOIN LATERAL (SELECT $NARROW_COLS) j $TAIL"
for f in tochar textts autosi_text autosi_tochar; do
  Q[ts.$f]="SELECT row_to_json(j) FROM posts p CROSS JOIN LATERAL (SELECT p.id AS \"id\", $($f created_at) AS \"createdAt\") j $TAIL"
done
Q[ts.columns]="SELECT p.id, p.created_at FROM posts p $TAIL"
Q[ts.raw_timestamptz]="SELECT row_to_json(j) FROM posts p CROSS JOIN LATERAL (SELECT p.id AS \"id\", p.created_at AS \"createdAt\") j $TAIL"
VARIANTS=(ts.columns ts.raw_timestamptz ts.tochar ts.textts ts.autosi_text ts.autosi_tochar post.columns post.json_build_object post.jsonb_build_object post.row_to_json_subselect
  post.row_to_json_lateral post.to_jsonb_subselect post.row_to_json_subselect_text_ts
  narrow.columns narrow.json_build_object narrow.row_to_json_subselect narrow.row_to_json_lateral)

# Variants that claim the same bytes must produce them (md5 over all 100,000 rows).
same_bytes() {
  local first="" v sum
  for v in "$@"; do
    sum=$(psql -qXAt -v ON_ERROR_STOP=1 -v n=100000 <<SQL
SET search_path = $SCHEMA;
SELECT md5(string_agg(x::text, E'\n')) FROM (${Q[$v]}) AS r(x);
SQL
)
    if [[ -z $first ]]; then first=$sum; elif [[ $sum != "$first" ]]; then
      echo "projection-sql: $v prints other bytes than $1" >&2; exit 1
    fi
  done
  CHECKED+=("$*")
}
CHECKED=()
same_bytes post.row_to_json_subselect post.row_to_json_lateral post.row_to_json_subselect_text_ts
same_bytes narrow.row_to_json_subselect narrow.row_to_json_lateral
same_bytes ts.tochar ts.textts
same_bytes ts.autosi_text ts.autosi_tochar

# One psql session: rows=1000 repeated 30 times, rows=100000 once, per variant per round.
SCRIPT="$WORK/run.sql"
{
  echo "SET search_path = $SCHEMA;"
  echo "SELECT pg_backend_pid() AS pid \\gset"
  echo "\\setenv BENCH_PID :pid"
  echo "\\o /dev/null"
  # Warm-up: every variant once.
  for v in "${VARIANTS[@]}"; do echo "\\set n 1000"; echo "COPY (${Q[$v]}) TO '/dev/null' (FORMAT binary);"; done
  nv=${#VARIANTS[@]}
  for ((r = 0; r < ROUNDS; r++)); do
    for ((k = 0; k < nv; k++)); do
      v=${VARIANTS[$(((k + r) % nv))]}
      for spec in "1000 30" "100000 1"; do
        set -- $spec
        echo "\\set n $1"
        echo "\\! echo \"$r $v $1 $2 begin \$(cut -d' ' -f1 /proc/\$BENCH_PID/schedstat)\" >> $WORK/raw"
        for ((i = 0; i < $2; i++)); do echo "COPY (${Q[$v]}) TO '/dev/null' (FORMAT binary);"; done
        echo "\\! echo \"$r $v $1 $2 end \$(cut -d' ' -f1 /proc/\$BENCH_PID/schedstat)\" >> $WORK/raw"
      done
    done
  done
} >"$SCRIPT"
psql -qX -v ON_ERROR_STOP=1 -f "$SCRIPT"

# ns per row: (end - begin) / (rows * repeats); median over rounds.
awk '$5 == "begin" { b[$1 " " $2 " " $3] = $6 }
     $5 == "end"   { k = $1 " " $2 " " $3; printf "%s %s %.1f\n", $2, $3, ($6 - b[k]) / ($3 * $4) }' \
  "$WORK/raw" | sort -k1,1 -k2,2n -k3,3n >"$WORK/per_round"
awk '{ k = $1 " " $2; v[k] = v[k] " " $3; c[k]++ }
     END { for (k in v) { n = split(substr(v[k], 2), a, " "); m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2;
           printf "%s %.0f %.0f %.0f\n", k, m, a[1], a[n] } }' "$WORK/per_round" | sort >"$WORK/medians"

{
  echo "# Query-time JSON projections: PostgreSQL CPU per row"
  echo
  echo "Generated by \`bench/projection-sql.sh $ROUNDS\` on $(date -u +%Y-%m-%d) — $(psql -XAtc 'SHOW server_version'),"
  echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg))."
  echo
  echo "Backend CPU time (\`/proc/<pid>/schedstat\`) per row for \`COPY (<query>) TO '/dev/null' (FORMAT binary)\`"
  echo "over \`ORDER BY id LIMIT n\` of a 100,000-row table; median of $ROUNDS interleaved rounds (min–max)."
  echo "1,000 rows: 30 executions per round; 100,000 rows: one. *vs json_build_object* is the ratio"
  echo "to the same shape's \`json_build_object\` (lower is cheaper); *vs columns* to sending the plain columns"
  echo "(what the sea-orm path asks PostgreSQL for)."
  echo
  echo "| shape | variant | ns/row @1,000 | ns/row @100,000 | vs json_build_object @1,000 | vs columns @1,000 |"
  echo "|---|---|---|---|---|---|"
  awk '{ split($1, s, "."); key = s[1]; var = s[2]; med[$1 " " $2] = $3; rng[$1 " " $2] = $4 "–" $5; seen[$1] = 1 }
       END { for (v in seen) { split(v, s, "."); base = med[s[1] ".json_build_object 1000"]; col = med[s[1] ".columns 1000"];
               vs = base > 0 ? sprintf("%.2f", med[v " 1000"] / base) : "–";
               printf "| %s | %s | %d (%s) | %d (%s) | %s | %.2f |\n", s[1], s[2], med[v " 1000"], rng[v " 1000"],
                 med[v " 100000"], rng[v " 100000"], vs, med[v " 1000"] / col } }' "$WORK/medians" | sort
  echo
  echo "Checked to print the same bytes over all 100,000 rows (md5) before measuring:"
  for c in "${CHECKED[@]}"; do echo "- ${c// / = }"; done
  echo
  echo "Variants (\`p\` is the posts table; \`post\` timestamps in the blog's format, RFC 3339 UTC milliseconds;"
  echo "\`ts\` compares timestamp formatters alone, inside the lateral \`row_to_json\`):"
  echo
  for v in "${VARIANTS[@]}"; do echo "- \`$v\`: \`${Q[$v]}\`"; done
} >"$OUT"
cat "$OUT"
