//! `AvailableSeats` in `PostgreSQL`: applying seat changes and answering its queries.

use std::collections::HashMap;

use sqlx::PgConnection;
use uuid::Uuid;

use super::read_models::{db, section, to_u64};
use super::{PostgresReadModels, ReadModel};
use crate::aggregates::TicketingAction;
use crate::domain::{EventId, SeatId, SectionName};
use crate::projections::{ProjectionError, SeatChange, SeatState, SectionAvailability};

const MODEL: ReadModel = ReadModel::AvailableSeats;

/// Applies the seat changes of `actions`, coalesced: each seat ends in the state of its last move.
pub(super) async fn apply(conn: &mut PgConnection, actions: &[(u64, TicketingAction)]) -> Result<(), ProjectionError> {
    let mut sections: HashMap<(EventId, SectionName), u32> = HashMap::new();
    let mut seats: HashMap<(EventId, SectionName, SeatId), SeatState> = HashMap::new();
    for (_, action) in actions {
        match SeatChange::from_action(action) {
            Some(SeatChange::SectionOpened { event_id, section, capacity }) => {
                sections.insert((event_id, section), capacity);
            }
            Some(SeatChange::SeatsMoved { event_id, section, state, seats: moved }) => {
                for seat in moved {
                    seats.insert((event_id, section.clone(), seat), state);
                }
            }
            None => {}
        }
    }
    if !sections.is_empty() {
        let (keys, capacities): (Vec<_>, Vec<i32>) =
            sections.into_iter().map(|(k, c)| (k, i32::try_from(c).unwrap_or(i32::MAX))).unzip();
        let events: Vec<Uuid> = keys.iter().map(|(e, _)| e.as_uuid()).collect();
        let names: Vec<String> = keys.iter().map(|(_, s)| s.as_str().to_owned()).collect();
        sqlx::query(
            "INSERT INTO rm_sections (event_id, section, capacity) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int[]) \
             ON CONFLICT (event_id, section) DO UPDATE SET capacity = EXCLUDED.capacity",
        )
        .bind(&events)
        .bind(&names)
        .bind(&capacities)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    let (mut held, mut freed): (Vec<_>, Vec<_>) = seats.into_iter().partition(|(_, s)| *s != SeatState::Available);
    held.sort_by(|a, b| a.0.cmp(&b.0));
    freed.sort_by(|a, b| a.0.cmp(&b.0));
    if !held.is_empty() {
        let events: Vec<Uuid> = held.iter().map(|((e, _, _), _)| e.as_uuid()).collect();
        let names: Vec<String> = held.iter().map(|((_, s, _), _)| s.as_str().to_owned()).collect();
        let ids: Vec<Uuid> = held.iter().map(|((_, _, id), _)| id.as_uuid()).collect();
        let states: Vec<i16> = held.iter().map(|(_, s)| if *s == SeatState::Sold { 2 } else { 1 }).collect();
        sqlx::query(
            "INSERT INTO rm_seats (event_id, section, seat_id, state) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::smallint[]) \
             ON CONFLICT (event_id, section, seat_id) DO UPDATE SET state = EXCLUDED.state",
        )
        .bind(&events)
        .bind(&names)
        .bind(&ids)
        .bind(&states)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    if !freed.is_empty() {
        let events: Vec<Uuid> = freed.iter().map(|((e, _, _), _)| e.as_uuid()).collect();
        let names: Vec<String> = freed.iter().map(|((_, s, _), _)| s.as_str().to_owned()).collect();
        let ids: Vec<Uuid> = freed.iter().map(|((_, _, id), _)| id.as_uuid()).collect();
        sqlx::query(
            "DELETE FROM rm_seats USING UNNEST($1::uuid[], $2::text[], $3::uuid[]) AS f(event_id, section, seat_id) \
             WHERE rm_seats.event_id = f.event_id AND rm_seats.section = f.section AND rm_seats.seat_id = f.seat_id",
        )
        .bind(&events)
        .bind(&names)
        .bind(&ids)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    Ok(())
}

impl PostgresReadModels {
    /// As [`AvailableSeatsProjection::get_availability`](crate::projections::AvailableSeatsProjection::get_availability).
    ///
    /// # Errors
    /// [`ProjectionError::Database`] or [`ProjectionError::Corrupt`].
    pub async fn get_availability(
        &self,
        event: EventId,
        section_name: &str,
    ) -> Result<Option<SectionAvailability>, ProjectionError> {
        let capacity: Option<(String, i32)> =
            sqlx::query_as("SELECT section, capacity FROM rm_sections WHERE event_id = $1 AND section = $2")
                .bind(event.as_uuid())
                .bind(section_name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db(MODEL))?;
        let Some((name, capacity)) = capacity else { return Ok(None) };
        let rows: Vec<(Uuid, i16)> =
            sqlx::query_as("SELECT seat_id, state FROM rm_seats WHERE event_id = $1 AND section = $2")
                .bind(event.as_uuid())
                .bind(section_name)
                .fetch_all(&self.pool)
                .await
                .map_err(db(MODEL))?;
        let (mut reserved_seats, mut sold_seats) = (Vec::new(), Vec::new());
        for (id, state) in rows {
            if state == 2 { &mut sold_seats } else { &mut reserved_seats }.push(SeatId::from_uuid(id));
        }
        reserved_seats.sort_unstable();
        sold_seats.sort_unstable();
        let total_capacity = u32::try_from(capacity).unwrap_or(0);
        let count = |v: &Vec<SeatId>| u32::try_from(v.len()).unwrap_or(u32::MAX);
        let (reserved, sold) = (count(&reserved_seats), count(&sold_seats));
        Ok(Some(SectionAvailability {
            event_id: event,
            section: section(MODEL, name)?,
            total_capacity,
            reserved,
            sold,
            available: total_capacity.saturating_sub(reserved).saturating_sub(sold),
            reserved_seats,
            sold_seats,
        }))
    }

    /// As [`AvailableSeatsProjection::has_availability`](crate::projections::AvailableSeatsProjection::has_availability).
    ///
    /// # Errors
    /// [`ProjectionError::Database`].
    pub async fn has_availability(
        &self,
        event: EventId,
        section: &str,
        quantity: u32,
    ) -> Result<bool, ProjectionError> {
        let available: Option<i64> = sqlx::query_scalar(
            "SELECT GREATEST(s.capacity - (SELECT count(*) FROM rm_seats x \
                WHERE x.event_id = s.event_id AND x.section = s.section), 0) \
             FROM rm_sections s WHERE s.event_id = $1 AND s.section = $2",
        )
        .bind(event.as_uuid())
        .bind(section)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(MODEL))?;
        Ok(available.is_some_and(|a| a >= i64::from(quantity)))
    }

    /// As [`AvailableSeatsProjection::get_total_available`](crate::projections::AvailableSeatsProjection::get_total_available).
    ///
    /// # Errors
    /// [`ProjectionError::Database`].
    pub async fn get_total_available(&self, event: EventId) -> Result<u64, ProjectionError> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(GREATEST(s.capacity - (SELECT count(*) FROM rm_seats x \
                WHERE x.event_id = s.event_id AND x.section = s.section), 0)), 0)::bigint \
             FROM rm_sections s WHERE s.event_id = $1",
        )
        .bind(event.as_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(db(MODEL))?;
        to_u64(MODEL, total)
    }
}
