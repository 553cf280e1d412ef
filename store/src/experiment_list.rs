//! A page of experiments, filtered and sorted by the database: only the page's rows are read
//! and decoded (the dashboard's list, at a thousand requests a second, must not parse every
//! experiment's config and summary each time). The out-of-sample figures are read from the
//! summary JSON by the database itself (SQLite's `json_extract`, PostgreSQL's `jsonb`).

use dexlab_types::ExperimentStatus;
use sqlx::any::AnyRow;

use crate::url::Backend;
use crate::{Result, Store, StoreError, db, get, name_column};

/// Which experiments a list shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExperimentFilter {
    pub status: Option<ExperimentStatus>,
    /// The strategy's name, exactly.
    pub strategy: Option<String>,
    /// A part of the name or of the dataset, any case (ASCII letters folded on SQLite).
    pub text: Option<String>,
}

/// What a list is sorted by; ties go by id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExperimentOrder {
    #[default]
    CreatedAt,
    Name,
    Id,
    /// The GA run's out-of-sample net PnL; experiments without one sort below every figure.
    OosPnl,
}

/// An experiment as a list shows it: no config, the summary's out-of-sample figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentListRow {
    pub id: i64,
    pub name: String,
    pub strategy: String,
    pub dataset: String,
    pub status: ExperimentStatus,
    pub seed: u64,
    pub created_at: i64,
    pub error: Option<String>,
    /// `summary.runs.ga.out_of_sample_net_pnl_quote`.
    pub oos_net_pnl_quote: Option<f64>,
    /// `summary.runs.no_trade.out_of_sample_net_pnl_quote`: the baseline.
    pub oos_net_pnl_quote_no_trade: Option<f64>,
}

/// `LIKE` pattern of a part of a text, `\` escaping the wildcards.
fn like_pattern(part: &str) -> String {
    let mut p = String::from("%");
    for c in part.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn oos(backend: Backend, run: &str) -> String {
    match backend {
        Backend::Sqlite => format!(
            "CAST(json_extract(summary, '$.runs.{run}.out_of_sample_net_pnl_quote') AS REAL)"
        ),
        Backend::Postgres => format!(
            "CAST(CAST(summary AS jsonb) #>> '{{runs,{run},out_of_sample_net_pnl_quote}}' \
             AS DOUBLE PRECISION)"
        ),
    }
}

fn list_row(op: &'static str, row: &AnyRow) -> Result<ExperimentListRow> {
    let id: i64 = get(op, row, "id")?;
    let target = || format!("experiment {id}");
    let seed: String = get(op, row, "seed")?;
    Ok(ExperimentListRow {
        id,
        name: get(op, row, "name")?,
        strategy: get(op, row, "strategy")?,
        dataset: get(op, row, "dataset")?,
        status: name_column(op, row, "status", target, ExperimentStatus::from_name)?,
        seed: seed.parse().map_err(|e| StoreError::Corrupt {
            op,
            target: target(),
            field: "seed",
            detail: format!("{seed:?}: {e}"),
        })?,
        created_at: get(op, row, "created_at")?,
        error: get(op, row, "error")?,
        oos_net_pnl_quote: get(op, row, "oos_ga")?,
        oos_net_pnl_quote_no_trade: get(op, row, "oos_no_trade")?,
    })
}

impl Store {
    /// Up to `limit` experiments from `offset` on, of those `filter` lets through, sorted by
    /// `order` (descending when `descending`); and how many it lets through in all.
    pub async fn experiment_page(
        &self,
        filter: &ExperimentFilter,
        order: ExperimentOrder,
        descending: bool,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<ExperimentListRow>, u64)> {
        const OP: &str = "experiment_page";
        let target = || "experiments".to_owned();
        let status = filter.status.map_or("", |s| s.as_str()).to_owned();
        let strategy = filter.strategy.clone().unwrap_or_default();
        let text = filter.text.as_deref().map_or(String::new(), like_pattern);
        let filter_sql = "($1 = '' OR status = $1) AND ($2 = '' OR strategy = $2) AND \
             ($3 = '' OR LOWER(name) LIKE $3 ESCAPE '\\' OR LOWER(dataset) LIKE $3 ESCAPE '\\')";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM experiments WHERE {filter_sql}"
        )))
        .bind(&status)
        .bind(&strategy)
        .bind(&text)
        .fetch_one(&self.pool)
        .await
        .map_err(db(OP, target))?;
        let dir = if descending { "DESC" } else { "ASC" };
        let (ga, no_trade) = (oos(self.backend, "ga"), oos(self.backend, "no_trade"));
        let order_sql = match order {
            ExperimentOrder::CreatedAt => format!("created_at {dir}, id {dir}"),
            ExperimentOrder::Name => format!("name {dir}, id {dir}"),
            ExperimentOrder::Id => format!("id {dir}"),
            // The expression, not its alias: PostgreSQL takes an output column's name in ORDER
            // BY only on its own, not inside an expression.
            ExperimentOrder::OosPnl => {
                format!("CASE WHEN {ga} IS NULL THEN 0 ELSE 1 END {dir}, {ga} {dir}, id {dir}")
            }
        };
        // Every piece of SQL here is one of the fixed strings above; values are bound.
        let sql = format!(
            "SELECT id, name, strategy, dataset, seed, status, created_at, error,
                    {ga} AS oos_ga, {no_trade} AS oos_no_trade
             FROM experiments WHERE {filter_sql}
             ORDER BY {order_sql} LIMIT $4 OFFSET $5"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&status)
            .bind(&strategy)
            .bind(&text)
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await
            .map_err(db(OP, target))?;
        let rows = rows
            .iter()
            .map(|r| list_row(OP, r))
            .collect::<Result<Vec<_>>>()?;
        Ok((rows, u64::try_from(total).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(super::like_pattern("A_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
