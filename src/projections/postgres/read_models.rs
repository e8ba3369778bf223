//! Applying batches of the log to the `PostgreSQL` read models, with their checkpoints.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use crate::aggregates::TicketingAction;
use crate::domain::{Currency, CustomerId, EventId, Money, MoneyTotal, ReservationId, SectionName};
use crate::event_store::{
    BadEventPolicy, Envelope, EventStore, FollowConfig, FollowStatus, LogConsumer, RetryPolicy, follow,
};
use crate::projections::{
    AVAILABLE_SEATS_EVENTS, AvailableSeatsProjection, CUSTOMER_HISTORY_EVENTS, CUSTOMER_TICKETS_EVENTS,
    CustomerHistoryProjection, CustomerTicketsProjection, DAILY_SALES_EVENTS, DailySalesProjection,
    GATE_CHECKINS_EVENTS, GateCheckinsProjection, ProjectionError, ReservationFacts, SALES_ANALYTICS_EVENTS,
    SalesAnalyticsProjection, decode_ticketing, reads_payload,
};

/// How many read models there are.
const MODELS: usize = 6;

/// How often a standing-by feeder reads the model's checkpoint (what its waits see).
const STANDBY_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// How often, in polls, a standing-by feeder tries to take the model's feeding lease.
const LEASE_TRIES_EVERY: u32 = 10;

/// One of the six read models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadModel {
    /// [`AvailableSeatsProjection`]'s tables.
    AvailableSeats,
    /// [`SalesAnalyticsProjection`]'s tables.
    SalesAnalytics,
    /// [`CustomerHistoryProjection`]'s tables.
    CustomerHistory,
    /// [`CustomerTicketsProjection`]'s tables.
    CustomerTickets,
    /// [`GateCheckinsProjection`]'s tables.
    GateCheckins,
    /// [`DailySalesProjection`]'s tables.
    DailySales,
}

impl ReadModel {
    /// All six.
    pub const ALL: [ReadModel; MODELS] = [
        Self::AvailableSeats,
        Self::SalesAnalytics,
        Self::CustomerHistory,
        Self::CustomerTickets,
        Self::GateCheckins,
        Self::DailySales,
    ];

    /// The checkpoint name, the same as the in-memory model's.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::AvailableSeats => AvailableSeatsProjection::NAME,
            Self::SalesAnalytics => SalesAnalyticsProjection::NAME,
            Self::CustomerHistory => CustomerHistoryProjection::NAME,
            Self::CustomerTickets => CustomerTicketsProjection::NAME,
            Self::GateCheckins => GateCheckinsProjection::NAME,
            Self::DailySales => DailySalesProjection::NAME,
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::AvailableSeats => 0,
            Self::SalesAnalytics => 1,
            Self::CustomerHistory => 2,
            Self::CustomerTickets => 3,
            Self::GateCheckins => 4,
            Self::DailySales => 5,
        }
    }

    /// The event types the model reads.
    #[must_use]
    pub const fn event_types(self) -> &'static [&'static str] {
        match self {
            Self::AvailableSeats => AVAILABLE_SEATS_EVENTS,
            Self::SalesAnalytics => SALES_ANALYTICS_EVENTS,
            Self::CustomerHistory => CUSTOMER_HISTORY_EVENTS,
            Self::CustomerTickets => CUSTOMER_TICKETS_EVENTS,
            Self::GateCheckins => GATE_CHECKINS_EVENTS,
            Self::DailySales => DAILY_SALES_EVENTS,
        }
    }
}

/// The six read models in the `PostgreSQL` database of `pool` (tables created by the embedded
/// migrations, see `PostgresEventStore::migrate`). Queries have the same names and answers as the
/// in-memory models, as `async` methods returning `Result`.
///
/// ```no_run
/// use boxoffice::event_store::{PostgresConfig, PostgresEventStore};
/// use boxoffice::projections::{PostgresReadModels, ReadModel};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresEventStore::connect("postgres://postgres@127.0.0.1/boxoffice", PostgresConfig::default()).await?;
/// store.migrate().await?;
/// let models = PostgresReadModels::new(store.pool().clone());
/// for model in ReadModel::ALL {
///     models.catch_up(&store, model, 1_000).await?;
/// }
/// let revenue = models.get_total_revenue_all_events().await?;
/// # let _ = revenue; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresReadModels {
    pub(super) pool: PgPool,
    /// Positions committed through this handle (and its clones), one per model, for
    /// [`wait_for_position`](Self::wait_for_position).
    applied: Arc<[watch::Sender<u64>; MODELS]>,
    /// How each model's live follow is doing.
    status: Arc<[watch::Sender<FollowStatus>; MODELS]>,
}

