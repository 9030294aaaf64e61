-- Data for the pass-through HTTP benchmark (bench/run-db.sh, bench/stream-mem.sh).
--
-- Run against the dedicated database `chopin_bench` (run-db.sh creates it if missing):
--
--   psql -v ON_ERROR_STOP=1 -v rows=10000 -d chopin_bench -f bench/passthrough-setup.sql
--
-- `-v tv_type=json` stores the documents of tv_item as `json` (text) instead of `jsonb`: the
-- same JSON, but PostgreSQL then sends the stored text as it is instead of printing `jsonb`.
--
-- * `bench_item`: the relational table the sea-orm endpoint reads (~400 bytes of JSON per row
--   once serialised): scalars, timestamps, a jsonb array of tags and three columns that the API
--   nests into a `warehouse` object.
-- * `tv_item (id, data jsonb)`: the "table view" — one pre-built JSON document per item, in the
--   API's shape (camelCase keys), so the pass-through endpoint only copies bytes.
-- * `bench_item_row(i)` / `bench_item_json(item)`: the deterministic generator of row `i` and the
--   one definition of the API document; tv_item and the streaming endpoint both use them, and
--   the document matches what `ItemView` in examples/bench serialises, field for field.
-- * `blog_author`, `blog_post`, `blog_comment`: a small blog (200 authors, `rows` posts, 1 to 5
--   comments each) for the `blog-*` targets of run-db.sh. Its table view `tv_blog_post` is NOT
--   made here: run-db.sh creates it with Chopin's own `TableView` (`chopin-bench-example
--   create-views`, examples/bench/src/blog.rs), so the benchmark measures the library's
--   documents, triggers and backfill, not hand-written SQL. This script drops it (and its
--   triggers go with the tables).
--
-- Idempotent: everything is dropped and rebuilt.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
\if :{?rows}
\else
  \set rows 10000
\endif
\if :{?tv_type}
\else
  \set tv_type jsonb
\endif

DROP TABLE IF EXISTS tv_blog_post;
DROP TABLE IF EXISTS blog_comment;
DROP TABLE IF EXISTS blog_post;
DROP TABLE IF EXISTS blog_author;
DROP TABLE IF EXISTS tv_item;
DROP FUNCTION IF EXISTS bench_item_json(bench_item);
DROP FUNCTION IF EXISTS bench_item_row(bigint);
DROP TABLE IF EXISTS bench_item;

CREATE TABLE bench_item (
    id                    bigint PRIMARY KEY,
    sku                   text             NOT NULL,
    title                 text             NOT NULL,
    description           text             NOT NULL,
    price_cents           bigint           NOT NULL,
    currency              text             NOT NULL,
    rating                double precision NOT NULL,
    in_stock              boolean          NOT NULL,
    quantity              integer          NOT NULL,
    tags                  jsonb            NOT NULL,
    warehouse_city        text             NOT NULL,
    warehouse_zone        text             NOT NULL,
    warehouse_postal_code text             NOT NULL,
    created_at            timestamptz      NOT NULL,
    updated_at            timestamptz      NOT NULL
);

-- Row `i`, computed (no table access): used to fill bench_item and to stream any number of rows.
-- Strings carry a few characters JSON must escape (quote, backslash, newline) and non-ASCII text.
CREATE FUNCTION bench_item_row(i bigint) RETURNS bench_item
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT ROW(
        i,
        'SKU-' || lpad(i::text, 7, '0'),
        'Knife "Pro" #' || i,
        'Forged steel, 20 cm.' || chr(10) || 'Hand wash only \ no dishwasher. Café-grade — ½ price, batch '
            || (i % 97) || '.',
        1999 + (i * 13) % 50000,
        (ARRAY['EUR', 'USD', 'GBP'])[1 + i % 3],
        ((105 + (i % 40) * 10) / 100.0)::double precision,
        i % 5 <> 0,
        ((i * 7) % 250)::integer,
        jsonb_build_array('kitchen', CASE WHEN i % 2 = 0 THEN 'sale' ELSE 'new' END, 'tag-' || (i % 17)),
        (ARRAY['Lyon', 'Zürich', 'Porto', 'Kraków'])[1 + i % 4],
        'B-' || (i % 9),
        lpad(((i * 37) % 99999)::text, 5, '0'),
        timestamptz '2025-03-01 08:00:00.250+00' + i * interval '7 minutes 13 seconds',
        timestamptz '2025-03-01 08:00:00.250+00' + i * interval '7 minutes 13 seconds'
            + (i % 97) * interval '1 hour 1.5 seconds'
    )::bench_item
$$;

-- The API document of one item. Keep in sync with `ItemView` in examples/bench/src/db.rs
-- (bench/run-db.sh compares the endpoints' JSON before measuring).
CREATE FUNCTION bench_item_json(b bench_item) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'id', b.id,
        'sku', b.sku,
        'title', b.title,
        'description', b.description,
        'priceCents', b.price_cents,
        'currency', b.currency,
        'rating', b.rating,
        'inStock', b.in_stock,
        'quantity', b.quantity,
        'tags', b.tags,
        'warehouse', jsonb_build_object(
            'city', b.warehouse_city,
            'zone', b.warehouse_zone,
            'postalCode', b.warehouse_postal_code
        ),
        'createdAt', to_char(b.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'updatedAt', to_char(b.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
    )
$$;

INSERT INTO bench_item
SELECT (bench_item_row(i)).* FROM generate_series(1, :rows) AS i;

CREATE TABLE tv_item (
    id   bigint PRIMARY KEY,
    data :tv_type NOT NULL
);

INSERT INTO tv_item
SELECT b.id, bench_item_json(b)::text::json FROM bench_item AS b;

VACUUM (ANALYZE) bench_item;
VACUUM (ANALYZE) tv_item;

-- The blog. Timestamps have millisecond precision (the API prints milliseconds); strings carry
-- characters JSON must escape. created_at grows with the id, so "newest first" is id order.
CREATE TABLE blog_author (
    id    bigint PRIMARY KEY,
    name  text NOT NULL,
    email text NOT NULL
);

CREATE TABLE blog_post (
    id         bigint PRIMARY KEY,
    author_id  bigint      NOT NULL REFERENCES blog_author (id),
    title      text        NOT NULL,
    slug       text        NOT NULL,
    body       text        NOT NULL,
    published  boolean     NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
-- What the model path's page query (published, newest first) reads in order.
CREATE INDEX blog_post_created_at_id ON blog_post (created_at, id);
CREATE INDEX blog_post_author_id ON blog_post (author_id);

CREATE TABLE blog_comment (
    id         bigint PRIMARY KEY,
    post_id    bigint      NOT NULL REFERENCES blog_post (id) ON DELETE CASCADE,
    author_id  bigint      NOT NULL REFERENCES blog_author (id),
    body       text        NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX blog_comment_post_id ON blog_comment (post_id);

INSERT INTO blog_author
SELECT a,
       (ARRAY['Ada', 'Zoë', 'Jürgen', 'Kōji', 'María'])[1 + a % 5] || ' "Writer" ' || a,
       'author' || a || '@example.com'
FROM generate_series(1, 200) AS a;

INSERT INTO blog_post
SELECT i,
       1 + (i * 7) % 200,
       'Post #' || i || ': on "pass-through" — part ' || (i % 13),
       'post-' || i,
       repeat('Lorem ipsum dolor sit amet, consectetur adipiscing elit. ', 3 + i % 3)
           || chr(10) || 'Café ½ \ end of post ' || i || '.',
       i % 10 <> 0,
       timestamptz '2025-01-01 09:00:00.125+00' + i * interval '17 minutes 3 seconds',
       timestamptz '2025-01-01 09:00:00.125+00' + i * interval '17 minutes 3 seconds'
           + (i % 29) * interval '1 hour 0.5 seconds'
FROM generate_series(1, :rows) AS i;

INSERT INTO blog_comment
SELECT (p - 1) * 5 + k,
       p,
       1 + (p + k) % 200,
       'Comment ' || k || ' on post ' || p || ': "nice" \ merci',
       timestamptz '2025-01-01 09:00:00.125+00' + p * interval '17 minutes 3 seconds' + k * interval '1 minute'
FROM generate_series(1, :rows) AS p, generate_series(1, 5) AS k
WHERE k <= 1 + p % 5;

VACUUM (ANALYZE) blog_author;
VACUUM (ANALYZE) blog_post;
VACUUM (ANALYZE) blog_comment;

SELECT count(*) AS bench_item_rows,
       round(avg(octet_length(bench_item_json(b)::text))) AS avg_jsonb_text_bytes
FROM bench_item AS b;
