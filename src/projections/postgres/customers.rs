//! `CustomerHistory` in `PostgreSQL`: applying customer changes and answering its queries.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::PgConnection;
use uuid::Uuid;

use super::read_models::{db, facts_for, money, money_total, section, store_facts, to_i64};
use super::{PostgresReadModels, ReadModel};
use crate::aggregates::TicketingAction;
use crate::domain::{Currency, CustomerId, EventId, MoneyTotal, ReservationId, SectionName};
use crate::projections::customer_history::favorite_section;
use crate::projections::{CustomerChange, CustomerProfile, ProjectionError, Purchase};

const MODEL: ReadModel = ReadModel::CustomerHistory;

/// Applies the customer changes of `actions`: purchases as rows, spending summed per customer and
/// currency.
pub(super) async fn apply(conn: &mut PgConnection, actions: &[(u64, TicketingAction)]) -> Result<(), ProjectionError> {
    let mut facts = facts_for(conn, MODEL, actions).await?;
    let mut started = Vec::new();
    let mut purchases: Vec<(u64, CustomerId, Purchase)> = Vec::new();
    let mut spent: HashMap<(CustomerId, Currency), i128> = HashMap::new();
    let mut returns: Vec<(Uuid, Uuid, i32)> = Vec::new();
    for (position, action) in actions {
        let Some(change) = CustomerChange::from_action(action, |id| facts.get(&id).cloned()) else { continue };
        match change {
            CustomerChange::ReservationStarted(f) => {
                facts.insert(f.reservation_id, f.clone());
                started.push(f);
            }
            CustomerChange::Purchased { customer_id, purchase } => purchases.push((*position, customer_id, purchase)),
            CustomerChange::Returned { customer_id, reservation_id, tickets } => {
                returns.push((
                    customer_id.as_uuid(),
                    reservation_id.as_uuid(),
                    i32::try_from(tickets).unwrap_or(i32::MAX),
                ));
            }
            CustomerChange::Spent { customer_id, amount } => {
                let total = spent.entry((customer_id, amount.currency())).or_default();
                *total = total.checked_add(i128::from(amount.minor_units())).ok_or_else(|| ProjectionError::Money {
                    projection: MODEL.name().to_owned(),
                    global_position: *position,
                    source: crate::domain::DomainError::MoneyOverflow { operation: "add".into() },
                })?;
            }
        }
    }
    store_facts(conn, MODEL, &started).await?;
    if !purchases.is_empty() {
        let positions = purchases.iter().map(|(p, _, _)| to_i64(MODEL, *p)).collect::<Result<Vec<_>, _>>()?;
        let customers: Vec<Uuid> = purchases.iter().map(|(_, c, _)| c.as_uuid()).collect();
        let reservations: Vec<Uuid> = purchases.iter().map(|(_, _, p)| p.reservation_id.as_uuid()).collect();
        let events: Vec<Uuid> = purchases.iter().map(|(_, _, p)| p.event_id.as_uuid()).collect();
        let sections: Vec<String> = purchases.iter().map(|(_, _, p)| p.section.as_str().to_owned()).collect();
        let tickets: Vec<i32> =
            purchases.iter().map(|(_, _, p)| i32::try_from(p.tickets).unwrap_or(i32::MAX)).collect();
        let totals: Vec<i64> = purchases.iter().map(|(_, _, p)| p.total.minor_units()).collect();
        let currencies: Vec<String> =
            purchases.iter().map(|(_, _, p)| p.total.currency().as_str().to_owned()).collect();
        sqlx::query(
            "INSERT INTO rm_purchases (position, customer_id, reservation_id, event_id, section, tickets, total_minor, currency) \
             SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::int[], $7::bigint[], $8::text[]) \
             ON CONFLICT (customer_id, reservation_id) DO NOTHING",
        )
        .bind(&positions)
        .bind(&customers)
        .bind(&reservations)
        .bind(&events)
        .bind(&sections)
        .bind(&tickets)
        .bind(&totals)
        .bind(&currencies)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    if !returns.is_empty() {
        // After the purchases of the same batch are in: a refund always follows its purchase.
        for (customer, reservation, tickets) in returns {
            sqlx::query(
                "UPDATE rm_purchases SET tickets = GREATEST(tickets - $3, 0) \
                 WHERE customer_id = $1 AND reservation_id = $2",
            )
            .bind(customer)
            .bind(reservation)
            .bind(tickets)
            .execute(&mut *conn)
            .await
            .map_err(db(MODEL))?;
        }
    }
    if !spent.is_empty() {
        let mut customers = Vec::with_capacity(spent.len());
        let mut currencies = Vec::with_capacity(spent.len());
        let mut amounts = Vec::with_capacity(spent.len());
        for ((customer, currency), amount) in spent {
            customers.push(customer.as_uuid());
            currencies.push(currency.as_str().to_owned());
            amounts.push(amount.to_string());
        }
        sqlx::query(
            "INSERT INTO rm_customer_spent (customer_id, currency, amount) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::numeric[]) \
             ON CONFLICT (customer_id, currency) DO UPDATE SET amount = rm_customer_spent.amount + EXCLUDED.amount",
        )
        .bind(&customers)
        .bind(&currencies)
        .bind(&amounts)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    Ok(())
}

impl PostgresReadModels {
    /// As [`CustomerHistoryProjection::get_customer_profile`](crate::projections::CustomerHistoryProjection::get_customer_profile).
    ///
    /// # Errors
    /// [`ProjectionError::Database`] or [`ProjectionError::Corrupt`].
    pub async fn get_customer_profile(&self, customer: CustomerId) -> Result<Option<CustomerProfile>, ProjectionError> {
        let rows: Vec<(Uuid, Uuid, String, i32, i64, String)> = sqlx::query_as(
            "SELECT reservation_id, event_id, section, tickets, total_minor, currency \
             FROM rm_purchases WHERE customer_id = $1 ORDER BY position",
        )
        .bind(customer.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(db(MODEL))?;
        let spent: Vec<(String, String)> =
            sqlx::query_as("SELECT currency, amount::text FROM rm_customer_spent WHERE customer_id = $1")
                .bind(customer.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(db(MODEL))?;
        if rows.is_empty() && spent.is_empty() {
            return Ok(None);
        }
        let mut purchases = Vec::with_capacity(rows.len());
        for (reservation_id, event_id, name, tickets, total, currency) in rows {
            purchases.push(Purchase {
                reservation_id: ReservationId::from_uuid(reservation_id),
                event_id: EventId::from_uuid(event_id),
                section: section(MODEL, name)?,
                tickets: u32::try_from(tickets).unwrap_or(0),
                total: money(MODEL, total, &currency)?,
            });
        }
        let mut total_spent = BTreeMap::new();
        for (currency, amount) in spent {
            let m = money_total(MODEL, &amount, &currency)?;
            total_spent.insert(m.currency(), m);
        }
        let mut per_section: BTreeMap<SectionName, u64> = BTreeMap::new();
        for p in purchases.iter().filter(|p| p.tickets > 0) {
            *per_section.entry(p.section.clone()).or_default() += u64::from(p.tickets);
        }
        Ok(Some(CustomerProfile {
            customer_id: customer,
            total_tickets: purchases.iter().map(|p| u64::from(p.tickets)).sum(),
            events_attended: purchases.iter().filter(|p| p.tickets > 0).map(|p| p.event_id).collect::<BTreeSet<_>>(),
            favorite_section: favorite_section(per_section.iter().map(|(s, n)| (s, *n))),
            total_spent,
            purchases,
        }))
    }

    /// As [`CustomerHistoryProjection::has_attended_event`](crate::projections::CustomerHistoryProjection::has_attended_event).
    ///
    /// # Errors
    /// [`ProjectionError::Database`].
    pub async fn has_attended_event(&self, customer: CustomerId, event: EventId) -> Result<bool, ProjectionError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rm_purchases WHERE event_id = $1 AND customer_id = $2 AND tickets > 0)",
        )
        .bind(event.as_uuid())
        .bind(customer.as_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(db(MODEL))
    }

    /// As [`CustomerHistoryProjection::get_event_attendees`](crate::projections::CustomerHistoryProjection::get_event_attendees).
    ///
    /// # Errors
    /// [`ProjectionError::Database`].
    pub async fn get_event_attendees(&self, event: EventId) -> Result<Vec<CustomerId>, ProjectionError> {
        let ids: Vec<Uuid> =
            sqlx::query_scalar("SELECT DISTINCT customer_id FROM rm_purchases WHERE event_id = $1 AND tickets > 0")
                .bind(event.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(db(MODEL))?;
        let mut ids: Vec<CustomerId> = ids.into_iter().map(CustomerId::from_uuid).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// As [`CustomerHistoryProjection::get_top_spenders`](crate::projections::CustomerHistoryProjection::get_top_spenders).
    ///
    /// # Errors
    /// [`ProjectionError::Database`].
    pub async fn get_top_spenders(
        &self,
        currency: Currency,
        n: usize,
    ) -> Result<Vec<(CustomerId, MoneyTotal)>, ProjectionError> {
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT customer_id, amount::text FROM rm_customer_spent WHERE currency = $1 \
             ORDER BY rm_customer_spent.amount DESC, customer_id LIMIT $2",
        )
        .bind(currency.as_str())
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db(MODEL))?;
        rows.into_iter()
            .map(|(id, m)| Ok((CustomerId::from_uuid(id), money_total(MODEL, &m, currency.as_str())?)))
            .collect()
    }
}