pub(super) fn db(model: ReadModel) -> impl Fn(sqlx::Error) -> ProjectionError {
    move |source| ProjectionError::Database { projection: model.name().to_owned(), source }
}

pub(super) fn corrupt(
    model: ReadModel,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> ProjectionError {
    ProjectionError::Corrupt { projection: model.name().to_owned(), source: source.into() }
}

pub(super) fn to_i64(model: ReadModel, value: u64) -> Result<i64, ProjectionError> {
    i64::try_from(value).map_err(|_| corrupt(model, format!("{value} does not fit a bigint")))
}

pub(super) fn to_u64(model: ReadModel, value: i64) -> Result<u64, ProjectionError> {
    u64::try_from(value).map_err(|_| corrupt(model, format!("negative count {value}")))
}

pub(super) fn section(model: ReadModel, name: String) -> Result<SectionName, ProjectionError> {
    SectionName::new(name).map_err(|e| corrupt(model, e))
}

pub(super) fn money(model: ReadModel, minor: i64, currency: &str) -> Result<Money, ProjectionError> {
    Ok(Money::new(minor, Currency::new(currency).map_err(|e| corrupt(model, e))?))
}

/// A money sum stored as `numeric` and read as text (`column::text`).
pub(super) fn money_total(model: ReadModel, minor: &str, currency: &str) -> Result<MoneyTotal, ProjectionError> {
    let minor: i128 = minor.parse().map_err(|e| corrupt(model, e))?;
    Ok(MoneyTotal::new(minor, Currency::new(currency).map_err(|e| corrupt(model, e))?))
}

impl PostgresReadModels {
    /// Read models in the database of `pool`.
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            applied: Arc::new(std::array::from_fn(|_| watch::Sender::new(0))),
            status: Arc::new(std::array::from_fn(|_| watch::Sender::new(FollowStatus::default()))),
        }
    }

    fn applied(&self, model: ReadModel) -> &watch::Sender<u64> {
        &self.applied[model.index()]
    }

    /// Waits until `model` has committed everything up to `position` (read-your-writes). Checks
    /// the database once, then waits for batches committed through this handle or its clones,
    /// woken by them rather than by polling.
    ///
    /// # Errors
    /// [`ProjectionError::Timeout`] when `timeout` passes first, or [`ProjectionError::Database`].
    pub async fn wait_for_position(
        &self,
        model: ReadModel,
        position: u64,
        timeout: std::time::Duration,
    ) -> Result<(), ProjectionError> {
        let mut applied = self.applied(model).subscribe();
        let stored = self.position(model).await?;
        if stored >= position {
            return Ok(());
        }
        let reached = tokio::time::timeout(timeout, applied.wait_for(|p| *p >= position)).await.map(|r| r.is_ok());
        if matches!(reached, Ok(true)) {
            return Ok(());
        }
        let reached = (*self.applied(model).borrow()).max(stored);
        let cause = self.status_sender(model).borrow().trouble();
        Err(ProjectionError::Timeout { projection: model.name().to_owned(), position, reached, timeout, cause })
    }

    /// The global position `model` has applied.
    ///
    /// # Errors
    /// [`ProjectionError::Database`].
    pub async fn position(&self, model: ReadModel) -> Result<u64, ProjectionError> {
        let position: Option<i64> = sqlx::query_scalar("SELECT position FROM checkpoints WHERE name = $1")
            .bind(model.name())
            .fetch_optional(&self.pool)
            .await
            .map_err(db(model))?;
        to_u64(model, position.unwrap_or(0))
    }

    /// Applies `batch` to `model` and moves its checkpoint, in one transaction. Events at or below
    /// the checkpoint are skipped. Returns the new position.
    ///
    /// # Errors
    /// [`ProjectionError::Decode`] for an event that does not parse, [`ProjectionError::Database`]
    /// (including bigint overflow); nothing is written then.
    pub async fn apply_batch(&self, model: ReadModel, batch: &[Envelope]) -> Result<u64, ProjectionError> {
        let span = tracing::debug_span!("projection_batch", projection = model.name(), events = batch.len());
        async {
            let mut tx = self.pool.begin().await.map_err(db(model))?;
            let last = apply_in(&mut tx, model, batch).await?;
            tx.commit().await.map_err(db(model))?;
            self.published(model, last);
            Ok(last)
        }
        .instrument(span)
        .await
    }

    /// Moves `model`'s checkpoint to `position` (if it is behind) without applying anything: the
    /// event there was quarantined.
    async fn skip_to(&self, model: ReadModel, position: u64) -> Result<(), ProjectionError> {
        sqlx::query(
            "INSERT INTO checkpoints (name, position) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE \
             SET position = greatest(checkpoints.position, excluded.position), updated_at = now()",
        )
        .bind(model.name())
        .bind(to_i64(model, position)?)
        .execute(&self.pool)
        .await
        .map_err(db(model))?;
        self.published(model, position);
        Ok(())
    }

    fn published(&self, model: ReadModel, position: u64) {
        self.applied(model).send_if_modified(|p| {
            let moved = position > *p;
            *p = (*p).max(position);
            moved
        });
    }

    /// Rebuilds `model` from the start of the log in one transaction: its rows are deleted and
    /// refolded, `batch_size` events per read, and the result becomes visible in one commit.
    /// Meanwhile readers keep getting the old rows (`PostgreSQL` shows them the last committed
    /// state), and a live [`follow`](Self::follow) of the same model waits on the checkpoint row,
    /// then skips what the rebuild covered. Returns the position reached.
    ///
    /// # Errors
    /// As [`apply_batch`](Self::apply_batch) (a bad event included: a rebuild does not
    /// quarantine, it fails naming the event); nothing changes then.
    pub async fn rebuild(
        &self,
        store: &dyn EventStore,
        model: ReadModel,
        batch_size: usize,
    ) -> Result<u64, ProjectionError> {
        let span = tracing::info_span!("projection_rebuild", projection = model.name());
        self.rebuild_in_one_transaction(store, model, batch_size).instrument(span).await
    }

    async fn rebuild_in_one_transaction(
        &self,
        store: &dyn EventStore,
        model: ReadModel,
        batch_size: usize,
    ) -> Result<u64, ProjectionError> {
        let mut tx = self.pool.begin().await.map_err(db(model))?;
        delete_rows(&mut tx, model).await?;
        let mut position = 0;
        loop {
            let batch = store
                .read_all(position, batch_size.max(1))
                .await
                .map_err(|source| ProjectionError::EventStore { projection: model.name().to_owned(), source })?;
            if batch.is_empty() {
                break;
            }
            position = apply_in(&mut tx, model, &batch).await?;
        }
        tx.commit().await.map_err(db(model))?;
        self.published(model, position);
        Ok(position)
    }

    /// Applies everything the log holds beyond `model`'s checkpoint, `batch_size` events per
    /// transaction. Returns the position reached.
    ///
    /// # Errors
    /// As [`apply_batch`](Self::apply_batch), or [`ProjectionError::EventStore`].
    pub async fn catch_up(
        &self,
        store: &dyn EventStore,
        model: ReadModel,
        batch_size: usize,
    ) -> Result<u64, ProjectionError> {
        let mut position = self.position(model).await?;
        loop {
            let batch = store
                .read_all(position, batch_size.max(1))
                .await
                .map_err(|source| ProjectionError::EventStore { projection: model.name().to_owned(), source })?;
            if batch.is_empty() {
                return Ok(position);
            }
            position = self.apply_batch(model, &batch).await?;
        }
    }

    /// Follows the log live from `model`'s checkpoint with the event store's
    /// [`follow`](crate::event_store::follow), applying what is ready in batches of at most
    /// `batch_size` (each committed with the checkpoint in one transaction), until `stop` turns
    /// true (or its sender is dropped). A failed batch is retried with the default
    /// [`RetryPolicy`]; an event the model can never apply is quarantined or halts the model, by
    /// `bad_events`. [`status`](Self::status) shows how it is going.
    ///
    /// Of the processes that follow the same model on the same database, one feeds it at a
    /// time: the one holding the model's feeding lease, a session advisory lock on a connection
    /// of its own (released when the follow ends or that connection dies, so a crashed feeder's
    /// lease passes on by itself). The others stand by: they read the model's checkpoint every
    /// 100 ms (so their [`wait_for_position`](Self::wait_for_position) and status see the
    /// feeder's progress) and try for the lease every second. Each batch still commits with
    /// the checkpoint it was checked against, so two feeders at once (a lease lost with its
    /// connection) apply nothing twice either.
    ///
    /// # Errors
    /// [`ProjectionError::Halted`] with the failure it was retrying when stopped.
    pub async fn follow(
        &self,
        store: Arc<dyn EventStore>,
        model: ReadModel,
        batch_size: usize,
        bad_events: BadEventPolicy,
        stop: watch::Receiver<bool>,
    ) -> Result<(), ProjectionError> {
        let Some(lease) = self.stand_by(model, stop.clone()).await else { return Ok(()) };
        let config = FollowConfig { max_batch: batch_size.max(1), retry: RetryPolicy::default(), bad_events };
        let mut tables = Tables { models: self.clone(), model };
        let span = tracing::info_span!("projection_follow", projection = model.name());
        let outcome = follow(&*store, &mut tables, &config, stop, self.status_sender(model))
            .instrument(span)
            .await
            .map(|_| ())
            .map_err(|source| ProjectionError::Halted { projection: model.name().to_owned(), source });
        if let Err(error) = sqlx::Connection::close(lease).await {
            tracing::debug!(%error, projection = model.name(), "closing the feeding lease's connection");
        }
        outcome
    }

    /// Waits until this handle holds `model`'s feeding lease and returns the connection that
    /// holds it (`None` once `stop` turns true); meanwhile publishes the model's stored position.
    async fn stand_by(&self, model: ReadModel, mut stop: watch::Receiver<bool>) -> Option<PgConnection> {
        let mut polls = 0_u32;
        loop {
            if polls % LEASE_TRIES_EVERY == 0 {
                match self.try_lease(model).await {
                    Ok(Some(lease)) => return Some(lease),
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, projection = model.name(), "cannot ask for the feeding lease"),
                }
            }
            polls = polls.wrapping_add(1);
            match self.position(model).await {
                Ok(position) => {
                    // The status first: a wait woken by `published` then finds it current.
                    self.status_sender(model).send_if_modified(|status| {
                        let moved = position > status.position;
                        status.position = status.position.max(position);
                        moved
                    });
                    self.published(model, position);
                }
                Err(error) => tracing::warn!(%error, projection = model.name(), "cannot read the model's checkpoint"),
            }
            tokio::select! {
                () = tokio::time::sleep(STANDBY_POLL) => {}
                _ = stop.wait_for(|stop| *stop) => return None,
            }
        }
    }

    /// Takes `model`'s feeding lease on a connection of its own, if no other session holds it.
    async fn try_lease(&self, model: ReadModel) -> Result<Option<PgConnection>, ProjectionError> {
        let mut connection = self.pool.acquire().await.map_err(db(model))?;
        // Keyed by this schema's checkpoints table (two-key form: apart from the stream locks'
        // one-key form and from the event store's shared frontier locks on its events table).
        let taken: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(('checkpoints'::regclass::oid::bigint % 2147483647)::int4, $1)",
        )
        .bind(i32::try_from(model.index()).unwrap_or(i32::MAX))
        .fetch_one(&mut *connection)
        .await
        .map_err(db(model))?;
        // The lock belongs to this session: its connection leaves the pool while it holds it.
        Ok(taken.then(|| connection.detach()))
    }

    /// How the live [`follow`](Self::follow) of `model` through this handle (or a clone) is
    /// doing: position, retries, and the failure it is retrying, if any.
    #[must_use]
    pub fn status(&self, model: ReadModel) -> watch::Receiver<FollowStatus> {
        self.status_sender(model).subscribe()
    }

    fn status_sender(&self, model: ReadModel) -> &watch::Sender<FollowStatus> {
        &self.status[model.index()]
    }

    /// Deletes `model`'s rows and sets its checkpoint back to 0, in one transaction.
    ///
    /// # Errors
    /// [`ProjectionError::Database`].
    pub async fn reset(&self, model: ReadModel) -> Result<(), ProjectionError> {
        let mut tx = self.pool.begin().await.map_err(db(model))?;
        delete_rows(&mut tx, model).await?;
        tx.commit().await.map_err(db(model))
    }
}

