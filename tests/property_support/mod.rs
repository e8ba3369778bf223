//! The harness of the property tests (`tests/properties.rs`, `tests/properties_postgres.rs`): one
//! shared multi-thread runtime, a scripted payment gateway, the events a case sells, the random
//! op sequences, and the driver that runs them against a fresh `TicketingSystem` through its
//! public API and records what every call answered.
#![allow(dead_code)] // each test binary uses part of the harness

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use boxoffice::aggregates::{
    GatewayOutcome, RefundStatus, Reservation, ReservationAction, Section, TicketStatus, TicketingAction, TicketingEnv,
};
use boxoffice::domain::TicketKeys;
use boxoffice::domain::{
    Capacity, Currency, CustomerId, EventId, Money, MoneyTotal, PaymentId, PricingTier, RefundId, ReservationId,
    SectionName, TierKind, Venue, VenueId,
};
use boxoffice::event_store::Envelope;
use boxoffice::framework::{Clock, FixedClock};
use boxoffice::projections::SectionAvailability;
use boxoffice::system::{
    ChargeStatus, EventSpec, HeldSeats, OrderLineRequest, OrderRequest, PaymentDetails, PaymentGateway, Receipt,
    RefundRequest, ReserveRequest, SystemError, TicketRefundRequest, TicketingSystem,
};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use secrecy::SecretString;

/// Seats of the two sections of the event on sale.
pub const CAPACITIES: [u32; 2] = [3, 5];
/// Price of a seat in each section, in euro cents.
pub const PRICES: [i64; 2] = [2_500, 10_000];
/// Reservation handles an op sequence refers to.
pub const SLOTS: usize = 3;
/// How long a hold lasts.
pub const HOLD: Duration = Duration::from_secs(60);
/// A whole case (ops, settling, reading the log) must finish within this.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// The runtime every case runs on: two workers, as many as the machine's cores.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
    })
}

pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).single().expect("valid date")
}

pub fn section(i: usize) -> SectionName {
    SectionName::new(["Stalls", "Box"][i]).unwrap()
}

/// An event `clock.now()` + a year away with one section per entry of `capacities`.
pub fn spec(clock: &FixedClock, capacities: &[u32]) -> EventSpec {
    EventSpec {
        name: "Property Fest".into(),
        venue: Venue::new(VenueId::new_v4(), "Hall").unwrap(),
        date: clock.now() + chrono::Duration::days(365),
        sections: capacities
            .iter()
            .enumerate()
            .map(|(i, seats)| Section { name: section(i), capacity: Capacity::new(*seats).unwrap() })
            .collect(),
        pricing_tiers: (0..capacities.len())
            .map(|i| {
                PricingTier::new(TierKind::Regular, section(i), Money::new(PRICES[i], Currency::EUR), None).unwrap()
            })
            .collect(),
        policy: boxoffice::aggregates::SalesPolicy::default(),
    }
}

/// What the scripted provider does with a new charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Approve,
    Decline,
    /// Takes the money but the answer is lost: `Unknown` (reconciliation finds it approved).
    ApproveAnswerLost,
    /// Never reached: nothing charged, `Unknown` (reconciliation finds it not charged).
    Unreachable,
}

/// A payment provider that answers each payment id once, from a random plan (in charge order,
/// cycling), and gives the same answer if the same payment is charged again (as providers
/// deduplicate on the payment id). Refunds of approved charges are approved.
#[derive(Debug)]
pub struct ScriptedGateway {
    plan: Vec<Answer>,
    next: AtomicUsize,
    /// Every payment charged, with whether it was approved.
    answers: Mutex<HashMap<PaymentId, bool>>,
}

impl ScriptedGateway {
    pub fn new(plan: Vec<Answer>) -> Self {
        assert!(!plan.is_empty());
        Self { plan, next: AtomicUsize::new(0), answers: Mutex::new(HashMap::new()) }
    }

