#!/usr/bin/env bash
# What keeping the blog's `tv_post` table view fresh costs its writes, on PostgreSQL.
#
#   bash bench/tv-writes.sh            # 5 interleaved rounds of 5-second pgbench runs
#   ROUNDS=3 DURATION=10 CLIENTS=2 bash bench/tv-writes.sh
#
# For each freshness variant of `TableView` (the SQL printed by `blog table-view-sql postgres
# <variant>`, i.e. exactly what the migration runs), a fresh schema shaped like the blog's
# (`posts`, `comments`; SEED posts with 3 comments each) is loaded, then pgbench runs the
# blog's three writes for DURATION seconds each with CLIENTS clients:
#
#   post-insert     INSERT INTO posts …                           (POST /api/posts)
#   post-update     UPDATE posts SET title, body, updated_at …    (PUT /api/posts/{id})
#   comment-insert  INSERT INTO comments …                        (POST /api/posts/{id}/comments)
#
# Variants: `none` (no table view: the baseline), `statement` (statement-level triggers with
# transition tables), `row` (row-level triggers, the default), `write-path` (no trigger; the
# write and `SELECT tv_post_refresh(ARRAY[id])` in one transaction, as the app's helper
# `TableView::refresh` does). Rounds are interleaved (every variant once per round) and the
# report gives the median writes/s per variant and its ratio to `none` of the same run.
# Report: bench/results/tv-writes.md (BENCH_RESULTS in smoke mode).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init tv-writes.sh
bench_pg_env
# Notices (triggers that do not exist yet, dropped "if exists") are noise here.
export PGOPTIONS="${PGOPTIONS:--c client_min_messages=warning}"
bench_require psql pgbench
INVOCATION="$(bench_invocation bench/tv-writes.sh ROUNDS DURATION CLIENTS SEED VARIANTS)"
# Smoke mode (bench/smoke.sh): one round of 1-second runs (bench_init) over a small seed.
[[ "$BENCH_SMOKE" != 1 ]] || : "${SEED:=1000}"
: "${ROUNDS:=5}" "${DURATION:=5}" "${CLIENTS:=2}" "${SEED:=10000}"
for v in ROUNDS DURATION CLIENTS SEED; do bench_check_int "$v" "${!v}"; done
DB="${TV_WRITES_DB:-chopin_tv_writes}"
OUT="$(bench_out bench/results/tv-writes.md)"
bench_raw_dir tv-writes
# VARIANTS may also name `row-unlocked`: `row` without the refresh's per-document lock (the
# lock's own cost; that SQL is unsafe under concurrent writers of one document).
VARIANTS="${VARIANTS:-none statement row write-path}"
WORKLOADS="post-insert post-update comment-insert"

bench_pg_ready || die "cannot connect to PostgreSQL as $PGUSER@$PGHOST:$PGPORT"
log "building the blog (dev profile: only its table-view-sql command is used)"
cargo build -q -p blog
BLOG="$ROOT/target/debug/blog"
for v in statement row write-path; do
    "$BLOG" table-view-sql postgres "$v" >"$RAW/tv-$v.sql"
done
# The refresh function's lock block (from `IF locked` to its `END IF;`) removed.
sed '/^  IF locked >= 0 AND/,/^  END IF;$/d' "$RAW/tv-row.sql" >"$RAW/tv-row-unlocked.sql"
grep -q 'pg_advisory_xact_lock' "$RAW/tv-row-unlocked.sql" && die "row-unlocked still locks"

# The blog's tables on PostgreSQL (migrations 000001-000003), with SEED posts.
cat >"$RAW/schema.sql" <<SQL
DROP TABLE IF EXISTS tv_post, comments, posts, chopin_table_views CASCADE;
DROP FUNCTION IF EXISTS tv_post_refresh(bigint[]), tv_post_on_posts(), tv_post_on_comments();
CREATE TABLE posts (
    id bigserial PRIMARY KEY, title varchar(200) NOT NULL, slug varchar(100) NOT NULL UNIQUE,
    body text NOT NULL, published boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, author_id bigint);
CREATE INDEX idx_posts_created_at ON posts (created_at);
CREATE INDEX idx_posts_author_id ON posts (author_id);
CREATE TABLE comments (
    id bigserial PRIMARY KEY,
    post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE ON UPDATE CASCADE,
    author varchar(100) NOT NULL, body text NOT NULL, created_at timestamptz NOT NULL);