/// A model's tables as a consumer of the log: each batch and its checkpoint in one transaction.
struct Tables {
    models: PostgresReadModels,
    model: ReadModel,
}

#[async_trait]
impl LogConsumer for Tables {
    type Error = ProjectionError;

    fn name(&self) -> &str {
        self.model.name()
    }

    async fn start_position(&mut self) -> Result<u64, ProjectionError> {
        self.models.position(self.model).await
    }

    async fn handle(&mut self, batch: &[Envelope]) -> Result<(), ProjectionError> {
        self.models.apply_batch(self.model, batch).await.map(|_| ())
    }

    fn bad_event(&self, error: &ProjectionError) -> Option<u64> {
        error.bad_event_position()
    }

    async fn skip(&mut self, position: u64) -> Result<(), ProjectionError> {
        self.models.skip_to(self.model, position).await
    }
}

/// Applies `batch` to `model` inside `tx`, moving its checkpoint; returns the position reached.
async fn apply_in(tx: &mut PgConnection, model: ReadModel, batch: &[Envelope]) -> Result<u64, ProjectionError> {
    let position = to_u64(model, lock_checkpoint(tx, model).await?)?;
    let fresh: Vec<&Envelope> = batch.iter().filter(|e| e.global_position > position).collect();
    let Some(last) = fresh.last().map(|e| e.global_position) else { return Ok(position) };
    let mut actions = Vec::with_capacity(fresh.len());
    for envelope in fresh {
        if model.event_types().contains(&&*envelope.event_type) && reads_payload(envelope) {
            actions.push((envelope.global_position, decode_ticketing(model.name(), envelope)?));
        }
    }
    match model {
        ReadModel::AvailableSeats => super::seats::apply(tx, &actions).await?,
        ReadModel::SalesAnalytics => super::sales::apply(tx, &actions).await?,
        ReadModel::CustomerHistory => super::customers::apply(tx, &actions).await?,
        ReadModel::CustomerTickets => super::tickets::apply(tx, &actions).await?,
        ReadModel::GateCheckins => super::gates::apply(tx, &actions).await?,
        ReadModel::DailySales => super::daily::apply(tx, &actions).await?,
    }
    sqlx::query("UPDATE checkpoints SET position = $2, updated_at = now() WHERE name = $1")
        .bind(model.name())
        .bind(to_i64(model, last)?)
        .execute(&mut *tx)
        .await
        .map_err(db(model))?;
    Ok(last)
}