    /// Every payment charged, with whether it was approved.
    pub fn answers(&self) -> HashMap<PaymentId, bool> {
        self.answers.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl PaymentGateway for ScriptedGateway {
    async fn charge(&self, payment_id: PaymentId, _amount: Money, _token: &SecretString) -> GatewayOutcome {
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(approved) = answers.get(&payment_id) {
            return if *approved {
                GatewayOutcome::Approved
            } else {
                GatewayOutcome::Declined { reason: "scripted decline".into() }
            };
        }
        let answer = self.plan[self.next.fetch_add(1, Ordering::SeqCst) % self.plan.len()];
        match answer {
            Answer::Approve => {
                answers.insert(payment_id, true);
                GatewayOutcome::Approved
            }
            Answer::Decline => {
                answers.insert(payment_id, false);
                GatewayOutcome::Declined { reason: "scripted decline".into() }
            }
            Answer::ApproveAnswerLost => {
                answers.insert(payment_id, true);
                GatewayOutcome::Unknown { reason: "scripted timeout".into() }
            }
            Answer::Unreachable => GatewayOutcome::Unknown { reason: "scripted outage".into() },
        }
    }

    async fn refund(&self, payment_id: PaymentId, _refund_id: RefundId, _amount: Money) -> GatewayOutcome {
        match self.answers.lock().unwrap_or_else(PoisonError::into_inner).get(&payment_id) {
            Some(true) => GatewayOutcome::Approved,
            _ => GatewayOutcome::Declined { reason: "no charge to refund".into() },
        }
    }

    async fn status(&self, payment_id: PaymentId) -> ChargeStatus {
        match self.answers.lock().unwrap_or_else(PoisonError::into_inner).get(&payment_id) {
            None => ChargeStatus::NotCharged,
            Some(true) => ChargeStatus::Approved,
            Some(false) => ChargeStatus::Declined { reason: "scripted decline".into() },
        }
    }
}

/// One API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `reserve` into a slot; `keyed` reserves use the slot's idempotency key and customer, so a
    /// second keyed reserve of a slot is a retry (or, with other details, a conflicting one).
    /// With `also` above zero it is a basket (`reserve_order`): `quantity` seats of `section` and
    /// `also` seats of the other section, held all or none.
    Reserve { slot: usize, section: usize, quantity: u32, also: u32, keyed: bool },
    /// `reserve` for the event that is still in Draft.
    ReserveDraft { section: usize },
    /// `pay` the slot's reservation (an unknown id when the slot is empty).
    Pay { slot: usize },
    /// `cancel_reservation` of the slot's reservation.
    Cancel { slot: usize },
    /// `refund` of the slot's reservation.
    Refund { slot: usize },
    /// `refund_tickets` of the slot's reservation: its first ticket, or (`all`) every ticket
    /// left.
    RefundTickets { slot: usize, all: bool },
    /// Moves the clock; alone, it is followed by `settled()` (the sweep expires what is due).
    Advance { seconds: u64 },
    /// One payment reconciliation pass (no grace period in these cases).
    Reconcile,
}

/// One step: a call on a settled system, or several calls issued at once.
#[derive(Debug, Clone)]
pub enum Op {
    Alone(Call),
    Burst(Vec<Call>),
}

#[derive(Debug, Clone)]
pub struct Scenario {
    /// The gateway's answers.
    pub plan: Vec<Answer>,
    pub ops: Vec<Op>,
}

fn call() -> impl Strategy<Value = Call> {
    let slot = 0..SLOTS;
    let quantity = prop_oneof![1 => Just(0u32), 6 => 1..=4u32];
    prop_oneof![
        5 => (slot.clone(), 0..CAPACITIES.len(), quantity, prop_oneof![3 => Just(0u32), 2 => 1..=2u32], any::<bool>())
            .prop_map(|(slot, section, quantity, also, keyed)| {
                // A basket's second line is never empty: a zero first line is the refusal explored.
                let also = if quantity == 0 { 0 } else { also };
                Call::Reserve { slot, section, quantity, also, keyed }
            }),
        4 => slot.clone().prop_map(|slot| Call::Pay { slot }),
        1 => slot.clone().prop_map(|slot| Call::Cancel { slot }),
        2 => slot.clone().prop_map(|slot| Call::Refund { slot }),
        2 => (slot, any::<bool>()).prop_map(|(slot, all)| Call::RefundTickets { slot, all }),
        1 => (0..CAPACITIES.len()).prop_map(|section| Call::ReserveDraft { section }),
        1 => (1..=90u64).prop_map(|seconds| Call::Advance { seconds }),
        1 => Just(Call::Reconcile),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => call().prop_map(Op::Alone),
        2 => prop::collection::vec(call(), 2..=5).prop_map(Op::Burst),
    ]
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        12 => Just(Answer::Approve),
        5 => Just(Answer::Decline),
        2 => Just(Answer::ApproveAnswerLost),
        1 => Just(Answer::Unreachable),
    ]
}