CREATE INDEX idx_comments_post_id ON comments (post_id);
INSERT INTO posts (title, slug, body, published, created_at, updated_at, author_id)
SELECT 'Post ' || i, 'seed-' || i, repeat('Body text of a blog post. ', 8), i % 4 <> 0,
       now() - i * interval '1 minute', now() - i * interval '1 minute', 1 + i % 50
FROM generate_series(1, $SEED) AS i;
INSERT INTO comments (post_id, author, body, created_at)
SELECT 1 + i % $SEED, 'Reader', 'A comment of modest length.', now()
FROM generate_series(1, 3 * $SEED) AS i;
ANALYZE;
SQL

# pgbench scripts: the write alone, or with the write-path refresh in the same transaction.
write_script() { # <workload> <with refresh: 0|1>
    local refresh="$2"
    case "$1" in
        post-insert)
            echo "INSERT INTO posts (title, slug, body, published, created_at, updated_at, author_id) VALUES ('New post', 'p-' || :client_id || '-' || md5(random()::text), repeat('Body text of a blog post. ', 8), true, now(), now(), 1) RETURNING id AS id"
            ;;
        post-update)
            echo "\\set id random(1, $SEED)"
            echo "UPDATE posts SET title = 'Edited ' || :id, body = repeat('Edited text. ', 16), updated_at = now() WHERE id = :id"
            ;;
        comment-insert)
            echo "\\set id random(1, $SEED)"
            echo "INSERT INTO comments (post_id, author, body, created_at) VALUES (:id, 'Reader', 'Another comment.', now())"
            ;;
    esac | {
        if [[ "$refresh" == 1 ]]; then
            echo "BEGIN;"
            # `RETURNING id AS id` then \gset makes the new post's id :id.
            sed -e 's/ RETURNING id AS id$/ RETURNING id AS id \\gset/' -e '/^\\set/!s/$/;/' -e 's/\\gset;$/\\gset/'
            echo "SELECT tv_post_refresh(ARRAY[:id]::bigint[]);"
            echo "COMMIT;"
        else
            sed -e 's/ RETURNING id AS id$//' -e '/^\\set/!s/$/;/'
        fi
    }
}

tps() { sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$1" | head -1; }

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$DB\"" >/dev/null
psql -X -q -d postgres -c "CREATE DATABASE \"$DB\"" >/dev/null
declare -A RESULTS=()
for round in $(seq 1 "$ROUNDS"); do
    for v in $VARIANTS; do
        for w in $WORKLOADS; do
            psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$RAW/schema.sql" >/dev/null 2>&1
            if [[ "$v" != none ]]; then
                psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$RAW/tv-$v.sql" >/dev/null
            fi
            script="$RAW/$w-$v.sql"
            write_script "$w" "$([[ "$v" == write-path ]] && echo 1 || echo 0)" >"$script"
            log "round $round: $v / $w"
            pgbench -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION" -f "$script" "$DB" \
                >"$RAW/$w-$v-$round.txt" 2>&1 || die "pgbench failed: $(tail -5 "$RAW/$w-$v-$round.txt")"
            RESULTS["$v/$w"]+="$(tps "$RAW/$w-$v-$round.txt") "
        done
    done
done
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$DB\"" >/dev/null

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
{
    echo "# Table view maintenance: write cost"
    echo
    echo "Generated by \`$INVOCATION\` on $(date -u +%Y-%m-%d), $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(psql -X -At -d postgres -c 'SHOW server_version' | cut -d' ' -f1) PostgreSQL."
    echo "pgbench, $CLIENTS clients, ${DURATION}s per run, $ROUNDS interleaved rounds; $SEED posts with 3 comments each."
    echo "Median writes/s (transactions/s), and the ratio to \`none\` (no table view) of the same run."
    echo
    echo "| variant | post-insert | post-update | comment-insert |"
    echo "|---|---:|---:|---:|"
    for v in $VARIANTS; do
        row="| \`$v\` |"
        for w in $WORKLOADS; do
            m="$(echo "${RESULTS[$v/$w]}" | median)"
            base="$(echo "${RESULTS[none/$w]}" | median)"
            row+=" $(printf '%.0f' "$m") ($(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.2f", a / b}')×) |"
        done
        echo "$row"
    done
    echo
    echo "Every run's figures: $(for k in "${!RESULTS[@]}"; do echo -n "\`$k\`: ${RESULTS[$k]}; "; done)"
} >"$OUT"
cat "$OUT"