/// Locks `model`'s checkpoint row inside `tx` (creating it at 0 the first time) and returns its
/// position: one round trip once the row exists.
async fn lock_checkpoint(tx: &mut PgConnection, model: ReadModel) -> Result<i64, ProjectionError> {
    let locked = || {
        sqlx::query_scalar::<_, i64>("SELECT position FROM checkpoints WHERE name = $1 FOR UPDATE").bind(model.name())
    };
    if let Some(position) = locked().fetch_optional(&mut *tx).await.map_err(db(model))? {
        return Ok(position);
    }
    sqlx::query("INSERT INTO checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING")
        .bind(model.name())
        .execute(&mut *tx)
        .await
        .map_err(db(model))?;
    locked().fetch_one(&mut *tx).await.map_err(db(model))
}

/// Deletes `model`'s rows and its checkpoint inside `tx`.
async fn delete_rows(tx: &mut PgConnection, model: ReadModel) -> Result<(), ProjectionError> {
    let statements: &[&str] = match model {
        ReadModel::AvailableSeats => &["DELETE FROM rm_seats", "DELETE FROM rm_sections"],
        ReadModel::SalesAnalytics => &[
            "DELETE FROM rm_section_sales",
            "DELETE FROM rm_event_sales",
            "DELETE FROM rm_reservations WHERE model = 'sales-analytics'",
            "DELETE FROM rm_refund_splits",
        ],
        ReadModel::CustomerHistory => &[
            "DELETE FROM rm_purchases",
            "DELETE FROM rm_customer_spent",
            "DELETE FROM rm_reservations WHERE model = 'customer-history'",
        ],
        ReadModel::CustomerTickets => &[
            "DELETE FROM rm_held_tickets",
            "DELETE FROM rm_orders",
            "DELETE FROM rm_reservations WHERE model = 'customer-tickets'",
        ],
        ReadModel::GateCheckins => &["DELETE FROM rm_gate_checkins", "DELETE FROM rm_gate_reservations"],
        ReadModel::DailySales => {
            &["DELETE FROM rm_daily_sales", "DELETE FROM rm_reservations WHERE model = 'daily-sales'"]
        }
    };
    for statement in statements {
        sqlx::query(statement).execute(&mut *tx).await.map_err(db(model))?;
    }
    sqlx::query("DELETE FROM checkpoints WHERE name = $1")
        .bind(model.name())
        .execute(&mut *tx)
        .await
        .map_err(db(model))?;
    Ok(())
}

