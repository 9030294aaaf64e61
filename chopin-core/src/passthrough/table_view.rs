//! Table views: pre-built JSON documents, kept fresh by the database.
//!
//! A table view (`tv_<name>`) stores one JSON document per row of a source table, built by
//! the same SQL a [`JsonProjection`] derives, next to the columns its reads filter and sort
//! on. Reads become an index scan and a copy of stored bytes; writes pay for rebuilding the
//! documents they touch.
//!
//! [`TableView`] declares one and generates, per backend, everything it needs (the table, its
//! indexes, the refresh function, the triggers on the source tables, and its row in the
//! `chopin_table_views` registry that `chopin db rebuild-views` reads); `create` runs it from
//! a migration in one call:
//!
//! ```
//! use chopin_core::passthrough::{JsonProjection, KeyType, TableView};
//!
//! #[derive(JsonProjection, serde::Serialize)]
//! #[serde(rename_all = "camelCase")]
//! struct PostView {
//!     id: i64,
//!     title: String,
//!     #[projection(sql = "(SELECT count(*) FROM comments c WHERE c.post_id = posts.id)")]
//!     comment_count: i64,
//! }
//!
//! let view = TableView::of::<PostView>("tv_post", "posts")
//!     .key("created_at", KeyType::TimestampTz)
//!     .index(["created_at", "id"])
//!     .depends_on("comments", "post_id");
//! let ddl = view.create_sql(sea_orm::DbBackend::Postgres).unwrap();
//! assert!(ddl[0].starts_with(r#"CREATE TABLE IF NOT EXISTS "tv_post" ("id" bigint PRIMARY KEY"#));
//! // In a sea-orm migration: `view.create(manager.get_connection()).await?`
//! ```
//!
//! `docs/passthrough.md` explains the choices (json storage, row-level triggers) and what
//! they cost.

use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, Statement, TransactionSession, TransactionTrait, Value,
};

use super::JsonProjection;

/// The registry table `create` writes and `chopin db rebuild-views` reads.
pub const REGISTRY_TABLE: &str = "chopin_table_views";

/// On PostgreSQL, the number of documents of one table view a transaction refreshes under
/// one lock each; past it, the refresh locks the whole table view (its writers, not its
/// readers) until commit, so that bulk writes do not fill the server's lock table.
pub const LOCK_ESCALATION: usize = 64;

/// PostgreSQL's longest identifier (`NAMEDATALEN - 1`), in bytes.
const MAX_IDENTIFIER: usize = 63;

/// The SQL type of a key column copied from the source table into the table view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `bigint` (PostgreSQL), `INTEGER` (SQLite).
    BigInt,
    /// `integer` (PostgreSQL), `INTEGER` (SQLite).
    Integer,
    /// `text` / `TEXT`.
    Text,
    /// `boolean` / `BOOLEAN` (numeric affinity: SQLite keeps the 0/1 the driver wrote).
    Boolean,
    /// `timestamptz` / `TEXT` (sea-orm stores SQLite timestamps as text).
    TimestampTz,
    /// `timestamp` / `TEXT`.
    Timestamp,
    /// `double precision` / `REAL`.
    Double,
}

impl KeyType {
    fn sql(self, backend: Backend) -> &'static str {
        match (self, backend) {
            (KeyType::BigInt, Backend::Postgres) => "bigint",
            (KeyType::Integer, Backend::Postgres) => "integer",
            (KeyType::BigInt | KeyType::Integer, Backend::Sqlite) => "INTEGER",
            (KeyType::Text, Backend::Postgres) => "text",
            (KeyType::Boolean, Backend::Postgres) => "boolean",
            (KeyType::Boolean, Backend::Sqlite) => "BOOLEAN",
            (KeyType::TimestampTz, Backend::Postgres) => "timestamptz",
            (KeyType::Timestamp, Backend::Postgres) => "timestamp",
            (KeyType::Text | KeyType::TimestampTz | KeyType::Timestamp, Backend::Sqlite) => "TEXT",
            (KeyType::Double, Backend::Postgres) => "double precision",
            (KeyType::Double, Backend::Sqlite) => "REAL",
        }
    }
}

/// How the `data` column stores documents (PostgreSQL; SQLite always stores text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// `json`: the text as the projection printed it, sent as it is (the default: reads pay
    /// no conversion, and the bytes equal serde's).
    #[default]
    Json,
    /// `jsonb`: PostgreSQL's binary form, for containment queries and GIN indexes; every read
    /// prints it again (keys reordered, `": "` spacing).
    Jsonb,
}