/// Up to 12 ops (bursts of up to 5 calls), gateway plans of 1-4 answers, mostly approvals, some
/// of them lost or never arriving.
pub fn scenario() -> impl Strategy<Value = Scenario> {
    (prop::collection::vec(answer(), 1..=4), prop::collection::vec(op(), 1..=12))
        .prop_map(|(plan, ops)| Scenario { plan, ops })
}

/// What a call answered.
#[derive(Debug, Clone)]
pub enum Outcome {
    Held(HeldSeats),
    /// `reserve` found too few seats (the reservation ended Compensated).
    Short(ReservationId),
    Paid(Receipt),
    /// `pay` was declined (the seats were released).
    Declined,
    /// `pay` answered that the gateway's answer is not known yet.
    Pending,
    Refunded(Money),
    /// `refund_tickets` gave back this much (zero when the payment had been refunded already).
    TicketsRefunded(Money),
    /// Cancelled, or the clock moved.
    Done,
    /// A typed refusal (see [`is_refusal`]), as text.
    Refused(String),
}

/// For a call made alone: the log head and the named reservation around it.
#[derive(Debug, Clone)]
pub struct Alone {
    pub head_before: u64,
    pub head_after: u64,
    pub reservation_before: Option<Reservation>,
    pub reservation_after: Option<Reservation>,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub call: Call,
    /// The reservation the call named or created.
    pub target: Option<ReservationId>,
    pub outcome: Outcome,
    pub alone: Option<Alone>,
    /// A keyed reserve whose key already names a reservation with other details.
    pub conflicting_retry: bool,
}

impl Record {
    /// One line for failure reports.
    pub fn brief(&self) -> String {
        let outcome = match &self.outcome {
            Outcome::Held(h) => format!("Held({} seats)", h.seats.len()),
            Outcome::Refused(e) => format!("Refused({e})"),
            other => format!("{other:?}"),
        };
        let target = self.target.map(|id| id.to_string()[..8].to_owned()).unwrap_or_default();
        format!("{}{:?} [{}] -> {}", if self.alone.is_some() { "" } else { "burst: " }, self.call, target, outcome)
    }
}

/// The refusals a caller is told about as typed errors ("nothing was changed by the call"). Any
/// other error from the API fails the case.
pub fn is_refusal(error: &SystemError) -> bool {
    matches!(
        error,
        SystemError::Invalid(_)
            | SystemError::Event(_)
            | SystemError::Inventory(_)
            | SystemError::Reservation(_)
            | SystemError::Payment(_)
            | SystemError::UnknownReservation { .. }
            | SystemError::ReservationEnded { .. }
    )
}

/// Everything a case leaves behind for the properties to check.
pub struct Trace {
    pub event: EventId,
    pub draft_event: EventId,
    /// Fresh reducer environments on the case's clock.
    pub env: TicketingEnv,
    /// The whole log, decoded.
    pub log: Vec<(Envelope, TicketingAction)>,
    pub records: Vec<Record>,
    /// `system.reservation(id)` for every reservation in the log, after settling.
    pub reservations: HashMap<ReservationId, Reservation>,
    /// The availability read model per section of the event on sale.
    pub availability: Vec<Option<SectionAvailability>>,
    /// `SalesAnalytics` revenue of the event on sale.
    pub revenue: Option<MoneyTotal>,
    /// Every payment the gateway answered, with whether it approved.
    pub charges: HashMap<PaymentId, bool>,
}

impl Trace {
    pub fn reservation_of_payment(&self, payment: PaymentId) -> Option<ReservationId> {
        self.reservations.keys().copied().find(|id| PaymentId::for_reservation(*id) == payment)
    }
}

struct Case {
    system: TicketingSystem,
    clock: FixedClock,
    event: EventId,
    draft_event: EventId,
}

fn customer(slot: usize) -> CustomerId {
    CustomerId::from_uuid(uuid::Uuid::from_u128(100 + slot as u128))
}

fn key(slot: usize) -> String {
    format!("slot-{slot}")
}

fn keyed_reservation(slot: usize) -> ReservationId {
    ReservationId::for_idempotency_key(customer(slot), &key(slot))
}