/// One row of `rm_reservations`: reservation, event, section, customer, quantity, total in minor
/// units, currency, and the sections' parts of an order of several sections as JSON.
type FactsRow = (Uuid, Uuid, String, Uuid, i32, i64, String, Option<String>);

/// Reservation facts for a batch: those stored by earlier batches (fetched in one query) plus those
/// the batch itself starts.
pub(super) async fn facts_for(
    conn: &mut PgConnection,
    model: ReadModel,
    actions: &[(u64, TicketingAction)],
) -> Result<HashMap<ReservationId, ReservationFacts>, ProjectionError> {
    let started: HashSet<ReservationId> =
        actions.iter().filter_map(|(_, a)| ReservationFacts::from_action(a)).map(|f| f.reservation_id).collect();
    let wanted: Vec<Uuid> = actions
        .iter()
        .filter_map(|(_, a)| reservation_of(a))
        .filter(|id| !started.contains(id))
        .map(|id| id.as_uuid())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut facts = HashMap::new();
    if wanted.is_empty() {
        return Ok(facts);
    }
    let rows: Vec<FactsRow> = sqlx::query_as(
        "SELECT reservation_id, event_id, section, customer_id, quantity, total_minor, currency, lines \
         FROM rm_reservations WHERE model = $1 AND reservation_id = ANY($2)",
    )
    .bind(model.name())
    .bind(&wanted)
    .fetch_all(&mut *conn)
    .await
    .map_err(db(model))?;
    for (reservation_id, event_id, name, customer_id, quantity, total, currency, lines) in rows {
        let f = ReservationFacts {
            reservation_id: ReservationId::from_uuid(reservation_id),
            event_id: EventId::from_uuid(event_id),
            section: section(model, name)?,
            customer_id: CustomerId::from_uuid(customer_id),
            quantity: u32::try_from(quantity).map_err(|_| corrupt(model, "negative quantity"))?,
            total: money(model, total, &currency)?,
            lines: match lines {
                Some(json) => serde_json::from_str(&json).map_err(|e| corrupt(model, e))?,
                None => Vec::new(),
            },
        };
        facts.insert(f.reservation_id, f);
    }
    Ok(facts)
}

