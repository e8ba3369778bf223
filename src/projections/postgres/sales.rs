//! `SalesAnalytics` in `PostgreSQL`: applying sales changes and answering its queries.

use std::collections::{BTreeMap, HashMap};

use sqlx::PgConnection;
use uuid::Uuid;

use super::read_models::{corrupt, db, facts_for, money_total, section, store_facts, to_u64};
use super::{PostgresReadModels, ReadModel};
use crate::aggregates::{PaymentAction, TicketingAction};
use crate::domain::{Currency, EventId, Money, MoneyTotal, RefundId, SectionName};
use crate::projections::sales_analytics::most_popular_section;
use crate::projections::{ProjectionError, ReservationEnd, SalesChange, SalesMetrics, average_price};

const MODEL: ReadModel = ReadModel::SalesAnalytics;

#[derive(Default)]
struct EventDelta {
    /// Summed exactly: the column is `numeric` (bound as text).
    revenue: i128,
    tickets: i64,
    completed: i64,
    cancelled: i64,
    expired: i64,
    compensated: i64,
}

fn overflow() -> ProjectionError {
    ProjectionError::Money {
        projection: MODEL.name().to_owned(),
        global_position: 0,
        source: crate::domain::DomainError::MoneyOverflow { operation: "add".into() },
    }
}

fn add(total: &mut i64, amount: i64) -> Result<(), ProjectionError> {
    *total = total.checked_add(amount).ok_or_else(overflow)?;
    Ok(())
}

fn add_money(total: &mut i128, amount: i64) -> Result<(), ProjectionError> {
    *total = total.checked_add(i128::from(amount)).ok_or_else(overflow)?;
    Ok(())
}

/// Applies the sales changes of `actions`, summed per event and per section.
pub(super) async fn apply(conn: &mut PgConnection, actions: &[(u64, TicketingAction)]) -> Result<(), ProjectionError> {
    let mut facts = facts_for(conn, MODEL, actions).await?;
    let mut refunds = refund_splits_for(conn, actions).await?;
    let mut new_refunds = Vec::new();
    let mut started = Vec::new();
    let mut new_events: HashMap<EventId, Currency> = HashMap::new();
    let mut events: HashMap<EventId, EventDelta> = HashMap::new();
    let mut sections: HashMap<(EventId, SectionName), (i128, i64)> = HashMap::new();
    for (_, action) in actions {
        let change = SalesChange::from_action(action, |id| facts.get(&id).cloned(), |id| refunds.get(&id).cloned());
        let Some(change) = change else { continue };
        match change {
            SalesChange::ReservationStarted(f) => {
                new_events.entry(f.event_id).or_insert(f.total.currency());
                facts.insert(f.reservation_id, f.clone());
                started.push(f);
            }
            SalesChange::Revenue { event_id, by_section } => {
                for (section, amount) in by_section {
                    add_money(&mut events.entry(event_id).or_default().revenue, amount.minor_units())?;
                    add_money(&mut sections.entry((event_id, section)).or_default().0, amount.minor_units())?;
                }
            }
            SalesChange::Completed { event_id, by_section } => {
                add(&mut events.entry(event_id).or_default().completed, 1)?;
                for (section, tickets) in by_section {
                    add(&mut events.entry(event_id).or_default().tickets, i64::from(tickets))?;
                    add(&mut sections.entry((event_id, section)).or_default().1, i64::from(tickets))?;
                }
            }
            SalesChange::Returned { event_id, by_section, refund } => {
                if let Some((refund_id, split)) = refund {
                    refunds.insert(refund_id, split.clone());
                    new_refunds.push((refund_id, split));
                }
                for (section, tickets) in by_section {
                    add(&mut events.entry(event_id).or_default().tickets, -i64::from(tickets))?;
                    add(&mut sections.entry((event_id, section)).or_default().1, -i64::from(tickets))?;
                }
            }
            SalesChange::Ended { event_id, end } => {
                let e = events.entry(event_id).or_default();
                match end {
                    ReservationEnd::Cancelled => add(&mut e.cancelled, 1)?,
                    ReservationEnd::Expired => add(&mut e.expired, 1)?,
                    ReservationEnd::Compensated => add(&mut e.compensated, 1)?,
                }
            }
        }
    }
    store_facts(conn, MODEL, &started).await?;
    store_refund_splits(conn, &new_refunds).await?;
    write_events(conn, new_events, events).await?;
    write_sections(conn, sections).await
}