/// The lines a `Call::Reserve` asks for: `quantity` of `section`, and `also` of the other
/// section when it is a basket.
pub fn wanted_lines(s: usize, quantity: u32, also: u32) -> Vec<(SectionName, u32)> {
    let mut lines = vec![(section(s), quantity)];
    if also > 0 {
        lines.push((section(1 - s), also));
    }
    lines
}

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

/// An error that is not a typed refusal fails the case.
fn refused(call: &Call, error: &SystemError) -> Result<Outcome, TestCaseError> {
    if is_refusal(error) {
        Ok(Outcome::Refused(error.to_string()))
    } else {
        Err(fail(format!("{call:?} failed: {error:?}")))
    }
}

/// A `Call::Reserve` of `(slot, section, quantity, also)`.
async fn reserve(
    case: &Case,
    call: &Call,
    (slot, s, quantity, also): (usize, usize, u32, u32),
    keyed: bool,
) -> Result<(Option<ReservationId>, Outcome), TestCaseError> {
    let system = &case.system;
    let lines = wanted_lines(s, quantity, also)
        .into_iter()
        .map(|(section, quantity)| OrderLineRequest { section, quantity, tier: None })
        .collect();
    let request = OrderRequest {
        event_id: case.event,
        lines,
        customer_id: customer(slot),
        idempotency_key: keyed.then(|| key(slot)),
    };
    let known = keyed.then(|| keyed_reservation(slot));
    Ok(match system.reserve_order(request).await {
        Ok(held) => (Some(held.reservation_id), Outcome::Held(held)),
        Err(SystemError::InsufficientInventory { reservation_id, requested, available, .. }) => {
            if requested <= available || (requested != quantity && requested != also) {
                return Err(fail(format!("short of seats: {requested} asked, {available} free")));
            }
            (Some(reservation_id), Outcome::Short(reservation_id))
        }
        Err(error) => (known, refused(call, &error)?),
    })
}

/// Runs one call; `target` is the reservation a pay/cancel/refund names.
async fn perform(
    case: Arc<Case>,
    call: Call,
    target: Option<ReservationId>,
) -> Result<(Option<ReservationId>, Outcome), TestCaseError> {
    let system = &case.system;
    match call {
        Call::Reserve { slot, section: s, quantity, also, keyed } => {
            reserve(&case, &call, (slot, s, quantity, also), keyed).await
        }
        Call::ReserveDraft { section: s } => {
            let request = ReserveRequest {
                event_id: case.draft_event,
                section: section(s),
                quantity: 1,
                customer_id: customer(0),
                idempotency_key: None,
            };
            Ok(match system.reserve(request).await {
                Ok(held) => (Some(held.reservation_id), Outcome::Held(held)),
                Err(error) => (None, refused(&call, &error)?),
            })
        }
        Call::Pay { .. } => {
            let id = target.unwrap_or_else(ReservationId::new_v4);
            let outcome = match system.pay(id, PaymentDetails { token: "tok_test".into() }).await {
                Ok(receipt) => Outcome::Paid(receipt),
                Err(SystemError::PaymentDeclined { .. }) => Outcome::Declined,
                Err(SystemError::PaymentPending { .. }) => Outcome::Pending,
                Err(error) => refused(&call, &error)?,
            };
            Ok((Some(id), outcome))
        }
        Call::Cancel { .. } => {
            let id = target.unwrap_or_else(ReservationId::new_v4);
            let outcome = match system.cancel_reservation(id).await {
                Ok(()) => Outcome::Done,
                Err(error) => refused(&call, &error)?,
            };
            Ok((Some(id), outcome))
        }
        Call::Refund { .. } => {
            let id = target.unwrap_or_else(ReservationId::new_v4);
            let request =
                RefundRequest { reservation_id: id, amount: None, reason: "goodwill".into(), idempotency_key: None };
            let outcome = match system.refund(request).await {
                Ok(refund) if refund.status == RefundStatus::Refunded => Outcome::Refunded(refund.amount),
                Ok(refund) => return Err(fail(format!("the refund was not confirmed: {refund:?}"))),
                Err(error) => refused(&call, &error)?,
            };
            Ok((Some(id), outcome))
        }
        Call::RefundTickets { all, .. } => {
            let id = target.unwrap_or_else(ReservationId::new_v4);
            let tickets = match system.tickets(id).await {
                Ok(tickets) if !all => {
                    tickets.iter().find(|t| t.status == TicketStatus::Valid).map(|t| t.ticket_id).into_iter().collect()
                }
                Ok(_) => Vec::new(),
                Err(error) => return Ok((Some(id), refused(&call, &error)?)),
            };
            let request = TicketRefundRequest {
                reservation_id: id,
                tickets,
                reason: "cannot come".into(),
                idempotency_key: None,
            };
            let outcome = match system.refund_tickets(request).await {
                Ok(refund) if refund.refund.as_ref().is_none_or(|r| r.status == RefundStatus::Refunded) => {
                    Outcome::TicketsRefunded(refund.refund.map_or(Money::zero(Currency::EUR), |r| r.amount))
                }
                Ok(refund) => return Err(fail(format!("the ticket refund was not confirmed: {refund:?}"))),
                Err(error) => refused(&call, &error)?,
            };
            Ok((Some(id), outcome))
        }
        Call::Advance { seconds } => {
            case.clock.advance(Duration::from_secs(seconds));
            Ok((None, Outcome::Done))
        }
        Call::Reconcile => {
            system.reconcile_payments().await.map_err(|e| fail(format!("reconcile_payments: {e:?}")))?;
            Ok((None, Outcome::Done))
        }
    }
}

