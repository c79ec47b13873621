//! Statements are prepared once per connection and reused: a statement sent as text costs a
//! round trip (Parse, Describe) before every execution, doubling a login's round trips.

use postgres::types::ToSql;
use postgres::{GenericClient, Row, Statement};
use std::collections::HashMap;

/// A connection's prepared statements, by their SQL text.
#[derive(Default)]
pub(crate) struct Statements(HashMap<&'static str, Statement>);

/// A client (a connection or an open transaction) with its connection's statements.
pub(crate) struct Session<'a, C> {
    client: &'a mut C,
    statements: &'a mut Statements,
}

impl<'a, C: GenericClient> Session<'a, C> {
    pub(crate) fn new(client: &'a mut C, statements: &'a mut Statements) -> Self {
        Self { client, statements }
    }

    fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.0.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.0.insert(sql, statement.clone());
        Ok(statement)
    }

    pub(crate) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.client.query(&statement, params)
    }

    pub(crate) fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.client.query_one(&statement, params)
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.client.query_opt(&statement, params)
    }

    pub(crate) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.client.execute(&statement, params)
    }
}
