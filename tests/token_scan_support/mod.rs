//! Invariant I13, "no payment token at rest": the customer's payment token goes to the payment
//! gateway from memory and nowhere else. The scenario here pays with a fresh unique token every
//! time (approved, declined, answer lost then reconciled, in flight when its system stopped,
//! paid in the next system over the same storage, a partial refund, enough sales on one section
//! for engine snapshots), and the scanners look for every token in each place the system writes
//! to: the event log, snapshots, read models, the bus, tracing output and error messages. Each
//! scanner must also find a known canary (the event's name and section name, payment ids in the
//! traces), so a scanner that reads nothing cannot pass. `tests/token_scan.rs` runs it in memory,
//! `tests/token_scan_postgres.rs` against `PostgreSQL` and Kafka.
#![allow(dead_code)] // each test binary uses the parts for its own backend

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use boxoffice::aggregates::PaymentStatus;
use boxoffice::domain::{PaymentId, RefundId};
use boxoffice::event_bus::{EventBus, TopicRouter};
use boxoffice::event_store::{CheckpointStore, Envelope, EventStore, StreamId};
use boxoffice::prelude::*;
use boxoffice::system::{
    ChargeStatus, EngineConfig, EventSpec, GatewayOutcome, HeldSeats, PaymentDetails, ReadModelStorage, RefundRequest,
    ReserveRequest, SystemError, TicketingSystem,
};
use chrono::{TimeZone, Utc};
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// Where the scanned text came from.
pub const LOG: &str = "event log";
pub const SNAPSHOTS: &str = "snapshots";
pub const READ_MODELS: &str = "read-model answers";
pub const REPLIES: &str = "replies and aggregate state";
pub const ERRORS: &str = "error messages and Debug output";
pub const TRACES: &str = "tracing output";
pub const BUS: &str = "event bus";
pub const TABLES: &str = "PostgreSQL tables";
pub const KAFKA: &str = "Kafka topics";

/// The saga's snapshot of open holds (`saga-holds-{checkpoint name}`, default checkpoint name).
pub const SAGA_HOLDS: &str = "saga-holds-boxoffice-saga";

const WAIT: Duration = Duration::from_secs(90);

// ------------------------------------------------------------------------------------------------
// Trace capture
// ------------------------------------------------------------------------------------------------

/// Everything a `tracing` fmt subscriber wrote, kept in memory.
#[derive(Clone, Default)]
pub struct TraceBuffer(Arc<Mutex<Vec<u8>>>);

impl TraceBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl std::io::Write for TraceBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for TraceBuffer {
    type Writer = TraceBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs, as the process-wide default (every runtime thread), a fmt subscriber at TRACE for
/// every target, with span open/close events and their fields, writing into the returned buffer.
/// `log` records (sqlx, rdkafka) are bridged in too. One test per binary: panics when a global
/// subscriber is already set.
pub fn capture_traces() -> TraceBuffer {
    use tracing_subscriber::util::SubscriberInitExt;
    let buffer = TraceBuffer::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(buffer.clone())
        .finish()
        .try_init()
        .unwrap_or_else(|e| panic!("cannot install the capturing subscriber (one test per binary): {e}"));
    buffer
}

// ------------------------------------------------------------------------------------------------
// A gateway that remembers the tokens it was given
// ------------------------------------------------------------------------------------------------

/// Delegates to a [`SimulatedGateway`] and records every token a charge was made with, so the
/// test knows the tokens really reached the gateway. Its `Debug` shows no token.
#[derive(Default)]
pub struct RecordingGateway {
    pub inner: SimulatedGateway,
    tokens: Mutex<Vec<String>>,
}

impl RecordingGateway {
    pub fn tokens(&self) -> Vec<String> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl std::fmt::Debug for RecordingGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingGateway").field("charges_seen", &self.tokens().len()).finish_non_exhaustive()
    }
}

#[async_trait]
impl PaymentGateway for RecordingGateway {
    async fn charge(&self, payment_id: PaymentId, amount: Money, token: &SecretString) -> GatewayOutcome {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner).push(token.expose_secret().to_owned());
        self.inner.charge(payment_id, amount, token).await
    }

    async fn refund(&self, payment_id: PaymentId, refund_id: RefundId, amount: Money) -> GatewayOutcome {
        self.inner.refund(payment_id, refund_id, amount).await
    }

    async fn status(&self, payment_id: PaymentId) -> ChargeStatus {
        self.inner.status(payment_id).await
    }
}