/// The reservation a call names before it runs (the keyed one for a keyed reserve).
fn named(call: &Call, slots: &[Option<ReservationId>; SLOTS]) -> Option<ReservationId> {
    match call {
        Call::Reserve { slot, keyed: true, .. } => Some(keyed_reservation(*slot)),
        Call::Pay { slot } | Call::Cancel { slot } | Call::Refund { slot } | Call::RefundTickets { slot, .. } => {
            slots[*slot]
        }
        _ => None,
    }
}

fn remember(slots: &mut [Option<ReservationId>; SLOTS], call: &Call, outcome: &Outcome, target: Option<ReservationId>) {
    if let (Call::Reserve { slot, .. }, Outcome::Held(_) | Outcome::Short(_)) = (call, outcome) {
        slots[*slot] = target;
    }
}

async fn settled(system: &TicketingSystem) -> Result<(), TestCaseError> {
    system.settled().await.map_err(|e| fail(format!("settled() failed: {e:?}")))
}

async fn head(system: &TicketingSystem) -> Result<u64, TestCaseError> {
    system.event_store().head_position().await.map_err(|e| fail(format!("head_position: {e:?}")))
}

/// Runs `scenario` on a fresh in-memory system and returns what it left, settled, with every
/// hold past its deadline.
pub fn run_case(scenario: &Scenario) -> Result<Trace, TestCaseError> {
    runtime().block_on(async {
        match tokio::time::timeout(CASE_TIMEOUT, drive(scenario)).await {
            Ok(trace) => trace,
            Err(_) => Err(fail(format!("the case did not finish within {CASE_TIMEOUT:?}"))),
        }
    })
}