/// How the documents are kept fresh when the source tables change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Freshness {
    /// Row-level triggers on both backends (one refresh per changed row). The default:
    /// nothing, not even a `psql` session, can forget a refresh, and for the single-row writes
    /// of an API it cost the least of the trigger forms (`bench/tv-writes.sh`).
    #[default]
    RowTriggers,
    /// Statement-level triggers with transition tables on PostgreSQL (one refresh per
    /// statement, whatever the number of rows: for bulk writes); row-level triggers on
    /// SQLite, which has no others.
    StatementTriggers,
    /// No triggers: the application calls [`TableView::refresh`] in the transaction of every
    /// write. Writes from elsewhere leave stale documents until `chopin db rebuild-views`.
    WritePath,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    fn of(backend: DbBackend) -> Result<Backend, DbErr> {
        match backend {
            DbBackend::Postgres => Ok(Backend::Postgres),
            DbBackend::Sqlite => Ok(Backend::Sqlite),
            _ => Err(DbErr::Custom(
                "table views support PostgreSQL and SQLite".into(),
            )),
        }
    }

    fn param(self, n: usize) -> String {
        match self {
            Backend::Postgres => format!("${n}"),
            Backend::Sqlite => format!("?{n}"),
        }
    }
}

/// A table of pre-built JSON documents (`tv_<name>`), one per row of a source table, kept
/// fresh by the database. See the [module documentation](self).
///
/// The table has the source's integer id (`bigint` primary key), the declared
/// [keys](Self::key) copied from the source row (for `WHERE` and `ORDER BY`), and `data`, the
/// document. All generated SQL is deterministic: the same declaration gives the same text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableView {
    name: String,
    source: String,
    alias: Option<String>,
    id: String,
    keys: Vec<(String, KeyType)>,
    indexes: Vec<Vec<String>>,
    dependents: Vec<(String, String)>,
    storage: Storage,
    freshness: Freshness,
    postgres_doc: String,
    sqlite_doc: String,
}

impl TableView {
    /// A table view `name` of `source`'s rows, whose documents are `V`'s projection
    /// ([`JsonProjection::POSTGRES_JSON`], [`JsonProjection::SQLITE`]), evaluated with
    /// `source` in scope under its own name (or [`alias`](Self::alias)).
    pub fn of<V: JsonProjection>(name: &str, source: &str) -> TableView {
        TableView::with_documents(name, source, V::POSTGRES_JSON, V::SQLITE)
    }

    /// Like [`of`](Self::of), with the document expressions written by hand (PostgreSQL: of
    /// type `json` or `jsonb`; SQLite: a JSON function's result).
    pub fn with_documents(name: &str, source: &str, postgres: &str, sqlite: &str) -> TableView {
        TableView {
            name: name.into(),
            source: source.into(),
            alias: None,
            id: "id".into(),
            keys: Vec::new(),
            indexes: Vec::new(),
            dependents: Vec::new(),
            storage: Storage::default(),
            freshness: Freshness::default(),
            postgres_doc: postgres.into(),
            sqlite_doc: sqlite.into(),
        }
    }

    /// Refer to the source table as `alias` (`FROM posts AS p`), as a projection declared
    /// with `#[projection(table = "p")]` expects.
    pub fn alias(mut self, alias: &str) -> TableView {
        self.alias = Some(alias.into());
        self
    }

    /// The source's integer primary key column (default `id`); the table view's primary key
    /// has the same name.
    pub fn id_column(mut self, column: &str) -> TableView {
        self.id = column.into();
        self
    }

    /// Copy source column `column` into the table view, to filter or sort on.
    pub fn key(mut self, column: &str, ty: KeyType) -> TableView {
        self.keys.push((column.into(), ty));
        self
    }

