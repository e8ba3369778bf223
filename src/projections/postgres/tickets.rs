//! `CustomerTickets` in `PostgreSQL`: applying order and ticket changes and answering its queries.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::read_models::{corrupt, db, facts_for, money, section, store_facts, to_i64};
use super::{PostgresReadModels, ReadModel};
use crate::aggregates::{RevocationReason, TicketStatus, TicketingAction};
use crate::domain::{CustomerId, EventId, ReservationId, SeatId, TicketId};
use crate::projections::{HeldTicket, Order, ProjectionError, TicketChange};

const MODEL: ReadModel = ReadModel::CustomerTickets;

fn reason_text(reason: RevocationReason) -> &'static str {
    match reason {
        RevocationReason::Refunded => "refunded",
        RevocationReason::EventCancelled => "event_cancelled",
        RevocationReason::Transferred => "transferred",
    }
}

fn reason_of(text: &str) -> Result<RevocationReason, ProjectionError> {
    match text {
        "refunded" => Ok(RevocationReason::Refunded),
        "event_cancelled" => Ok(RevocationReason::EventCancelled),
        "transferred" => Ok(RevocationReason::Transferred),
        other => Err(corrupt(MODEL, format!("unknown revocation reason {other:?}"))),
    }
}

fn to_i32(value: u32) -> Result<i32, ProjectionError> {
    i32::try_from(value).map_err(|_| corrupt(MODEL, format!("{value} does not fit an integer")))
}

fn to_u32(value: i32) -> Result<u32, ProjectionError> {
    u32::try_from(value).map_err(|_| corrupt(MODEL, format!("negative count {value}")))
}

/// The changes of one batch, coalesced: rows to insert first, then the updates to them (every
/// transfer, refund or revocation follows the issue or completion it changes in the log).
#[derive(Default)]
struct Batch {
    orders: Vec<(u64, CustomerId, Order)>,
    returns: HashMap<ReservationId, i64>,
    issued: Vec<(u64, usize, HeldTicket)>,
    /// The last transfer of each ticket (serials only grow).
    transfers: HashMap<TicketId, (CustomerId, u32)>,
    revocations: HashMap<TicketId, (RevocationReason, DateTime<Utc>)>,
}

/// Applies the order and ticket changes of `actions`.
pub(super) async fn apply(conn: &mut PgConnection, actions: &[(u64, TicketingAction)]) -> Result<(), ProjectionError> {
    let mut facts = facts_for(conn, MODEL, actions).await?;
    let mut started = Vec::new();
    let mut batch = Batch::default();
    for (position, action) in actions {
        for change in TicketChange::from_action(action, |id| facts.get(&id).cloned()) {
            match change {
                TicketChange::ReservationStarted(f) => {
                    facts.insert(f.reservation_id, f.clone());
                    started.push(f);
                }
                TicketChange::Ordered { customer_id, order } => batch.orders.push((*position, customer_id, order)),
                TicketChange::Returned { reservation_id, seats } => {
                    let total = batch.returns.entry(reservation_id).or_default();
                    *total = total.saturating_add(i64::from(seats));
                }
                TicketChange::Issued(tickets) => {
                    batch.issued.extend(tickets.into_iter().enumerate().map(|(i, t)| (*position, i, t)));
                }
                TicketChange::Transferred { ticket_id, to, serial } => {
                    batch.transfers.insert(ticket_id, (to, serial));
                }
                TicketChange::Revoked { ticket_id, status: TicketStatus::Revoked { reason, at } } => {
                    batch.revocations.insert(ticket_id, (reason, at));
                }
                TicketChange::Revoked { status: TicketStatus::Valid, .. } => {}
            }
        }
    }
    store_facts(conn, MODEL, &started).await?;
    write_orders(conn, &batch).await?;
    write_tickets(conn, &batch).await
}

