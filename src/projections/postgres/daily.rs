//! `DailySales` in `PostgreSQL`: applying day figures and answering its queries.

use std::collections::HashMap;

use chrono::NaiveDate;
use sqlx::PgConnection;

use super::read_models::{db, facts_for, money_total, store_facts, to_u64};
use super::{PostgresReadModels, ReadModel};
use crate::aggregates::TicketingAction;
use crate::domain::{Currency, DomainError, EventId};
use crate::projections::daily_sales::net_tickets;
use crate::projections::{DailyChange, DaySales, ProjectionError};

const MODEL: ReadModel = ReadModel::DailySales;

#[derive(Default)]
struct Day {
    revenue: i128,
    sold: i64,
    refunded: i64,
    completed: i64,
}

/// Applies the day changes of `actions`, summed per event and day.
pub(super) async fn apply(conn: &mut PgConnection, actions: &[(u64, TicketingAction)]) -> Result<(), ProjectionError> {
    let mut facts = facts_for(conn, MODEL, actions).await?;
    let mut started = Vec::new();
    let mut days: HashMap<(EventId, NaiveDate), (Currency, Day)> = HashMap::new();
    for (position, action) in actions {
        let money =
            |source| ProjectionError::Money { projection: MODEL.name().to_owned(), global_position: *position, source };
        let change = DailyChange::from_action(action, |id| facts.get(&id).cloned()).map_err(money)?;
        match change {
            None => {}
            Some(DailyChange::ReservationStarted(f)) => {
                facts.insert(f.reservation_id, f.clone());
                started.push(f);
            }
            Some(DailyChange::Day { event_id, currency, day, delta }) => {
                let (cur, d) = days.entry((event_id, day)).or_insert_with(|| (currency, Day::default()));
                if *cur != currency {
                    return Err(money(DomainError::CurrencyMismatch { left: *cur, right: currency }));
                }
                d.revenue = d
                    .revenue
                    .checked_add(i128::from(delta.revenue))
                    .ok_or_else(|| money(DomainError::MoneyOverflow { operation: "add".into() }))?;
                d.sold = d.sold.saturating_add(i64::from(delta.tickets_sold));
                d.refunded = d.refunded.saturating_add(i64::from(delta.tickets_refunded));
                d.completed = d.completed.saturating_add(i64::from(delta.completed));
            }
        }
    }
    store_facts(conn, MODEL, &started).await?;
    if days.is_empty() {
        return Ok(());
    }
    let mut events = Vec::with_capacity(days.len());
    let mut dates = Vec::with_capacity(days.len());
    let mut currencies = Vec::with_capacity(days.len());
    let mut revenue = Vec::with_capacity(days.len());
    let mut columns: [Vec<i64>; 3] = Default::default();
    for ((event, day), (currency, d)) in days {
        events.push(event.as_uuid());
        dates.push(day);
        currencies.push(currency.as_str().to_owned());
        revenue.push(d.revenue.to_string());
        for (column, value) in columns.iter_mut().zip([d.sold, d.refunded, d.completed]) {
            column.push(value);
        }
    }
    let [sold, refunded, completed] = columns;
    sqlx::query(
        "INSERT INTO rm_daily_sales (event_id, day, currency, revenue, tickets_sold, tickets_refunded, completed) \
         SELECT * FROM UNNEST($1::uuid[], $2::date[], $3::text[], $4::numeric[], $5::bigint[], $6::bigint[], $7::bigint[]) \
         ON CONFLICT (event_id, day) DO UPDATE SET revenue = rm_daily_sales.revenue + EXCLUDED.revenue, \
            tickets_sold = rm_daily_sales.tickets_sold + EXCLUDED.tickets_sold, \
            tickets_refunded = rm_daily_sales.tickets_refunded + EXCLUDED.tickets_refunded, \
            completed = rm_daily_sales.completed + EXCLUDED.completed",
    )
    .bind(&events)
    .bind(&dates)
    .bind(&currencies)
    .bind(&revenue)
    .bind(&sold)
    .bind(&refunded)
    .bind(&completed)
    .execute(&mut *conn)
    .await
    .map_err(db(MODEL))?;
    Ok(())
}

type DayRow = (NaiveDate, String, String, i64, i64, i64);

fn day_sales(
    event_id: EventId,
    (day, currency, revenue, sold, refunded, completed): DayRow,
) -> Result<DaySales, ProjectionError> {
    let (sold, refunded) = (to_u64(MODEL, sold)?, to_u64(MODEL, refunded)?);
    Ok(DaySales {
        event_id,
        day,
        revenue: money_total(MODEL, &revenue, &currency)?,
        tickets_sold: sold,
        tickets_refunded: refunded,
        net_tickets: net_tickets(sold, refunded),
        completed_reservations: to_u64(MODEL, completed)?,
    })
}

const COLUMNS: &str = "day, currency, revenue::text, tickets_sold, tickets_refunded, completed";

impl PostgresReadModels {
    /// As [`DailySalesProjection::get_daily_sales`](crate::projections::DailySalesProjection::get_daily_sales).
    ///
    /// # Errors
    /// [`ProjectionError::Database`] or [`ProjectionError::Corrupt`].
    pub async fn get_daily_sales(&self, event: EventId) -> Result<Vec<DaySales>, ProjectionError> {
        let rows: Vec<DayRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM rm_daily_sales WHERE event_id = $1 ORDER BY day"))
                .bind(event.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(db(MODEL))?;
        rows.into_iter().map(|row| day_sales(event, row)).collect()
    }

    /// As [`DailySalesProjection::get_day_sales`](crate::projections::DailySalesProjection::get_day_sales).
    ///
    /// # Errors
    /// [`ProjectionError::Database`] or [`ProjectionError::Corrupt`].
    pub async fn get_day_sales(&self, event: EventId, day: NaiveDate) -> Result<Option<DaySales>, ProjectionError> {
        let row: Option<DayRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM rm_daily_sales WHERE event_id = $1 AND day = $2"))
                .bind(event.as_uuid())
                .bind(day)
                .fetch_optional(&self.pool)
                .await
                .map_err(db(MODEL))?;
        row.map(|row| day_sales(event, row)).transpose()
    }
}