async fn write_events(
    conn: &mut PgConnection,
    new_events: HashMap<EventId, Currency>,
    events: HashMap<EventId, EventDelta>,
) -> Result<(), ProjectionError> {
    if !new_events.is_empty() {
        let (ids, currencies): (Vec<Uuid>, Vec<String>) =
            new_events.into_iter().map(|(e, c)| (e.as_uuid(), c.as_str().to_owned())).unzip();
        sqlx::query(
            "INSERT INTO rm_event_sales (event_id, currency) SELECT * FROM UNNEST($1::uuid[], $2::text[]) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&currencies)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    if !events.is_empty() {
        let mut columns: [Vec<i64>; 5] = Default::default();
        let mut ids = Vec::with_capacity(events.len());
        let mut revenue = Vec::with_capacity(events.len());
        for (id, d) in events {
            ids.push(id.as_uuid());
            revenue.push(d.revenue.to_string());
            for (column, value) in
                columns.iter_mut().zip([d.tickets, d.completed, d.cancelled, d.expired, d.compensated])
            {
                column.push(value);
            }
        }
        let [tickets, completed, cancelled, expired, compensated] = columns;
        sqlx::query(
            "UPDATE rm_event_sales e SET revenue = e.revenue + d.revenue, tickets = e.tickets + d.tickets, \
                completed = e.completed + d.completed, cancelled = e.cancelled + d.cancelled, \
                expired = e.expired + d.expired, compensated = e.compensated + d.compensated \
             FROM UNNEST($1::uuid[], $2::numeric[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[]) \
                AS d(event_id, revenue, tickets, completed, cancelled, expired, compensated) \
             WHERE e.event_id = d.event_id",
        )
        .bind(&ids)
        .bind(&revenue)
        .bind(&tickets)
        .bind(&completed)
        .bind(&cancelled)
        .bind(&expired)
        .bind(&compensated)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    Ok(())
}

async fn write_sections(
    conn: &mut PgConnection,
    sections: HashMap<(EventId, SectionName), (i128, i64)>,
) -> Result<(), ProjectionError> {
    if !sections.is_empty() {
        let mut ids = Vec::with_capacity(sections.len());
        let mut names = Vec::with_capacity(sections.len());
        let mut revenue = Vec::with_capacity(sections.len());
        let mut tickets = Vec::with_capacity(sections.len());
        for ((event, name), (r, t)) in sections {
            ids.push(event.as_uuid());
            names.push(String::from(name));
            revenue.push(r.to_string());
            tickets.push(t);
        }
        sqlx::query(
            "INSERT INTO rm_section_sales (event_id, section, revenue, tickets) \
             SELECT d.* FROM UNNEST($1::uuid[], $2::text[], $3::numeric[], $4::bigint[]) AS d(event_id, section, revenue, tickets) \
             WHERE EXISTS (SELECT 1 FROM rm_event_sales e WHERE e.event_id = d.event_id) \
             ON CONFLICT (event_id, section) DO UPDATE SET revenue = rm_section_sales.revenue + EXCLUDED.revenue, \
                tickets = rm_section_sales.tickets + EXCLUDED.tickets",
        )
        .bind(&ids)
        .bind(&names)
        .bind(&revenue)
        .bind(&tickets)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    Ok(())
}

impl PostgresReadModels {
    async fn section_sales(&self, event: EventId) -> Result<Vec<(SectionName, String, u64)>, ProjectionError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT section, revenue::text, tickets FROM rm_section_sales WHERE event_id = $1")
                .bind(event.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(db(MODEL))?;
        rows.into_iter().map(|(name, r, t)| Ok((section(MODEL, name)?, r, to_u64(MODEL, t)?))).collect()
    }

    /// As [`SalesAnalyticsProjection::get_metrics`](crate::projections::SalesAnalyticsProjection::get_metrics).
    ///
    /// # Errors
    /// [`ProjectionError::Database`] or [`ProjectionError::Corrupt`].
    pub async fn get_metrics(&self, event: EventId) -> Result<Option<SalesMetrics>, ProjectionError> {
        type Row = (String, String, i64, i64, i64, i64, i64);
        let row: Option<Row> = sqlx::query_as(
            "SELECT currency, revenue::text, tickets, completed, cancelled, expired, compensated \
             FROM rm_event_sales WHERE event_id = $1",
        )
        .bind(event.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(MODEL))?;
        let Some((currency, revenue, tickets, completed, cancelled, expired, compensated)) = row else {
            return Ok(None);
        };
        let total_revenue = money_total(MODEL, &revenue, &currency)?;
        let tickets_sold = to_u64(MODEL, tickets)?;
        let sections = self.section_sales(event).await?;
        Ok(Some(SalesMetrics {
            event_id: event,
            total_revenue,
            tickets_sold,
            completed_reservations: to_u64(MODEL, completed)?,
            cancelled_reservations: to_u64(MODEL, cancelled)?,
            expired_reservations: to_u64(MODEL, expired)?,
            compensated_reservations: to_u64(MODEL, compensated)?,
            revenue_by_section: sections
                .iter()
                .map(|(s, r, _)| Ok((s.clone(), money_total(MODEL, r, &currency)?)))
                .collect::<Result<BTreeMap<_, _>, ProjectionError>>()?,
            tickets_by_section: sections.iter().map(|(s, _, t)| (s.clone(), *t)).collect(),
            average_ticket_price: average_price(total_revenue, tickets_sold),
        }))
    }

    /// As [`SalesAnalyticsProjection::get_total_revenue_all_events`](crate::projections::SalesAnalyticsProjection::get_total_revenue_all_events):
    /// one total per currency, in currency-code order.
    ///
    /// # Errors
    /// [`ProjectionError::Database`] or [`ProjectionError::Corrupt`].
    pub async fn get_total_revenue_all_events(&self) -> Result<Vec<MoneyTotal>, ProjectionError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT currency, SUM(revenue)::text FROM rm_event_sales GROUP BY currency")
                .fetch_all(&self.pool)
                .await
                .map_err(db(MODEL))?;
        let mut totals = rows.into_iter().map(|(c, m)| money_total(MODEL, &m, &c)).collect::<Result<Vec<_>, _>>()?;
        totals.sort_by_key(MoneyTotal::currency);
        Ok(totals)
    }

    /// As [`SalesAnalyticsProjection::get_most_popular_section`](crate::projections::SalesAnalyticsProjection::get_most_popular_section).
    ///
    /// # Errors
    /// [`ProjectionError::Database`] or [`ProjectionError::Corrupt`].
    pub async fn get_most_popular_section(
        &self,
        event: EventId,
    ) -> Result<Option<(SectionName, u64)>, ProjectionError> {
        let sections = self.section_sales(event).await?;
        Ok(most_popular_section(sections.iter().map(|(s, _, t)| (s, *t))))
    }
}

/// The by-section splits of the refunds of orders of several sections that the `PaymentRefunded`
/// events of `actions` need and that an earlier batch recorded.
async fn refund_splits_for(
    conn: &mut PgConnection,
    actions: &[(u64, TicketingAction)],
) -> Result<HashMap<RefundId, Vec<(SectionName, Money)>>, ProjectionError> {
    let wanted: Vec<Uuid> = actions
        .iter()
        .filter_map(|(_, a)| match a {
            TicketingAction::Payment(PaymentAction::PaymentRefunded { refund_id, .. }) => Some(refund_id.as_uuid()),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT refund_id, lines FROM rm_refund_splits WHERE refund_id = ANY($1)")
            .bind(&wanted)
            .fetch_all(&mut *conn)
            .await
            .map_err(db(MODEL))?;
    rows.into_iter()
        .map(|(id, lines)| {
            let split: Vec<(SectionName, Money)> = serde_json::from_str(&lines).map_err(|e| corrupt(MODEL, e))?;
            Ok((RefundId::from_uuid(id), split))
        })
        .collect()
}

async fn store_refund_splits(
    conn: &mut PgConnection,
    splits: &[(RefundId, Vec<(SectionName, Money)>)],
) -> Result<(), ProjectionError> {
    if splits.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = splits.iter().map(|(id, _)| id.as_uuid()).collect();
    let lines: Vec<String> = splits
        .iter()
        .map(|(_, split)| serde_json::to_string(split))
        .collect::<Result<_, _>>()
        .map_err(|e| corrupt(MODEL, e))?;
    sqlx::query(
        "INSERT INTO rm_refund_splits (refund_id, lines) SELECT * FROM UNNEST($1::uuid[], $2::text[]) \
         ON CONFLICT (refund_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&lines)
    .execute(&mut *conn)
    .await
    .map_err(db(MODEL))?;
    Ok(())
}