// ------------------------------------------------------------------------------------------------
// The scanner
// ------------------------------------------------------------------------------------------------

/// Looks for every token (and the forms it could be stored in) in every text it is given, and
/// checks the expected canaries turn up in their media.
pub struct Scanner {
    /// (token, forms searched for): the token's unique hex part and the hex of its bytes.
    tokens: Vec<(String, Vec<String>)>,
    /// (medium, needle) that must be found in that medium.
    expected: BTreeSet<(String, String)>,
    hits: HashSet<(String, String)>,
    findings: Vec<String>,
    /// Per medium: texts and bytes scanned.
    scanned: BTreeMap<String, (usize, usize)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Up to 120 bytes either side of `text[at..at + len]`, on character boundaries.
fn excerpt(text: &str, at: usize, len: usize) -> &str {
    let mut from = at.saturating_sub(120);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (at + len + 120).min(text.len());
    while !text.is_char_boundary(to) {
        to += 1;
    }
    &text[from..to]
}

impl Scanner {
    pub fn new(tokens: &[String]) -> Self {
        let tokens = tokens
            .iter()
            .map(|token| {
                let unique = token.rsplit('_').next().unwrap_or(token).to_owned();
                assert!(unique.len() >= 32, "tokens must end in a unique hex part: {token}");
                (token.clone(), vec![unique, hex(token.as_bytes())])
            })
            .collect();
        Self { tokens, expected: BTreeSet::new(), hits: HashSet::new(), findings: Vec::new(), scanned: BTreeMap::new() }
    }

    /// `needle` must turn up somewhere in `medium`.
    pub fn expect(&mut self, medium: &str, needle: impl Into<String>) {
        self.expected.insert((medium.to_owned(), needle.into()));
    }

    pub fn scan(&mut self, medium: &str, place: &str, text: &str) {
        let entry = self.scanned.entry(medium.to_owned()).or_default();
        entry.0 += 1;
        entry.1 += text.len();
        for (token, forms) in &self.tokens {
            for form in forms {
                if let Some(at) = text.find(form.as_str()) {
                    let excerpt = excerpt(text, at, form.len());
                    self.findings.push(format!("{medium} / {place}: token {token} (as {form:?}) in …{excerpt}…"));
                }
            }
        }
        for (m, needle) in &self.expected {
            if m == medium && text.contains(needle.as_str()) {
                self.hits.insert((m.clone(), needle.clone()));
            }
        }
    }

    /// Fails when a token was found anywhere, a medium in `media` was not scanned at all, or an
    /// expected canary was not found.
    pub fn assert_clean(&self, media: &[&str]) {
        for (medium, (texts, bytes)) in &self.scanned {
            eprintln!("scanned {medium}: {texts} texts, {bytes} bytes");
        }
        assert!(
            self.findings.is_empty(),
            "PAYMENT TOKEN AT REST ({} findings):\n{}",
            self.findings.len(),
            self.findings.join("\n")
        );
        for medium in media {
            let (texts, bytes) = self.scanned.get(*medium).copied().unwrap_or_default();
            assert!(texts > 0 && bytes > 0, "nothing was scanned in {medium}");
        }
        let missed: Vec<_> = self.expected.iter().filter(|e| !self.hits.contains(*e)).collect();
        assert!(missed.is_empty(), "the scanners did not see these canaries, so they cannot be trusted: {missed:?}");
    }
}

// ------------------------------------------------------------------------------------------------
// The scenario
// ------------------------------------------------------------------------------------------------

/// Storage that outlives a system, so a second system can start over it.
#[derive(Clone)]
pub struct Setup {
    pub store: Arc<dyn EventStore>,
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub read_models: ReadModelStorage,
    pub bus: Option<(Arc<dyn EventBus>, TopicRouter)>,
}

/// What the scenario did, for the scanners.
pub struct Run {
    /// A unique string in the event's name and its section's name.
    pub canary: String,
    /// Every token handed to `pay`, each unique.
    pub tokens: Vec<String>,
    /// `Display` and `Debug` of every error returned, `Debug` of every `PaymentDetails`.
    pub errors: Vec<String>,
    /// `Debug` of every reply (holds, receipts, refunds, reconciliations) and final states.
    pub replies: Vec<String>,
    /// Payment ids of charges the saga sent from its background tasks (traced there).
    pub charged: Vec<PaymentId>,
    /// The reservation whose payment was declined (named in its error).
    pub declined: Option<ReservationId>,
    pub reservations: Vec<ReservationId>,
    pub customers: Vec<CustomerId>,
    pub event: EventId,
    pub section: String,
    pub clock: FixedClock,
    pub gateway: Arc<RecordingGateway>,
    /// The second system, still running.
    pub system: TicketingSystem,
}

pub fn unique_token() -> String {
    format!("tok_secret_{}", Uuid::new_v4().simple())
}

pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
}