    /// An index over these columns of the table view (the id or keys), named
    /// `<name>_<col>_<col>`. A B-tree serves both directions: `["created_at", "id"]` serves
    /// `ORDER BY created_at DESC, id DESC`.
    pub fn index<I, S>(mut self, columns: I) -> TableView
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.indexes
            .push(columns.into_iter().map(Into::into).collect());
        self
    }

    /// The documents also depend on `table`, whose `column` holds the source id (a comment's
    /// `post_id`): its writes refresh the documents they point at, before and after.
    pub fn depends_on(mut self, table: &str, column: &str) -> TableView {
        self.dependents.push((table.into(), column.into()));
        self
    }

    /// How `data` is stored on PostgreSQL (default [`Storage::Json`]).
    pub fn storage(mut self, storage: Storage) -> TableView {
        self.storage = storage;
        self
    }

    /// How the documents are kept fresh (default [`Freshness::RowTriggers`]).
    pub fn freshness(mut self, freshness: Freshness) -> TableView {
        self.freshness = freshness;
        self
    }

    /// The table view's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> Result<(), DbErr> {
        let mut names = vec![&self.name, &self.source, &self.id];
        names.extend(self.alias.iter());
        names.extend(self.keys.iter().map(|(k, _)| k));
        names.extend(self.indexes.iter().flatten());
        for (table, column) in &self.dependents {
            names.push(table);
            names.push(column);
        }
        for name in names {
            let mut chars = name.chars();
            let plain = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.len() <= 40;
            if !plain {
                return Err(DbErr::Custom(format!(
                    "table view {:?}: {name:?} is not a plain SQL identifier \
                     (ASCII letters, digits, `_`, at most 40 bytes)",
                    self.name
                )));
            }
        }
        let columns: Vec<&String> = self.keys.iter().map(|(k, _)| k).collect();
        if columns.iter().any(|k| **k == self.id || *k == "data") {
            return Err(DbErr::Custom(format!(
                "table view {:?}: a key may not be named like the id or `data`",
                self.name
            )));
        }
        for index in &self.indexes {
            if index.is_empty() || index.iter().any(|c| *c != self.id && !columns.contains(&c)) {
                return Err(DbErr::Custom(format!(
                    "table view {:?}: index {index:?} must list the id or declared keys",
                    self.name
                )));
            }
        }
        // PostgreSQL truncates longer identifiers to 63 bytes, silently: two composed names
        // could become one.
        let mut composed = vec![format!("{}_refresh", self.name)];
        for (table, _) in self.watched() {
            for suffix in ["", "_ins", "_upd", "_del"] {
                composed.push(self.trigger_name(table, suffix));
            }
        }
        composed.extend(self.indexes.iter().map(|index| self.index_name(index)));
        if let Some(long) = composed.iter().find(|name| name.len() > MAX_IDENTIFIER) {
            return Err(DbErr::Custom(format!(
                "table view {:?}: the generated name {long:?} is longer than PostgreSQL's \
                 {MAX_IDENTIFIER} bytes (it would be truncated); shorten the view, table or \
                 column names",
                self.name
            )));
        }
        Ok(())
    }

    /// `<name>_<col>_<col>`: the name of an index over `columns`.
    fn index_name(&self, columns: &[String]) -> String {
        format!("{}_{}", self.name, columns.join("_"))
    }

    /// `"posts"` or `"p"`: how the source is named in the generated statements.
    fn src(&self) -> String {
        q(self.alias.as_deref().unwrap_or(&self.source))
    }

    fn source_clause(&self) -> String {
        match &self.alias {
            Some(alias) => format!("{} AS {}", q(&self.source), q(alias)),
            None => q(&self.source),
        }
    }

    fn refresh_function(&self) -> String {
        q(&format!("{}_refresh", self.name))
    }

    /// The upsert of the documents of the source rows matching `predicate` (about `src`).
    fn upsert(&self, backend: Backend, predicate: &str) -> String {
        let src = self.src();
        let mut columns = vec![q(&self.id)];
        columns.extend(self.keys.iter().map(|(k, _)| q(k)));
        let mut values: Vec<String> = columns.iter().map(|c| format!("{src}.{c}")).collect();
        let doc = match (backend, self.storage) {
            (Backend::Postgres, Storage::Json) => self.postgres_doc.clone(),
            (Backend::Postgres, Storage::Jsonb) => format!("({})::jsonb", self.postgres_doc),
            (Backend::Sqlite, _) => self.sqlite_doc.clone(),
        };
        values.push(doc);
        let updates: Vec<String> = columns[1..]
            .iter()
            .chain(std::iter::once(&q("data")))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        columns.push(q("data"));
        format!(
            "INSERT INTO {tv} ({columns}) SELECT {values} FROM {from} WHERE {predicate} \
             ON CONFLICT ({id}) DO UPDATE SET {updates}",
            tv = q(&self.name),
            columns = columns.join(", "),
            values = values.join(", "),
            from = self.source_clause(),
            id = q(&self.id),
            updates = updates.join(", "),
        )
    }

    /// Deletes the documents, among those whose id matches `predicate` (about the table
    /// view), whose source row is gone.
    fn prune(&self, predicate: &str) -> String {
        let (tv, id) = (q(&self.name), q(&self.id));
        let condition = if predicate.is_empty() {
            String::new()
        } else {
            format!("{predicate} AND ")
        };
        format!(
            "DELETE FROM {tv} WHERE {condition}NOT EXISTS \
             (SELECT 1 FROM {source} WHERE {source}.{id} = {tv}.{id})",
            source = q(&self.source),
        )
    }

    /// The statements that refresh the documents whose ids `ids` (an SQL expression: a list
    /// for SQLite's `IN (…)`, an array for PostgreSQL's `= ANY(…)`) names.
    fn refresh_statements(&self, backend: Backend, ids: &str) -> [String; 2] {
        let (tv, id, src) = (q(&self.name), q(&self.id), self.src());
        match backend {
            Backend::Postgres => [
                self.prune(&format!("{tv}.{id} = ANY({ids})")),
                self.upsert(backend, &format!("{src}.{id} = ANY({ids})")),
            ],
            Backend::Sqlite => [
                self.prune(&format!("{tv}.{id} IN ({ids})")),
                self.upsert(backend, &format!("{src}.{id} IN ({ids})")),
            ],
        }
    }

    /// Every table whose writes refresh documents, with the column naming the source id.
    fn watched(&self) -> Vec<(&str, &str)> {
        let mut watched = vec![(self.source.as_str(), self.id.as_str())];
        watched.extend(
            self.dependents
                .iter()
                .map(|(t, c)| (t.as_str(), c.as_str())),
        );
        watched
    }

    fn trigger_name(&self, table: &str, suffix: &str) -> String {
        format!("{}_on_{table}{suffix}", self.name)
    }

    /// The statements that create the table view, its indexes, its refresh function
    /// (PostgreSQL), the triggers of its [`Freshness`], its registry row, and fill it from
    /// the existing rows. Idempotent (`IF NOT EXISTS`, `OR REPLACE`, triggers dropped first).
    pub fn create_sql(&self, backend: DbBackend) -> Result<Vec<String>, DbErr> {
        self.check()?;
        let backend = Backend::of(backend)?;
        let (tv, id) = (q(&self.name), q(&self.id));
        let mut out = Vec::new();
        let mut columns = vec![format!("{id} {} PRIMARY KEY", KeyType::BigInt.sql(backend))];
        columns.extend(
            self.keys
                .iter()
                .map(|(k, ty)| format!("{} {}", q(k), ty.sql(backend))),
        );
        let data = match (backend, self.storage) {
            (Backend::Postgres, Storage::Json) => "json",
            (Backend::Postgres, Storage::Jsonb) => "jsonb",
            (Backend::Sqlite, _) => "TEXT",
        };
        columns.push(format!("\"data\" {data} NOT NULL"));
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {tv} ({})",
            columns.join(", ")
        ));
        for index in &self.indexes {
            let name = self.index_name(index);
            let cols: Vec<String> = index.iter().map(|c| q(c)).collect();
            out.push(format!(
                "CREATE INDEX IF NOT EXISTS {} ON {tv} ({})",
                q(&name),
                cols.join(", ")
            ));
        }
        out.extend(self.drop_triggers(backend));
        match backend {
            Backend::Postgres => {
                // Its result type changed (void, then the two counts): `OR REPLACE` cannot.
                out.push(format!(
                    "DROP FUNCTION IF EXISTS {}(bigint[])",
                    self.refresh_function()
                ));
                out.push(self.postgres_refresh_function());
                out.extend(self.postgres_triggers());
            }
            Backend::Sqlite => out.extend(self.sqlite_triggers()),
        }
        out.push(self.upsert(backend, "true"));
        out.push(registry_sql());
        out.push(format!(
            "INSERT INTO {REGISTRY_TABLE} (name, source, batch_end_sql, refresh_sql, prune_sql) \
             VALUES ({}, {}, {}, {}, {}) ON CONFLICT (name) DO UPDATE SET \
             source = excluded.source, batch_end_sql = excluded.batch_end_sql, \
             refresh_sql = excluded.refresh_sql, prune_sql = excluded.prune_sql",
            lit(&self.name),
            lit(&self.source),
            lit(&self.batch_end_sql(backend)),
            lit(&self.range_refresh_sql(backend)),
            lit(&self.rebuild_prune_sql(backend)),
        ));
        Ok(out)
    }

    /// `SELECT max(id)` of the next batch: parameters `after` (exclusive) and the batch size;
    /// `NULL` when no row follows.
    fn batch_end_sql(&self, backend: Backend) -> String {
        let id = q(&self.id);
        format!(
            "SELECT CAST(max(b.{id}) AS BIGINT) FROM (SELECT {id} FROM {source} WHERE {id} > {p1} \
             ORDER BY {id} LIMIT {p2}) AS b",
            source = q(&self.source),
            p1 = backend.param(1),
            p2 = backend.param(2),
        )
    }

    /// The refresh of the documents of ids in `(after, last]` (parameters 1 and 2): on
    /// PostgreSQL a call of the refresh function (which locks them first), returning the
    /// number of documents written; on SQLite (one writer at a time) the upsert.
    fn range_refresh_sql(&self, backend: Backend) -> String {
        let (src, id) = (self.src(), q(&self.id));
        match backend {
            Backend::Postgres => format!(
                "SELECT written FROM {f}(ARRAY(SELECT CAST({id} AS BIGINT) FROM {source} \
                 WHERE {id} > $1 AND {id} <= $2 ORDER BY {id}))",
                f = self.refresh_function(),
                source = q(&self.source),
            ),
            Backend::Sqlite => self.upsert(
                backend,
                &format!(
                    "{src}.{id} > {} AND {src}.{id} <= {}",
                    backend.param(1),
                    backend.param(2)
                ),
            ),
        }
    }

    /// The deletion of every document whose source row is gone: on PostgreSQL a call of the
    /// refresh function on their ids (which locks them first, and writes the document again
    /// if the row came back meanwhile), returning the number deleted; on SQLite the delete.
    fn rebuild_prune_sql(&self, backend: Backend) -> String {
        let (tv, id) = (q(&self.name), q(&self.id));
        match backend {
            Backend::Postgres => format!(
                "SELECT pruned FROM {f}(ARRAY(SELECT {tv}.{id} FROM {tv} WHERE NOT EXISTS \
                 (SELECT 1 FROM {source} WHERE {source}.{id} = {tv}.{id}) ORDER BY {tv}.{id}))",
                f = self.refresh_function(),
                source = q(&self.source),
            ),
            Backend::Sqlite => self.prune(""),
        }
    }

    /// The PostgreSQL refresh function: `(ids bigint[], OUT written bigint, OUT pruned
    /// bigint)`.
    ///
    /// Its first statement serializes the refreshes of each document: a transaction-level
    /// advisory lock per id (key `(hashtext(<name>), id mod 2^31-1)`: the two-int form, a key
    /// space apart from the one-bigint keys of [`Db::migration_lock`]), taken in ascending
    /// order, held to commit. Past [`LOCK_ESCALATION`] documents in one transaction it takes
    /// the whole table view instead (`SHARE ROW EXCLUSIVE`: reads go on, other refreshes
    /// wait; every refresh holds `ROW EXCLUSIVE` from its first statement). The statements
    /// that build the documents come after, each with a snapshot taken after the wait, so
    /// they see what the writer they waited for committed: without the lock, under READ
    /// COMMITTED, `INSERT … SELECT <doc> … ON CONFLICT DO UPDATE` built the document from a
    /// snapshot taken before it blocked on the other writer's row, then wrote that stale
    /// document over the other's.
    ///
    /// `SET search_path FROM CURRENT`: the unqualified names resolve as they did when the
    /// migration created the function, whatever the writer's `search_path`.
    ///
    /// [`Db::migration_lock`]: crate::db::Db::migration_lock
    fn postgres_refresh_function(&self) -> String {
        let [prune, upsert] = self.refresh_statements(Backend::Postgres, "$1");
        let (tv, name) = (q(&self.name), lit(&self.name));
        let setting = lit(&format!("chopin_tv.{}", self.name));
        // PL/pgSQL, not SQL: a session keeps the plans of its statements from one call to
        // the next (a SQL function's body is planned again on every call, which cost about a
        // third of the write throughput: bench/tv-writes.sh). Each statement of a volatile
        // PL/pgSQL function takes its own snapshot under READ COMMITTED.
        format!(
            "CREATE OR REPLACE FUNCTION {f}(bigint[], OUT written bigint, OUT pruned bigint) \
             LANGUAGE plpgsql SET search_path FROM CURRENT AS $chopin$\n\
             DECLARE\n  \
             locked integer := coalesce(nullif(current_setting({setting}, true), ''), '0')::integer;\n\
             BEGIN\n  \
             IF locked >= 0 AND locked + cardinality($1) > {LOCK_ESCALATION} THEN\n    \
             LOCK TABLE {tv} IN SHARE ROW EXCLUSIVE MODE;\n    \
             PERFORM set_config({setting}, '-1', true);\n  \
             ELSIF locked >= 0 THEN\n    \
             LOCK TABLE {tv} IN ROW EXCLUSIVE MODE;\n    \
             PERFORM pg_advisory_xact_lock(hashtext({name}), k) FROM (SELECT DISTINCT \
             (i % 2147483647)::integer AS k FROM unnest($1) AS i WHERE i IS NOT NULL \
             ORDER BY k) AS s;\n    \
             PERFORM set_config({setting}, (locked + cardinality($1))::text, true);\n  \
             END IF;\n  \
             {prune};\n  \
             GET DIAGNOSTICS pruned = ROW_COUNT;\n  \
             {upsert};\n  \
             GET DIAGNOSTICS written = ROW_COUNT;\n\
             END\n$chopin$",
            f = self.refresh_function(),
        )
    }

    fn postgres_triggers(&self) -> Vec<String> {
        let refresh = self.refresh_function();
        let mut out = Vec::new();
        for (table, column) in self.watched() {
            let function = q(&self.trigger_name(table, ""));
            let c = q(column);
            match self.freshness {
                Freshness::WritePath => {}
                Freshness::RowTriggers => {
                    out.push(format!(
                        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger \
                         LANGUAGE plpgsql SET search_path FROM CURRENT AS $chopin$\nBEGIN\n  \
                         IF TG_OP = 'INSERT' THEN PERFORM {refresh}(ARRAY[NEW.{c}]);\n  \
                         ELSIF TG_OP = 'DELETE' THEN PERFORM {refresh}(ARRAY[OLD.{c}]);\n  \
                         ELSIF NEW.{c} IS DISTINCT FROM OLD.{c} THEN \
                         PERFORM {refresh}(ARRAY[OLD.{c}, NEW.{c}]);\n  \
                         ELSE PERFORM {refresh}(ARRAY[NEW.{c}]);\n  \
                         END IF;\n  RETURN NULL;\nEND\n$chopin$"
                    ));
                    out.push(format!(
                        "CREATE TRIGGER {function} AFTER INSERT OR UPDATE OR DELETE ON {} \
                         FOR EACH ROW EXECUTE FUNCTION {function}()",
                        q(table)
                    ));
                }
                Freshness::StatementTriggers => {
                    out.push(format!(
                        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger \
                         LANGUAGE plpgsql SET search_path FROM CURRENT AS $chopin$\nBEGIN\n  \
                         IF TG_OP = 'INSERT' THEN \
                         PERFORM {refresh}(ARRAY(SELECT DISTINCT {c} FROM chopin_new));\n  \
                         ELSIF TG_OP = 'DELETE' THEN \
                         PERFORM {refresh}(ARRAY(SELECT DISTINCT {c} FROM chopin_old));\n  \
                         ELSE PERFORM {refresh}(ARRAY(SELECT {c} FROM chopin_old \
                         UNION SELECT {c} FROM chopin_new));\n  \
                         END IF;\n  RETURN NULL;\nEND\n$chopin$"
                    ));
                    for (suffix, event, referencing) in [
                        ("_ins", "INSERT", "NEW TABLE AS chopin_new"),
                        (
                            "_upd",
                            "UPDATE",
                            "OLD TABLE AS chopin_old NEW TABLE AS chopin_new",
                        ),
                        ("_del", "DELETE", "OLD TABLE AS chopin_old"),
                    ] {
                        out.push(format!(
                            "CREATE TRIGGER {} AFTER {event} ON {} REFERENCING {referencing} \
                             FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
                            q(&self.trigger_name(table, suffix)),
                            q(table)
                        ));
                    }
                }
            }
        }
        out
    }

    fn sqlite_triggers(&self) -> Vec<String> {
        if self.freshness == Freshness::WritePath {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (n, (table, column)) in self.watched().into_iter().enumerate() {
            let c = q(column);
            for (suffix, event, ids) in [
                ("_ins", "INSERT", format!("NEW.{c}")),
                ("_upd", "UPDATE", format!("OLD.{c}, NEW.{c}")),
                ("_del", "DELETE", format!("OLD.{c}")),
            ] {
                let [prune, upsert] = self.refresh_statements(Backend::Sqlite, &ids);
                // Only what the event can change: an insert into the source adds a document, a
                // delete removes one; a dependent's writes change documents of rows that exist
                // (or that a cascade already removed).
                let body = match (n, event) {
                    (0, "INSERT") => upsert,
                    (0, "DELETE") => prune,
                    (0, _) => format!("{prune};\n{upsert}"),
                    _ => upsert,
                };
                out.push(format!(
                    "CREATE TRIGGER {} AFTER {event} ON {} BEGIN\n{body};\nEND",
                    q(&self.trigger_name(table, suffix)),
                    q(table)
                ));
            }
        }
        out
    }

    /// Every trigger name any [`Freshness`] may have created, dropped (so switching the
    /// freshness, or creating again, starts clean).
    fn drop_triggers(&self, backend: Backend) -> Vec<String> {
        let mut out = Vec::new();
        for (table, _) in self.watched() {
            for suffix in ["", "_ins", "_upd", "_del"] {
                if backend == Backend::Sqlite && suffix.is_empty() {
                    continue;
                }
                let trigger = q(&self.trigger_name(table, suffix));
                out.push(match backend {
                    Backend::Postgres => {
                        format!("DROP TRIGGER IF EXISTS {trigger} ON {}", q(table))
                    }
                    Backend::Sqlite => format!("DROP TRIGGER IF EXISTS {trigger}"),
                });
            }
        }
        out
    }

    /// The statements that remove the table view: triggers, functions, the table, and its
    /// registry row.
    pub fn drop_sql(&self, backend: DbBackend) -> Result<Vec<String>, DbErr> {
        self.check()?;
        let backend = Backend::of(backend)?;
        let mut out = self.drop_triggers(backend);
        if backend == Backend::Postgres {
            for (table, _) in self.watched() {
                out.push(format!(
                    "DROP FUNCTION IF EXISTS {}()",
                    q(&self.trigger_name(table, ""))
                ));
            }
            out.push(format!(
                "DROP FUNCTION IF EXISTS {}(bigint[])",
                self.refresh_function()
            ));
        }
        out.push(format!("DROP TABLE IF EXISTS {}", q(&self.name)));
        out.push(registry_sql());
        out.push(format!(
            "DELETE FROM {REGISTRY_TABLE} WHERE name = {}",
            lit(&self.name)
        ));
        Ok(out)
    }

    /// Run [`create_sql`](Self::create_sql) on `conn` (a migration's
    /// `manager.get_connection()`, a transaction, a `Db`), as one batch on one connection
    /// (on PostgreSQL one implicit transaction: all or nothing).
    pub async fn create<C: ConnectionTrait>(&self, conn: &C) -> Result<(), DbErr> {
        let statements = self.create_sql(conn.get_database_backend())?;
        conn.execute_unprepared(&statements.join(";\n")).await?;
        Ok(())
    }

    /// Run [`drop_sql`](Self::drop_sql) on `conn`, as one batch.
    pub async fn drop<C: ConnectionTrait>(&self, conn: &C) -> Result<(), DbErr> {
        let statements = self.drop_sql(conn.get_database_backend())?;
        conn.execute_unprepared(&statements.join(";\n")).await?;
        Ok(())
    }

    /// Rebuild (or delete) the document of source row `id` now. With
    /// [`Freshness::WritePath`], call it inside the transaction of every write that may change
    /// the document; with triggers it is never needed. On PostgreSQL it locks the document
    /// until the transaction ends (see `docs/passthrough.md`, "Concurrent writers").
    pub async fn refresh<C: ConnectionTrait>(&self, conn: &C, id: i64) -> Result<(), DbErr> {
        self.check()?;
        let backend = Backend::of(conn.get_database_backend())?;
        let db = conn.get_database_backend();
        let statements = match backend {
            Backend::Postgres => vec![format!(
                "SELECT {}(ARRAY[$1::bigint])",
                self.refresh_function()
            )],
            Backend::Sqlite => self.refresh_statements(backend, "?1").to_vec(),
        };
        for sql in statements {
            conn.execute_raw(Statement::from_sql_and_values(db, sql, [id.into()]))
                .await?;
        }
        Ok(())
    }
}