async fn drive(scenario: &Scenario) -> Result<Trace, TestCaseError> {
    let clock = FixedClock::new(start());
    let gateway = Arc::new(ScriptedGateway::new(scenario.plan.clone()));
    let system = TicketingSystem::builder()
        .clock(Arc::new(clock.clone()))
        .payment_gateway(Arc::clone(&gateway) as Arc<dyn PaymentGateway>)
        .hold_duration(HOLD)
        .ticket_keys(TicketKeys::from_secret([7; 32]))
        .payment_reconciliation(Duration::from_secs(3_600), Duration::ZERO)
        .build()
        .await
        .map_err(|e| fail(format!("build: {e:?}")))?;
    let setup = async {
        let event = system.create_event(spec(&clock, &CAPACITIES)).await?;
        system.publish_event(event).await?;
        system.open_sales(event).await?;
        let draft_event = system.create_event(spec(&clock, &CAPACITIES)).await?;
        Ok::<_, SystemError>((event, draft_event))
    };
    let (event, draft_event) = setup.await.map_err(|e| fail(format!("setting up the event: {e:?}")))?;
    let case = Arc::new(Case { system: system.clone(), clock: clock.clone(), event, draft_event });
    let mut slots: [Option<ReservationId>; SLOTS] = [None; SLOTS];
    let mut records = Vec::new();
    for op in &scenario.ops {
        match op {
            Op::Alone(Call::Advance { seconds }) => {
                clock.advance(Duration::from_secs(*seconds));
                settled(&system).await?;
                let call = Call::Advance { seconds: *seconds };
                records.push(Record {
                    call,
                    target: None,
                    outcome: Outcome::Done,
                    alone: None,
                    conflicting_retry: false,
                });
            }
            Op::Alone(call) => {
                settled(&system).await?;
                let target = named(call, &slots);
                let load = |id: Option<ReservationId>| {
                    let system = system.clone();
                    async move {
                        match id {
                            Some(id) => system.reservation(id).await.ok(),
                            None => None,
                        }
                    }
                };
                let reservation_before = load(target).await;
                let conflicting_retry = match (call, &reservation_before) {
                    (Call::Reserve { section: s, quantity, also, keyed: true, .. }, Some(r)) => {
                        let held: Vec<(SectionName, u32)> =
                            r.order_lines().into_iter().map(|l| (l.section, l.quantity)).collect();
                        held != wanted_lines(*s, *quantity, *also)
                    }
                    _ => false,
                };
                let head_before = head(&system).await?;
                let (target, outcome) = perform(Arc::clone(&case), call.clone(), target).await?;
                let head_after = head(&system).await?;
                let reservation_after = load(target).await;
                let reservation_before = if target.is_some() { reservation_before } else { None };
                remember(&mut slots, call, &outcome, target);
                let alone = Alone { head_before, head_after, reservation_before, reservation_after };
                records.push(Record { call: call.clone(), target, outcome, alone: Some(alone), conflicting_retry });
            }
            Op::Burst(calls) => {
                let tasks: Vec<_> = calls
                    .iter()
                    .map(|call| tokio::spawn(perform(Arc::clone(&case), call.clone(), named(call, &slots))))
                    .collect();
                let answers = futures::future::join_all(tasks).await;
                for (call, answer) in calls.iter().zip(answers) {
                    let (target, outcome) = answer.map_err(|e| fail(format!("{call:?} panicked: {e}")))??;
                    remember(&mut slots, call, &outcome, target);
                    records.push(Record { call: call.clone(), target, outcome, alone: None, conflicting_retry: false });
                }
            }
        }
    }
    // Left alone, every hold runs out, every unanswered charge is reconciled and everything in
    // flight finishes.
    clock.advance(HOLD * 3);
    settled(&system).await?;
    system.reconcile_payments().await.map_err(|e| fail(format!("reconcile_payments: {e:?}")))?;
    settled(&system).await?;
    let trace = collect(&system, &clock, event, draft_event, records, gateway.answers()).await;
    system.shutdown().await;
    trace
}

async fn collect(
    system: &TicketingSystem,
    clock: &FixedClock,
    event: EventId,
    draft_event: EventId,
    records: Vec<Record>,
    charges: HashMap<PaymentId, bool>,
) -> Result<Trace, TestCaseError> {
    let envelopes = system.event_store().read_all(0, 1_000_000).await.map_err(|e| fail(format!("read_all: {e:?}")))?;
    let mut log = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        let action = TicketingAction::decode(&envelope).map_err(|e| fail(format!("undecodable event: {e}")))?;
        log.push((envelope, action));
    }
    let mut reservations = HashMap::new();
    for (_, action) in &log {
        if let TicketingAction::Reservation(ReservationAction::ReservationInitiated { reservation_id, .. }) = action {
            let r = system.reservation(*reservation_id).await.map_err(|e| fail(format!("reservation(): {e:?}")))?;
            reservations.insert(*reservation_id, r);
        }
    }
    let seats = system.available_seats().map_err(|e| fail(format!("{e:?}")))?;
    let mut availability = Vec::new();
    for i in 0..CAPACITIES.len() {
        let a = seats.get_availability(event, section(i).as_str()).await.map_err(|e| fail(format!("{e:?}")))?;
        availability.push(a);
    }
    let sales = system.sales_analytics().map_err(|e| fail(format!("{e:?}")))?;
    let revenue = sales.get_metrics(event).await.map_err(|e| fail(format!("{e:?}")))?.map(|m| m.total_revenue);
    let env = TicketingEnv::new(Arc::new(clock.clone()) as Arc<dyn Clock>);
    Ok(Trace { event, draft_event, env, log, records, reservations, availability, revenue, charges })
}
