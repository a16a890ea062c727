//! The text of a batched statement, built once per batch size.
//!
//! A batch's statement differs from the last batch of its size only in its values. Building it
//! with sea-query each time (every column name quoted again, the expression tree cloned and
//! walked) cost 2.4 % of an SSO flow's server CPU in a profile of 2026-12-07, a third of what
//! the batch workers cost on the request side. So each hot statement keeps its text per backend
//! and batch size, built by sea-orm the first time, and later batches bind their values to it.

use std::sync::OnceLock;

use sea_orm::{ActiveModelTrait, ActiveValue, DbBackend, EntityTrait, Iterable, Statement, Value};

use crate::batch::MAX_BATCH;

/// The texts of one statement kind, by backend (PostgreSQL, SQLite) and batch size.
pub(crate) struct StatementCache {
    /// Each text with the shape it was built for (see [`StatementCache::statement`]).
    texts: [[OnceLock<(u64, String)>; MAX_BATCH]; 2],
}

impl StatementCache {
    pub(crate) const fn new() -> Self {
        Self { texts: [const { [const { OnceLock::new() }; MAX_BATCH] }; 2] }
    }

    /// The statement for a batch of `size` queries on `backend`. `build` makes it with sea-orm
    /// (the first batch of its size, a size beyond the cache, another backend, a batch whose
    /// `shape` differs from the one the kept text was built for: which columns an insert sets);
    /// `values` lists the batch's values in the order `build` binds them (checked in debug
    /// builds whenever a text is built).
    pub(crate) fn statement(
        &self,
        backend: DbBackend,
        size: usize,
        shape: u64,
        build: impl FnOnce() -> Statement,
        values: impl FnOnce() -> Vec<Value>,
    ) -> Statement {
        let by_size = match backend {
            DbBackend::Postgres => &self.texts[0],
            DbBackend::Sqlite => &self.texts[1],
            _ => return build(),
        };
        let Some(text) = size.checked_sub(1).and_then(|index| by_size.get(index)) else {
            return build();
        };
        match text.get() {
            Some((kept, sql)) if *kept == shape => {
                return Statement::from_sql_and_values(backend, sql.clone(), values());
            }
            Some(_) => return build(),
            None => {}
        }
        let built = build();
        debug_assert_eq!(
            built.values.as_ref().map(|v| v.0.clone()).unwrap_or_default(),
            values(),
            "the cached statement's values must come in the order sea-orm binds them"
        );
        let _ = text.set((shape, built.sql.clone()));
        built
    }
}

/// The values of a multi-row insert of `rows`, in the order sea-orm binds them (row by row, each
/// in its entity's column order, a column not set left out, as sea-orm leaves it out of the
/// statement), and the statement's shape: which columns are set. `None` when the rows differ in
/// that, or the entity has more than 64 columns.
pub(crate) fn insert_values<A: ActiveModelTrait>(rows: &[A]) -> Option<(u64, Vec<Value>)> {
    let columns = <A::Entity as EntityTrait>::Column::iter().count();
    if columns > 64 {
        return None;
    }
    let mut shape = None;
    let mut values = Vec::with_capacity(rows.len() * columns);
    for row in rows {
        let mut set = 0_u64;
        for (index, column) in <A::Entity as EntityTrait>::Column::iter().enumerate() {
            match row.get(column) {
                ActiveValue::Set(value) | ActiveValue::Unchanged(value) => {
                    set |= 1 << index;
                    values.push(value);
                }
                ActiveValue::NotSet => {}
            }
        }
        if *shape.get_or_insert(set) != set {
            return None;
        }
    }
    Some((shape.unwrap_or_default(), values))
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveValue::Set, QueryTrait};

    use super::*;
    use crate::entities::refresh_token;

    fn row(batch: usize, index: usize) -> refresh_token::ActiveModel {
        refresh_token::ActiveModel {
            token_hash: Set(format!("hash-{batch}-{index}")),
            family_id: Set(format!("family-{batch}-{index}")),
            environment: Set("production".to_owned()),
            client_id: Set(format!("client-{index}")),
            account_id: Set(format!("account-{batch}")),
            grant: Set(format!("{{\"batch\":{batch}}}")),
            created_at: Set(i64::try_from(batch).unwrap_or_default()),
            expires_at: Set(i64::try_from(index).unwrap_or_default()),
            used_at: Set(None),
            replaced_by: Set(Some(format!("next-{index}"))),
        }
    }

    // A later batch of a size gets the text the first one built, bound to its own values: the
    // very statement sea-orm would build for it.
    #[test]
    fn a_kept_text_with_a_batchs_values_is_the_statement_sea_orm_builds() {
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            let texts = StatementCache::new();
            for batch in 0..3 {
                for size in 1..=3 {
                    let rows: Vec<_> = (0..size).map(|index| row(batch, index)).collect();
                    let built = refresh_token::Entity::insert_many(rows.clone()).build(backend);
                    let mut built_again = false;
                    let (shape, values) = insert_values(&rows).unwrap_or_default();
                    let statement = texts.statement(
                        backend,
                        size,
                        shape,
                        || {
                            built_again = true;
                            built.clone()
                        },
                        || values,
                    );
                    assert_eq!((&statement.sql, &statement.values), (&built.sql, &built.values), "{backend:?} {size}");
                    assert_eq!(built_again, batch == 0, "built only by the first batch of its size");
                }
            }
        }
    }

    #[test]
    fn a_column_not_set_in_every_row_is_left_out_and_rows_that_differ_are_built_each_time() {
        let mut partial = row(0, 0);
        partial.replaced_by = ActiveValue::NotSet;
        assert!(insert_values(&[row(0, 1), partial.clone()]).is_none(), "rows that set different columns");
        let (full, values) = insert_values(&[row(0, 1)]).unwrap_or_default();
        assert_eq!(values.len(), 10);
        let (shape, values) = insert_values(&[partial.clone(), partial.clone()]).unwrap_or_default();
        assert_eq!(values.len(), 18);
        assert_ne!(shape, full);

        // Kept for one shape, a text is not used for another.
        let texts = StatementCache::new();
        for rows in [vec![row(0, 0)], vec![partial.clone()], vec![row(1, 0)], vec![partial]] {
            let built = refresh_token::Entity::insert_many(rows.clone()).build(DbBackend::Sqlite);
            let (shape, values) = insert_values(&rows).unwrap_or_default();
            let statement = texts.statement(DbBackend::Sqlite, 1, shape, || built.clone(), || values);
            assert_eq!((&statement.sql, &statement.values), (&built.sql, &built.values));
        }

        let statement =
            texts.statement(DbBackend::MySql, 1, 0, || Statement::from_string(DbBackend::MySql, "built"), Vec::new);
        assert_eq!(statement.sql, "built", "a backend without kept texts builds every statement");
    }
}