fn start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).single().unwrap_or_else(|| panic!("a valid start time"))
}

pub async fn system_over(setup: &Setup, clock: &FixedClock, gateway: &Arc<RecordingGateway>) -> TicketingSystem {
    let mut builder = TicketingSystem::builder()
        .event_store(Arc::clone(&setup.store))
        .checkpoints(Arc::clone(&setup.checkpoints))
        .read_models(setup.read_models.clone())
        .clock(Arc::new(clock.clone()))
        .payment_gateway(Arc::clone(gateway) as Arc<dyn PaymentGateway>)
        .engine_config(EngineConfig { snapshot_every: 5, ..EngineConfig::default() });
    if let Some((bus, topics)) = &setup.bus {
        builder = builder.event_bus(Arc::clone(bus), topics.clone());
    }
    within("building a system", builder.build()).await.unwrap_or_else(|e| panic!("cannot build the system: {e}"))
}

fn section(name: &str) -> SectionName {
    SectionName::new(name).unwrap_or_else(|e| panic!("{e}"))
}

fn spec(clock: &FixedClock, canary: &str) -> EventSpec {
    let sections = [(canary, 40), ("Box", 10)];
    EventSpec {
        name: format!("Concert {canary}"),
        venue: Venue::new(VenueId::new_v4(), "Hall").unwrap_or_else(|e| panic!("{e}")),
        date: clock.now() + chrono::Duration::days(30),
        sections: sections
            .iter()
            .map(|(name, seats)| Section {
                name: section(name),
                capacity: Capacity::new(*seats).unwrap_or_else(|e| panic!("{e}")),
            })
            .collect(),
        pricing_tiers: sections
            .iter()
            .map(|(name, _)| {
                PricingTier::new(TierKind::Regular, section(name), Money::new(2_500, Currency::EUR), None)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect(),
        policy: boxoffice::aggregates::SalesPolicy::default(),
    }
}

impl Run {
    fn details(&mut self) -> PaymentDetails {
        let token = unique_token();
        self.tokens.push(token.clone());
        let details = PaymentDetails { token: token.as_str().into() };
        self.errors.push(format!("{details:?}"));
        details
    }

    fn error(&mut self, error: &SystemError) {
        self.errors.push(error.to_string());
        self.errors.push(format!("{error:?}"));
    }

    async fn reserve(&mut self, system: &TicketingSystem, quantity: u32) -> HeldSeats {
        let customer = CustomerId::new_v4();
        self.customers.push(customer);
        let request = ReserveRequest {
            event_id: self.event,
            section: section(&self.section),
            quantity,
            customer_id: customer,
            idempotency_key: None,
        };
        let hold = within("reserve", system.reserve(request)).await.unwrap_or_else(|e| panic!("reserve: {e}"));
        self.reservations.push(hold.reservation_id);
        self.replies.push(format!("{hold:?}"));
        hold
    }

    async fn pay_ok(&mut self, system: &TicketingSystem, reservation: ReservationId) {
        let details = self.details();
        let receipt = within("pay", system.pay(reservation, details)).await.unwrap_or_else(|e| panic!("pay: {e}"));
        self.replies.push(format!("{receipt:?}"));
        self.charged.push(receipt.payment_id);
    }

    async fn pay_err(&mut self, system: &TicketingSystem, reservation: ReservationId) -> SystemError {
        let details = self.details();
        let error = match within("pay", system.pay(reservation, details)).await {
            Ok(receipt) => panic!("expected the payment to fail, got {receipt:?}"),
            Err(error) => error,
        };
        self.error(&error);
        error
    }

    async fn buy(&mut self, system: &TicketingSystem, quantity: u32) -> ReservationId {
        let hold = self.reserve(system, quantity).await;
        self.pay_ok(system, hold.reservation_id).await;
        hold.reservation_id
    }

    async fn reconcile(&mut self, system: &TicketingSystem) {
        let done = within("reconcile", system.reconcile_payments()).await.unwrap_or_else(|e| panic!("reconcile: {e}"));
        self.replies.push(format!("{done:?}"));
        within("settled", system.settled()).await.unwrap_or_else(|e| panic!("settled: {e}"));
    }

    async fn payment_status(&mut self, system: &TicketingSystem, reservation: ReservationId) -> PaymentStatus {
        let payment = within("payment", system.payment(reservation)).await.unwrap_or_else(|e| panic!("payment: {e}"));
        self.replies.push(format!("{payment:?}"));
        payment.unwrap_or_else(|| panic!("no payment for {reservation}")).status
    }
}

/// Runs the whole scenario over `setup` and returns what it did, with the second system running.
pub async fn run_scenario(setup: &Setup) -> Run {
    let clock = FixedClock::new(start());
    let gateway = Arc::new(RecordingGateway::default());
    let canary = format!("canary_{}", Uuid::new_v4().simple());
    let first = system_over(setup, &clock, &gateway).await;
    let event =
        within("create event", first.create_event(spec(&clock, &canary))).await.unwrap_or_else(|e| panic!("{e}"));
    within("publish event", first.publish_event(event)).await.unwrap_or_else(|e| panic!("{e}"));
    within("open sales", first.open_sales(event)).await.unwrap_or_else(|e| panic!("{e}"));
    let mut run = Run {
        canary: canary.clone(),
        tokens: Vec::new(),
        errors: Vec::new(),
        replies: Vec::new(),
        charged: Vec::new(),
        declined: None,
        reservations: Vec::new(),
        customers: Vec::new(),
        event,
        section: canary,
        clock: clock.clone(),
        gateway: Arc::clone(&gateway),
        system: first.clone(),
    };
    first_system(&mut run, &first).await;
    within("settled", first.settled()).await.unwrap_or_else(|e| panic!("settled: {e}"));
    within("shutdown", first.shutdown()).await;
    drop(first);

    let second = system_over(setup, &clock, &gateway).await;
    run.system = second.clone();
    second_system(&mut run, &second).await;
    within("settled", second.settled()).await.unwrap_or_else(|e| panic!("settled: {e}"));
    if let Some(mut published) = second.published_position() {
        let head = within("head", setup.store.head_position()).await.unwrap_or_else(|e| panic!("{e}"));
        within("relay reaching the head", published.wait_for(|p| *p >= head))
            .await
            .unwrap_or_else(|e| panic!("relay stopped: {e}"));
    }
    check_gateway_saw_every_token(&run);
    run
}

/// Approved purchases (enough for snapshots), a decline, a lost answer settled by
/// reconciliation, a partial refund, then a hold left unpaid and a charge whose call never
/// reached the provider, both left for the next system.
async fn first_system(run: &mut Run, system: &TicketingSystem) {
    let mut bought = Vec::new();
    for n in 0..6 {
        bought.push(run.buy(system, 1 + n % 2).await);
    }

    run.gateway.inner.add_failures(1);
    let hold = run.reserve(system, 2).await;
    let declined = run.pay_err(system, hold.reservation_id).await;
    assert!(matches!(declined, SystemError::PaymentDeclined { .. }), "{declined:?}");
    run.declined = Some(hold.reservation_id);

    run.gateway.inner.lose_next_answers(1);
    let lost = run.reserve(system, 1).await;
    let pending = run.pay_err(system, lost.reservation_id).await;
    assert!(matches!(pending, SystemError::PaymentPending { .. }), "{pending:?}");
    run.charged.push(PaymentId::for_reservation(lost.reservation_id));
    run.clock.advance(Duration::from_secs(61));
    run.reconcile(system).await;
    assert_eq!(run.payment_status(system, lost.reservation_id).await, PaymentStatus::Succeeded);

    let refund = RefundRequest {
        reservation_id: bought[0],
        amount: Some(Money::new(1_000, Currency::EUR)),
        reason: "partial refund asked by the customer".into(),
        idempotency_key: Some("partial-1".into()),
    };
    let refunded = within("refund", system.refund(refund)).await.unwrap_or_else(|e| panic!("refund: {e}"));
    assert_eq!(refunded.status, boxoffice::aggregates::RefundStatus::Refunded, "{refunded:?}");
    run.replies.push(format!("{refunded:?}"));

    // Left for the next system: a hold to pay there, and a charge in flight when this one stops.
    run.reserve(system, 2).await;
    run.gateway.inner.unreachable_next(1);
    let in_flight = run.reserve(system, 1).await;
    let pending = run.pay_err(system, in_flight.reservation_id).await;
    assert!(matches!(pending, SystemError::PaymentPending { .. }), "{pending:?}");
}

/// The next system over the same storage settles the charge left in flight, is paid for the
/// hold taken before the restart, and sells more.
async fn second_system(run: &mut Run, system: &TicketingSystem) {
    within("settled", system.settled()).await.unwrap_or_else(|e| panic!("settled: {e}"));
    let n = run.reservations.len();
    let (left_hold, in_flight) = (run.reservations[n - 2], run.reservations[n - 1]);
    run.clock.advance(Duration::from_secs(61));
    run.reconcile(system).await;
    let settled = run.payment_status(system, in_flight).await;
    assert!(!settled.is_undecided(), "the charge left in flight was settled: {settled:?}");

    run.pay_ok(system, left_hold).await;
    for _ in 0..2 {
        run.buy(system, 1).await;
    }
    within("settled", system.settled()).await.unwrap_or_else(|e| panic!("settled: {e}"));
    for reservation in run.reservations.clone() {
        let state = within("reservation", system.reservation(reservation)).await.unwrap_or_else(|e| panic!("{e}"));
        run.replies.push(format!("{state:?}"));
        let payment = within("payment", system.payment(reservation)).await.unwrap_or_else(|e| panic!("{e}"));
        run.replies.push(format!("{payment:?}"));
    }
}

fn check_gateway_saw_every_token(run: &Run) {
    let given: BTreeSet<&String> = run.tokens.iter().collect();
    assert_eq!(given.len(), run.tokens.len(), "every payment had its own token");
    let seen = run.gateway.tokens();
    let seen: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen, given, "the gateway must have been handed exactly the tokens given to pay()");
    assert!(run.tokens.len() >= 12, "{} payments", run.tokens.len());
}

// ------------------------------------------------------------------------------------------------
// Scanners shared by the backends
// ------------------------------------------------------------------------------------------------

/// The canaries every backend's scanners must find.
pub fn expect_canaries(scanner: &mut Scanner, run: &Run) {
    for medium in [LOG, SNAPSHOTS, READ_MODELS] {
        scanner.expect(medium, run.canary.clone());
    }
    // Traced by the saga's background tasks (`gateway_charge`, `charge reconciled`).
    for payment in &run.charged {
        scanner.expect(TRACES, payment.to_string());
    }
    if let Some(declined) = run.declined {
        scanner.expect(ERRORS, declined.to_string());
    }
}

/// Every event of the log, as JSON and as `Debug`. Returns the log.
pub async fn scan_log(scanner: &mut Scanner, store: &Arc<dyn EventStore>) -> Vec<Envelope> {
    let log = within("read_all", store.read_all(0, 10_000_000)).await.unwrap_or_else(|e| panic!("read_all: {e}"));
    assert!(log.len() > 50, "the scenario wrote {} events", log.len());
    for envelope in &log {
        let place = format!("{} v{} {}", envelope.stream_id, envelope.stream_version, envelope.event_type);
        let json = serde_json::to_string(envelope).unwrap_or_else(|e| panic!("{e}"));
        scanner.scan(LOG, &place, &json);
        scanner.scan(LOG, &place, &envelope.payload.to_string());
        scanner.scan(LOG, &place, &serde_json::to_string(&*envelope.metadata).unwrap_or_else(|e| panic!("{e}")));
        scanner.scan(LOG, &place, &format!("{envelope:?}"));
    }
    log
}

/// The snapshot of every stream in the log and the saga's open holds. Returns how many exist.
pub async fn scan_snapshots(scanner: &mut Scanner, store: &Arc<dyn EventStore>, log: &[Envelope]) -> usize {
    let mut streams: BTreeSet<String> = log.iter().map(|e| e.stream_id.to_string()).collect();
    streams.insert(SAGA_HOLDS.to_owned());
    let mut found = 0;
    for stream in streams {
        let id = StreamId::new(stream.clone()).unwrap_or_else(|e| panic!("{e}"));
        let snapshot = within("load_snapshot", store.load_snapshot(&id)).await.unwrap_or_else(|e| panic!("{e}"));
        if let Some(snapshot) = snapshot {
            found += 1;
            scanner.scan(SNAPSHOTS, &stream, &snapshot.state);
            scanner.scan(SNAPSHOTS, &stream, &format!("{snapshot:?}"));
        }
    }
    assert!(found > 1, "snapshot_every = 5 must have left snapshots, found {found}");
    found
}

/// Everything the three read models answer about the scenario's event and customers.
pub async fn scan_read_models(scanner: &mut Scanner, run: &Run) {
    let system = &run.system;
    let (seats, sales, history) = (
        system.available_seats().unwrap_or_else(|e| panic!("{e}")),
        system.sales_analytics().unwrap_or_else(|e| panic!("{e}")),
        system.customer_history().unwrap_or_else(|e| panic!("{e}")),
    );
    let mut text = String::new();
    for name in [run.section.as_str(), "Box"] {
        let _ = writeln!(text, "{:?}", seats.get_availability(run.event, name).await);
    }
    let _ = writeln!(text, "{:?}", sales.get_metrics(run.event).await);
    let _ = writeln!(text, "{:?}", sales.get_total_revenue_all_events().await);
    let _ = writeln!(text, "{:?}", sales.get_most_popular_section(run.event).await);
    for customer in &run.customers {
        let _ = writeln!(text, "{:?}", history.get_customer_profile(*customer).await);
    }
    let _ = writeln!(text, "{:?}", history.get_event_attendees(run.event).await);
    let _ = writeln!(text, "{:?}", history.get_top_spenders(Currency::EUR, 100).await);
    scanner.scan(READ_MODELS, "query answers", &text);
}

/// Errors, `Debug` of payment details, replies and states, and the captured traces.
pub fn scan_memory_texts(scanner: &mut Scanner, run: &Run, traces: &TraceBuffer) {
    for (n, text) in run.errors.iter().enumerate() {
        scanner.scan(ERRORS, &format!("#{n}"), text);
    }
    for (n, text) in run.replies.iter().enumerate() {
        scanner.scan(REPLIES, &format!("#{n}"), text);
    }
    let traces = traces.text();
    assert!(traces.contains("gateway_charge"), "the saga's charge spans must be in the captured traces");
    scanner.scan(TRACES, "captured subscriber output", &traces);
}

/// Reads every message of `topics` through the bus from the beginning (a fresh group), until
/// each topic has delivered at least `expected[topic]` messages, and scans key and envelope.
pub async fn scan_bus(scanner: &mut Scanner, bus: &Arc<dyn EventBus>, expected: &HashMap<String, usize>) {
    let topics: Vec<String> = expected.keys().cloned().collect();
    let group = format!("token-scan-{}", Uuid::new_v4().simple());
    let mut deliveries = within("subscribe", bus.subscribe(&topics, &group)).await.unwrap_or_else(|e| panic!("{e}"));
    let mut seen: HashMap<String, usize> = HashMap::new();
    while expected.iter().any(|(topic, n)| seen.get(topic).copied().unwrap_or(0) < *n) {
        let delivery = within("next delivery", deliveries.next())
            .await
            .unwrap_or_else(|| panic!("the bus subscription ended"))
            .unwrap_or_else(|e| panic!("{e}"));
        *seen.entry(delivery.topic().to_owned()).or_default() += 1;
        let place = format!("{} key {}", delivery.topic(), delivery.key());
        scanner.scan(BUS, &place, delivery.key());
        scanner.scan(BUS, &place, &serde_json::to_string(delivery.envelope()).unwrap_or_else(|e| panic!("{e}")));
    }
}

/// The topic of every stream in the log, with how many events went there.
pub fn topics_of(log: &[Envelope], router: &TopicRouter) -> HashMap<String, usize> {
    let mut topics = HashMap::new();
    for envelope in log {
        *topics.entry(router.topic_for_stream(envelope.stream_id.as_str())).or_default() += 1;
    }
    topics
}
