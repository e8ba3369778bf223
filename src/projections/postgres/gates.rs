//! `GateCheckins` in `PostgreSQL`: applying scan counts and answering its queries.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::PgConnection;
use uuid::Uuid;

use super::read_models::{corrupt, db, to_i64, to_u64};
use super::{PostgresReadModels, ReadModel};
use crate::aggregates::TicketingAction;
use crate::domain::{EventId, GateName, ReservationId};
use crate::projections::gate_checkins::inside;
use crate::projections::{GateChange, GateCounts, ProjectionError};

const MODEL: ReadModel = ReadModel::GateCheckins;

fn gate_name(name: String) -> Result<GateName, ProjectionError> {
    GateName::new(name).map_err(|e| corrupt(MODEL, e))
}

fn add(total: &mut GateCounts, counts: GateCounts) {
    total.admitted = total.admitted.saturating_add(counts.admitted);
    total.exited = total.exited.saturating_add(counts.exited);
    total.turned_away = total.turned_away.saturating_add(counts.turned_away);
    total.offline = total.offline.saturating_add(counts.offline);
}

/// Applies the scans of `actions`, summed per event and gate; purchases issued in the batch are
/// remembered with their event first.
pub(super) async fn apply(conn: &mut PgConnection, actions: &[(u64, TicketingAction)]) -> Result<(), ProjectionError> {
    let changes: Vec<GateChange> = actions.iter().filter_map(|(_, a)| GateChange::from_action(a)).collect();
    let mut events_of: HashMap<ReservationId, EventId> = HashMap::new();
    let mut issued = Vec::new();
    for change in &changes {
        if let GateChange::Issued { reservation_id, event_id } = change {
            events_of.insert(*reservation_id, *event_id);
            issued.push((reservation_id.as_uuid(), event_id.as_uuid()));
        }
    }
    let wanted: Vec<Uuid> = changes
        .iter()
        .filter_map(|c| match c {
            GateChange::Scanned { reservation_id, .. } if !events_of.contains_key(reservation_id) => {
                Some(reservation_id.as_uuid())
            }
            _ => None,
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if !wanted.is_empty() {
        let rows: Vec<(Uuid, Uuid)> =
            sqlx::query_as("SELECT reservation_id, event_id FROM rm_gate_reservations WHERE reservation_id = ANY($1)")
                .bind(&wanted)
                .fetch_all(&mut *conn)
                .await
                .map_err(db(MODEL))?;
        events_of.extend(rows.into_iter().map(|(r, e)| (ReservationId::from_uuid(r), EventId::from_uuid(e))));
    }
    if !issued.is_empty() {
        let (reservations, events): (Vec<Uuid>, Vec<Uuid>) = issued.into_iter().unzip();
        sqlx::query(
            "INSERT INTO rm_gate_reservations (reservation_id, event_id) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[]) ON CONFLICT (reservation_id) DO NOTHING",
        )
        .bind(&reservations)
        .bind(&events)
        .execute(&mut *conn)
        .await
        .map_err(db(MODEL))?;
    }
    let mut totals: HashMap<(EventId, GateName), GateCounts> = HashMap::new();
    for change in changes {
        if let GateChange::Scanned { reservation_id, gate, counts } = change {
            // A scan of a purchase the log never issued is ignored, as in memory.
            let Some(event) = events_of.get(&reservation_id) else { continue };
            add(totals.entry((*event, gate)).or_default(), counts);
        }
    }
    if totals.is_empty() {
        return Ok(());
    }
    let mut events = Vec::with_capacity(totals.len());
    let mut gates = Vec::with_capacity(totals.len());
    let mut columns: [Vec<i64>; 4] = Default::default();
    for ((event, gate), c) in totals {
        events.push(event.as_uuid());
        gates.push(String::from(gate));
        for (column, value) in columns.iter_mut().zip([c.admitted, c.exited, c.turned_away, c.offline]) {
            column.push(to_i64(MODEL, value)?);
        }
    }
    let [admitted, exited, turned_away, offline] = columns;
    sqlx::query(
        "INSERT INTO rm_gate_checkins (event_id, gate, admitted, exited, turned_away, offline) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) \
         ON CONFLICT (event_id, gate) DO UPDATE SET admitted = rm_gate_checkins.admitted + EXCLUDED.admitted, \
            exited = rm_gate_checkins.exited + EXCLUDED.exited, \
            turned_away = rm_gate_checkins.turned_away + EXCLUDED.turned_away, \
            offline = rm_gate_checkins.offline + EXCLUDED.offline",
    )
    .bind(&events)
    .bind(&gates)
    .bind(&admitted)
    .bind(&exited)
    .bind(&turned_away)
    .bind(&offline)
    .execute(&mut *conn)
    .await
    .map_err(db(MODEL))?;
    Ok(())
}

type GateRow = (String, i64, i64, i64, i64);

fn counts((_, admitted, exited, turned_away, offline): &GateRow) -> Result<GateCounts, ProjectionError> {
    Ok(GateCounts {
        admitted: to_u64(MODEL, *admitted)?,
        exited: to_u64(MODEL, *exited)?,
        turned_away: to_u64(MODEL, *turned_away)?,
        offline: to_u64(MODEL, *offline)?,
    })
}

impl PostgresReadModels {
    /// As [`GateCheckinsProjection::get_gates`](crate::projections::GateCheckinsProjection::get_gates).
    ///
    /// # Errors
    /// [`ProjectionError::Database`] or [`ProjectionError::Corrupt`].
    pub async fn get_gates(&self, event: EventId) -> Result<BTreeMap<GateName, GateCounts>, ProjectionError> {
        let rows: Vec<GateRow> = sqlx::query_as(
            "SELECT gate, admitted, exited, turned_away, offline FROM rm_gate_checkins WHERE event_id = $1",
        )
        .bind(event.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(db(MODEL))?;
        rows.into_iter().map(|row| Ok((gate_name(row.0.clone())?, counts(&row)?))).collect()
    }

    /// As [`GateCheckinsProjection::get_gate`](crate::projections::GateCheckinsProjection::get_gate).
    ///
    /// # Errors
    /// [`ProjectionError::Database`] or [`ProjectionError::Corrupt`].
    pub async fn get_gate(&self, event: EventId, gate: &GateName) -> Result<Option<GateCounts>, ProjectionError> {
        let row: Option<GateRow> = sqlx::query_as(
            "SELECT gate, admitted, exited, turned_away, offline FROM rm_gate_checkins \
             WHERE event_id = $1 AND gate = $2",
        )
        .bind(event.as_uuid())
        .bind(gate.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(MODEL))?;
        row.as_ref().map(counts).transpose()
    }

    /// As [`GateCheckinsProjection::get_currently_inside`](crate::projections::GateCheckinsProjection::get_currently_inside).
    ///
    /// # Errors
    /// [`ProjectionError::Database`] or [`ProjectionError::Corrupt`].
    pub async fn get_currently_inside(&self, event: EventId) -> Result<u64, ProjectionError> {
        let gates = self.get_gates(event).await?;
        Ok(inside(gates.values()))
    }
}