fn reservation_of(action: &TicketingAction) -> Option<ReservationId> {
    match action {
        TicketingAction::Reservation(a) => a.reservation_id(),
        TicketingAction::Payment(
            crate::aggregates::PaymentAction::PaymentSucceeded { reservation_id, .. }
            | crate::aggregates::PaymentAction::PaymentRefunded { reservation_id, .. },
        ) => Some(*reservation_id),
        _ => None,
    }
}

/// Stores the facts of reservations started in this batch.
pub(super) async fn store_facts(
    conn: &mut PgConnection,
    model: ReadModel,
    started: &[ReservationFacts],
) -> Result<(), ProjectionError> {
    if started.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = started.iter().map(|f| f.reservation_id.as_uuid()).collect();
    let events: Vec<Uuid> = started.iter().map(|f| f.event_id.as_uuid()).collect();
    let sections: Vec<String> = started.iter().map(|f| f.section.as_str().to_owned()).collect();
    let customers: Vec<Uuid> = started.iter().map(|f| f.customer_id.as_uuid()).collect();
    let quantities: Vec<i32> = started.iter().map(|f| i32::try_from(f.quantity).unwrap_or(i32::MAX)).collect();
    let totals: Vec<i64> = started.iter().map(|f| f.total.minor_units()).collect();
    let currencies: Vec<String> = started.iter().map(|f| f.total.currency().as_str().to_owned()).collect();
    // The sections' parts of an order of several sections, as JSON; NULL for one section.
    let lines: Vec<Option<String>> = started
        .iter()
        .map(|f| (!f.lines.is_empty()).then(|| serde_json::to_string(&f.lines)).transpose())
        .collect::<Result<_, _>>()
        .map_err(|e| corrupt(model, e))?;
    sqlx::query(
        "INSERT INTO rm_reservations (model, reservation_id, event_id, section, customer_id, quantity, total_minor, currency, lines) \
         SELECT $1, * FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::uuid[], $6::int[], $7::bigint[], $8::text[], $9::text[]) \
         ON CONFLICT (model, reservation_id) DO NOTHING",
    )
    .bind(model.name())
    .bind(&ids)
    .bind(&events)
    .bind(&sections)
    .bind(&customers)
    .bind(&quantities)
    .bind(&totals)
    .bind(&currencies)
    .bind(&lines)
    .execute(&mut *conn)
    .await
    .map_err(db(model))?;
    Ok(())
}