/// `CREATE TABLE IF NOT EXISTS chopin_table_views (…)`.
fn registry_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {REGISTRY_TABLE} (name TEXT PRIMARY KEY, source TEXT NOT NULL, \
         batch_end_sql TEXT NOT NULL, refresh_sql TEXT NOT NULL, prune_sql TEXT NOT NULL)"
    )
}

/// A double-quoted identifier (checked plain by [`TableView::check`]).
fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted SQL string literal.
fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// What [`rebuild_table_views`] did to one table view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The table view's name.
    pub name: String,
    /// Documents written (inserted or replaced).
    pub documents: u64,
    /// Documents deleted because their source row is gone.
    pub pruned: u64,
    /// Batches (one transaction each).
    pub batches: u64,
}

/// Rebuild every table view listed in the `chopin_table_views` registry (or only `only`), in
/// batches of `batch` source ids, each in its own transaction, after deleting documents whose
/// source row is gone. What `chopin db rebuild-views` runs: it needs no application code,
/// since [`TableView::create`] stored each view's statements in the registry.
///
/// Safe on a live database: on PostgreSQL each batch and the pruning go through the view's
/// refresh function, which locks the documents it rebuilds (the whole table view for a batch
/// larger than [`LOCK_ESCALATION`]) before building them, so a concurrent writer's change is
/// never overwritten by a document built without it.
///
/// Errors: no registry table (no view was ever created), an unknown `only`, or a database
/// error (the batches already committed stay).
pub async fn rebuild_table_views<C>(
    conn: &C,
    batch: u64,
    only: Option<&str>,
) -> Result<Vec<Rebuilt>, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let db = conn.get_database_backend();
    Backend::of(db)?;
    let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    let rows = conn
        .query_all_raw(Statement::from_string(
            db,
            format!(
                "SELECT name, batch_end_sql, refresh_sql, prune_sql FROM {REGISTRY_TABLE} \
                 ORDER BY name"
            ),
        ))
        .await
        .map_err(|err| {
            DbErr::Custom(format!(
                "cannot read the table view registry {REGISTRY_TABLE} \
                 (no table view was created in this database?): {err}"
            ))
        })?;
    let mut out = Vec::new();
    for row in rows {
        let name: String = row.try_get_by_index(0)?;
        if only.is_some_and(|only| only != name) {
            continue;
        }
        let batch_end: String = row.try_get_by_index(1)?;
        let refresh: String = row.try_get_by_index(2)?;
        let prune: String = row.try_get_by_index(3)?;
        let pruned = run_counted(conn, &prune, Vec::new()).await?;
        let mut done = Rebuilt {
            name,
            documents: 0,
            pruned,
            batches: 0,
        };
        let mut after = i64::MIN;
        loop {
            let values: [Value; 2] = [after.into(), batch.into()];
            let end: Option<i64> = conn
                .query_one_raw(Statement::from_sql_and_values(db, &batch_end, values))
                .await?
                .map(|row| row.try_get_by_index::<Option<i64>>(0))
                .transpose()?
                .flatten();
            let Some(end) = end else { break };
            let txn = conn.begin().await?;
            let written = run_counted(&txn, &refresh, vec![after.into(), end.into()]).await?;
            txn.commit().await?;
            done.documents += written;
            done.batches += 1;
            after = end;
        }
        out.push(done);
    }
    if let Some(only) = only
        && out.is_empty()
    {
        return Err(DbErr::Custom(format!(
            "no table view {only:?} in {REGISTRY_TABLE}"
        )));
    }
    Ok(out)
}

/// Run one of the registry's statements: on PostgreSQL a `SELECT` of a count (the refresh
/// function's), on SQLite a write whose affected rows are the count.
async fn run_counted<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: Vec<Value>,
) -> Result<u64, DbErr> {
    let db = conn.get_database_backend();
    let statement = Statement::from_sql_and_values(db, sql, values);
    if db == DbBackend::Postgres {
        let count: Option<i64> = conn
            .query_one_raw(statement)
            .await?
            .map(|row| row.try_get_by_index::<Option<i64>>(0))
            .transpose()?
            .flatten();
        Ok(count.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    } else {
        Ok(conn.execute_raw(statement).await?.rows_affected())
    }
}