async fn write_orders(conn: &mut PgConnection, batch: &Batch) -> Result<(), ProjectionError> {
    if !batch.orders.is_empty() {
        let o = &batch.orders;
        let positions = o.iter().map(|(p, _, _)| to_i64(MODEL, *p)).collect::<Result<Vec<_>, _>>()?;
        let customers: Vec<Uuid> = o.iter().map(|(_, c, _)| c.as_uuid()).collect();
        let reservations: Vec<Uuid> = o.iter().map(|(_, _, x)| x.reservation_id.as_uuid()).collect();
        let events: Vec<Uuid> = o.iter().map(|(_, _, x)| x.event_id.as_uuid()).collect();
        let sections: Vec<String> = o.iter().map(|(_, _, x)| x.section.as_str().to_owned()).collect();
        let bought = o.iter().map(|(_, _, x)| to_i32(x.seats_bought)).collect::<Result<Vec<_>, _>>()?;
        let totals: Vec<i64> = o.iter().map(|(_, _, x)| x.total.minor_units()).collect();
        let currencies: Vec<String> = o.iter().map(|(_, _, x)| x.total.currency().as_str().to_owned()).collect();
        sqlx::query(
            "INSERT INTO rm_orders (reservation_id, customer_id, position, event_id, section, seats_bought, \
                seats_kept, total_minor, currency) \
             SELECT r, c, p, e, s, b, b, t, cur \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[], $6::int[], $7::bigint[], $8::text[]) \
                AS d(r, c, p, e, s, b, t, cur) \
             ON CONFLICT (reservation_id) DO NOTHING",
        )
        .bind(&reservations)
        .bind(&customers)
        .bind(&positions)
        .bind(&events)
        .bind(&sections)
        .bind(&bought)
        .bind(&totals)
        .bind(&currencies)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    if !batch.returns.is_empty() {
        let (ids, seats): (Vec<Uuid>, Vec<i64>) = batch.returns.iter().map(|(r, n)| (r.as_uuid(), *n)).unzip();
        sqlx::query(
            "UPDATE rm_orders o SET seats_kept = GREATEST(o.seats_kept - d.seats, 0) \
             FROM UNNEST($1::uuid[], $2::bigint[]) AS d(reservation_id, seats) \
             WHERE o.reservation_id = d.reservation_id",
        )
        .bind(&ids)
        .bind(&seats)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    Ok(())
}

async fn write_tickets(conn: &mut PgConnection, batch: &Batch) -> Result<(), ProjectionError> {
    if !batch.issued.is_empty() {
        let t = &batch.issued;
        let tickets: Vec<Uuid> = t.iter().map(|(_, _, x)| x.ticket_id.as_uuid()).collect();
        let reservations: Vec<Uuid> = t.iter().map(|(_, _, x)| x.reservation_id.as_uuid()).collect();
        let events: Vec<Uuid> = t.iter().map(|(_, _, x)| x.event_id.as_uuid()).collect();
        let sections: Vec<String> = t.iter().map(|(_, _, x)| x.section.as_str().to_owned()).collect();
        let seats: Vec<Uuid> = t.iter().map(|(_, _, x)| x.seat_id.as_uuid()).collect();
        let holders: Vec<Uuid> = t.iter().map(|(_, _, x)| x.holder.as_uuid()).collect();
        let positions = t.iter().map(|(p, _, _)| to_i64(MODEL, *p)).collect::<Result<Vec<_>, _>>()?;
        let indexes =
            t.iter().map(|(_, i, _)| to_i32(u32::try_from(*i).unwrap_or(u32::MAX))).collect::<Result<Vec<_>, _>>()?;
        sqlx::query(
            "INSERT INTO rm_held_tickets (ticket_id, reservation_id, event_id, section, seat_id, holder, serial, \
                issued_position, issued_index) \
             SELECT t, r, e, s, seat, h, 0, p, i \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::uuid[], $6::uuid[], $7::bigint[], $8::int[]) \
                AS d(t, r, e, s, seat, h, p, i) \
             ON CONFLICT (ticket_id) DO NOTHING",
        )
        .bind(&tickets)
        .bind(&reservations)
        .bind(&events)
        .bind(&sections)
        .bind(&seats)
        .bind(&holders)
        .bind(&positions)
        .bind(&indexes)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    if !batch.transfers.is_empty() {
        let mut ids = Vec::with_capacity(batch.transfers.len());
        let mut holders = Vec::with_capacity(batch.transfers.len());
        let mut serials = Vec::with_capacity(batch.transfers.len());
        for (ticket, (to, serial)) in &batch.transfers {
            ids.push(ticket.as_uuid());
            holders.push(to.as_uuid());
            serials.push(to_i32(*serial)?);
        }
        sqlx::query(
            "UPDATE rm_held_tickets t SET holder = d.holder, serial = d.serial \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::int[]) AS d(ticket_id, holder, serial) \
             WHERE t.ticket_id = d.ticket_id",
        )
        .bind(&ids)
        .bind(&holders)
        .bind(&serials)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    if !batch.revocations.is_empty() {
        let mut ids = Vec::with_capacity(batch.revocations.len());
        let mut reasons = Vec::with_capacity(batch.revocations.len());
        let mut times = Vec::with_capacity(batch.revocations.len());
        for (ticket, (reason, at)) in &batch.revocations {
            ids.push(ticket.as_uuid());
            reasons.push(reason_text(*reason).to_owned());
            times.push(*at);
        }
        sqlx::query(
            "UPDATE rm_held_tickets t SET revoked_reason = d.reason, revoked_at = d.at \
             FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS d(ticket_id, reason, at) \
             WHERE t.ticket_id = d.ticket_id",
        )
        .bind(&ids)
        .bind(&reasons)
        .bind(&times)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    Ok(())
}

type TicketRow = (Uuid, Uuid, Uuid, String, Uuid, Uuid, i32, Option<String>, Option<DateTime<Utc>>);

impl PostgresReadModels {
    /// As [`CustomerTicketsProjection::get_orders`](crate::projections::CustomerTicketsProjection::get_orders).
    ///
    /// # Errors
    /// [`ProjectionError::Database`] or [`ProjectionError::Corrupt`].
    pub async fn get_orders(&self, customer: CustomerId) -> Result<Vec<Order>, ProjectionError> {
        let rows: Vec<(Uuid, Uuid, String, i32, i32, i64, String)> = sqlx::query_as(
            "SELECT reservation_id, event_id, section, seats_bought, seats_kept, total_minor, currency \
             FROM rm_orders WHERE customer_id = $1 ORDER BY position",
        )
        .bind(customer.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(db(MODEL))?;
        rows.into_iter()
            .map(|(reservation_id, event_id, name, bought, kept, total, currency)| {
                Ok(Order {
                    reservation_id: ReservationId::from_uuid(reservation_id),
                    event_id: EventId::from_uuid(event_id),
                    section: section(MODEL, name)?,
                    seats_bought: to_u32(bought)?,
                    seats_kept: to_u32(kept)?,
                    total: money(MODEL, total, &currency)?,
                })
            })
            .collect()
    }

    /// As [`CustomerTicketsProjection::get_tickets_held`](crate::projections::CustomerTicketsProjection::get_tickets_held).
    ///
    /// # Errors
    /// [`ProjectionError::Database`] or [`ProjectionError::Corrupt`].
    pub async fn get_tickets_held(&self, customer: CustomerId) -> Result<Vec<HeldTicket>, ProjectionError> {
        self.held_tickets(customer, false).await
    }

    /// As [`CustomerTicketsProjection::get_valid_tickets_held`](crate::projections::CustomerTicketsProjection::get_valid_tickets_held).
    ///
    /// # Errors
    /// [`ProjectionError::Database`] or [`ProjectionError::Corrupt`].
    pub async fn get_valid_tickets_held(&self, customer: CustomerId) -> Result<Vec<HeldTicket>, ProjectionError> {
        self.held_tickets(customer, true).await
    }

    async fn held_tickets(&self, customer: CustomerId, valid_only: bool) -> Result<Vec<HeldTicket>, ProjectionError> {
        let rows: Vec<TicketRow> = sqlx::query_as(
            "SELECT ticket_id, reservation_id, event_id, section, seat_id, holder, serial, revoked_reason, revoked_at \
             FROM rm_held_tickets WHERE holder = $1 AND (NOT $2 OR revoked_reason IS NULL) \
             ORDER BY issued_position, issued_index",
        )
        .bind(customer.as_uuid())
        .bind(valid_only)
        .fetch_all(&self.pool)
        .await
        .map_err(db(MODEL))?;
        rows.into_iter()
            .map(|(ticket_id, reservation_id, event_id, name, seat_id, holder, serial, reason, at)| {
                let status = match (reason, at) {
                    (None, None) => TicketStatus::Valid,
                    (Some(reason), Some(at)) => TicketStatus::Revoked { reason: reason_of(&reason)?, at },
                    _ => return Err(corrupt(MODEL, "a revocation without its reason or time")),
                };
                Ok(HeldTicket {
                    ticket_id: TicketId::from_uuid(ticket_id),
                    reservation_id: ReservationId::from_uuid(reservation_id),
                    event_id: EventId::from_uuid(event_id),
                    section: section(MODEL, name)?,
                    seat_id: SeatId::from_uuid(seat_id),
                    holder: CustomerId::from_uuid(holder),
                    serial: to_u32(serial)?,
                    status,
                })
            })
            .collect()
    }
}
