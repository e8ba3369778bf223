//! The Event aggregate: one ticketed event (a concert, a match) and its sales lifecycle
//! `Draft → Published → SalesOpen → SalesClosed`, with `Cancelled` reachable from any state but
//! itself.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{
    Capacity, DomainError, EventId, Money, PricingTier, SectionName, TierKind, Venue, ensure_storable_text,
};
use crate::framework::{Clock, Effects, Message, MessageKind, Reducer, event_sourced};

/// A section of the event's seating plan and how many seats it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// The section name, unique within the event.
    pub name: SectionName,
    /// Its number of seats.
    pub capacity: Capacity,
}

/// Where an event is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EventStatus {
    /// No `EventCreated` yet.
    #[default]
    NotCreated,
    /// Created, not visible to customers.
    Draft,
    /// Announced; tickets not on sale yet.
    Published,
    /// Tickets can be reserved.
    SalesOpen,
    /// No more sales; the event still takes place.
    SalesClosed,
    /// Called off. Terminal.
    Cancelled,
}

/// The facts fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDetails {
    /// Event id.
    pub event_id: EventId,
    /// Display name.
    pub name: String,
    /// Where it takes place.
    pub venue: Venue,
    /// When it takes place.
    #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
    pub date: DateTime<Utc>,
    /// The seating plan.
    pub sections: Vec<Section>,
    /// Prices per section and tier.
    pub pricing_tiers: Vec<PricingTier>,
    /// How holds and late payments are handled (the system defaults in logs written before it).
    #[serde(default)]
    pub policy: SalesPolicy,
}

/// What happens to a payment the provider approves after its reservation's hold ended (it ran
/// out while the charge was under way, or the charge was presumed failed and later approved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LatePaymentPolicy {
    /// Give the money back (the default).
    #[default]
    Refund,
    /// Sell the customer the same number of seats if that many are still free; refund if not.
    AcceptIfSeatsFree,
    /// Keep the money and record the payment for an operator to settle (refund or honour).
    ManualReview,
}

/// Per-event sales rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SalesPolicy {
    /// How long seats stay held awaiting payment; `None` for the system's default (5 minutes
    /// unless the builder says otherwise). At most [`SalesPolicy::MAX_HOLD`].
    pub hold: Option<std::time::Duration>,
    /// What happens to a payment that succeeds after its hold ended.
    pub late_payment: LatePaymentPolicy,
    /// How long before the event starts ticket transfers close (zero, the default: transfers
    /// are open until it starts).
    #[serde(default)]
    pub transfer_cutoff: std::time::Duration,
    /// The most tickets one customer may hold or be buying for the event, across all their
    /// orders (`None`, the default: no limit). Refunded tickets and holds that ended count no
    /// more. At least 1.
    #[serde(default)]
    pub max_tickets_per_customer: Option<u32>,
}

impl SalesPolicy {
    /// The longest hold an event may ask for: one day.
    pub const MAX_HOLD: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
}

/// State of one Event stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventState {
    /// Set by `EventCreated`.
    pub details: Option<EventDetails>,
    /// Lifecycle position.
    pub status: EventStatus,
}

impl EventState {
    /// Whether reservations may be made.
    #[must_use]
    pub fn is_on_sale(&self) -> bool {
        self.status == EventStatus::SalesOpen
    }

    /// The section called `name`, if the event has one.
    #[must_use]
    pub fn section(&self, name: &SectionName) -> Option<&Section> {
        self.details.as_ref()?.sections.iter().find(|s| &s.name == name)
    }

    /// The price of one seat in `section` under the tier of kind `kind`, ignoring sale windows.
    ///
    /// # Errors
    /// [`EventError::NoPrice`] when the event has no such tier.
    pub fn price_for(&self, section: &SectionName, kind: TierKind) -> Result<Money, EventError> {
        self.tiers(section).find(|t| t.kind() == kind).map(PricingTier::price).ok_or_else(|| self.no_price(section))
    }

    /// The price a customer pays for one seat in `section` at `now`: the cheapest tier of that
    /// section whose sale window contains `now` (an open early-bird window beats the regular
    /// price).
    ///
    /// # Errors
    /// [`EventError::NoPrice`] when no tier of the section is on sale at `now`.
    pub fn price_at(&self, section: &SectionName, now: DateTime<Utc>) -> Result<Money, EventError> {
        self.tiers(section)
            .filter(|t| t.on_sale_at(now))
            .map(PricingTier::price)
            .min_by_key(Money::minor_units)
            .ok_or_else(|| self.no_price(section))
    }

    /// The price of a seat in `section` under the tier of kind `tier` now (the cheapest tier on
    /// sale when `tier` is `None`).
    ///
    /// # Errors
    /// [`EventError::NoPrice`] when no such tier of the section is on sale at `now`.
    pub fn price_of_tier(
        &self,
        section: &SectionName,
        tier: Option<crate::domain::TierKind>,
        now: DateTime<Utc>,
    ) -> Result<Money, EventError> {
        let Some(kind) = tier else { return self.price_at(section, now) };
        self.tiers(section)
            .filter(|t| t.kind() == kind && t.on_sale_at(now))
            .map(PricingTier::price)
            .min_by_key(Money::minor_units)
            .ok_or_else(|| self.no_price(section))
    }

    fn tiers<'a>(&'a self, section: &'a SectionName) -> impl Iterator<Item = &'a PricingTier> + 'a {
        self.details.iter().flat_map(|d| d.pricing_tiers.iter()).filter(move |t| t.section() == section)
    }

    fn no_price(&self, section: &SectionName) -> EventError {
        EventError::NoPrice { event_id: self.details.as_ref().map(|d| d.event_id), section: section.clone() }
    }
}

/// Why an Event command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum EventError {
    /// `CreateEvent` for a stream that already has an event.
    #[error("event {event_id} already exists")]
    AlreadyExists {
        /// The event.
        event_id: EventId,
    },
    /// A command for an event that was never created (or for another stream).
    #[error("event {event_id} not found")]
    NotFound {
        /// The event.
        event_id: EventId,
    },
    /// The name is blank.
    #[error("event name must not be blank")]
    BlankName,
    /// The name or the cancellation reason cannot be stored (it holds a NUL character).
    #[error("event {event_id}: {source}")]
    InvalidText {
        /// The event.
        event_id: EventId,
        /// Which text and why.
        #[source]
        source: DomainError,
    },
    /// No sections, or two sections with the same name.
    #[error("event {event_id} needs at least one section and unique section names")]
    InvalidSections {
        /// The event.
        event_id: EventId,
    },
    /// A pricing tier names a section the event does not have, or mixes currencies.
    #[error("pricing tier for section {section} is invalid for event {event_id}")]
    InvalidPricingTier {
        /// The event.
        event_id: EventId,
        /// The tier's section.
        section: SectionName,
    },
    /// Selling every seat at its section's dearest price would overflow the money type.
    #[error("event {event_id}: capacity × price overflows the money type")]
    RevenueOverflow {
        /// The event.
        event_id: EventId,
    },
    /// The policy's hold is zero or longer than [`SalesPolicy::MAX_HOLD`].
    #[error("event {event_id}: a hold must last more than zero and at most a day")]
    InvalidHold {
        /// The event.
        event_id: EventId,
    },
    /// The policy's per-customer ticket limit is zero.
    #[error("event {event_id}: a per-customer ticket limit must allow at least one ticket")]
    InvalidTicketLimit {
        /// The event.
        event_id: EventId,
    },
    /// The event date is not in the future.
    #[error("event {event_id} date {date} is not in the future")]
    DateInPast {
        /// The event.
        event_id: EventId,
        /// The rejected date.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        date: DateTime<Utc>,
    },
    /// The lifecycle does not allow this step from the current status.
    #[error("event {event_id}: cannot {action} while {from:?}")]
    IllegalTransition {
        /// The event.
        event_id: EventId,
        /// The current status.
        from: EventStatus,
        /// The attempted step.
        action: std::borrow::Cow<'static, str>,
    },
    /// No tier prices this section (at this time).
    #[error("no price for section {section} of event {event_id:?}")]
    NoPrice {
        /// The event, if created.
        event_id: Option<EventId>,
        /// The section.
        section: SectionName,
    },
}

/// Commands, events and the rejection of the Event aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventAction {
    /// Create an event in `Draft`.
    CreateEvent {
        /// New event id (generated by the caller).
        event_id: EventId,
        /// Display name.
        name: String,
        /// Venue.
        venue: Venue,
        /// Date of the event.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        date: DateTime<Utc>,
        /// Seating plan.
        sections: Vec<Section>,
        /// Prices.
        pricing_tiers: Vec<PricingTier>,
        /// Hold and late-payment rules.
        #[serde(default)]
        policy: SalesPolicy,
    },
    /// Make a draft event public.
    PublishEvent {
        /// The event.
        event_id: EventId,
    },
    /// Start selling tickets.
    OpenSales {
        /// The event.
        event_id: EventId,
    },
    /// Stop selling tickets.
    CloseSales {
        /// The event.
        event_id: EventId,
    },
    /// Call the event off.
    CancelEvent {
        /// The event.
        event_id: EventId,
        /// Why.
        reason: String,
    },
    /// The event was created.
    #[serde(rename = "EventCreated")]
    EventCreated {
        /// The event details.
        details: EventDetails,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        created_at: DateTime<Utc>,
    },
    /// The event was published.
    #[serde(rename = "EventPublished")]
    EventPublished {
        /// The event.
        event_id: EventId,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        published_at: DateTime<Utc>,
    },
    /// Sales opened.
    #[serde(rename = "SalesOpened")]
    SalesOpened {
        /// The event.
        event_id: EventId,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        opened_at: DateTime<Utc>,
    },
    /// Sales closed.
    #[serde(rename = "SalesClosed")]
    SalesClosed {
        /// The event.
        event_id: EventId,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        closed_at: DateTime<Utc>,
    },
    /// The event was cancelled.
    #[serde(rename = "EventCancelled")]
    EventCancelled {
        /// The event.
        event_id: EventId,
        /// Why.
        reason: String,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        cancelled_at: DateTime<Utc>,
    },
    /// A command was refused.
    Rejected(EventError),
}

impl EventAction {
    /// The event this action addresses (`None` for a rejection).
    #[must_use]
    pub fn event_id(&self) -> Option<EventId> {
        match self {
            Self::CreateEvent { event_id, .. }
            | Self::PublishEvent { event_id }
            | Self::OpenSales { event_id }
            | Self::CloseSales { event_id }
            | Self::CancelEvent { event_id, .. }
            | Self::EventPublished { event_id, .. }
            | Self::SalesOpened { event_id, .. }
            | Self::SalesClosed { event_id, .. }
            | Self::EventCancelled { event_id, .. } => Some(*event_id),
            Self::EventCreated { details, .. } => Some(details.event_id),
            Self::Rejected(_) => None,
        }
    }
}

impl Message for EventAction {
    fn kind(&self) -> MessageKind {
        match self {
            Self::CreateEvent { .. }
            | Self::PublishEvent { .. }
            | Self::OpenSales { .. }
            | Self::CloseSales { .. }
            | Self::CancelEvent { .. } => MessageKind::Command,
            Self::EventCreated { .. }
            | Self::EventPublished { .. }
            | Self::SalesOpened { .. }
            | Self::SalesClosed { .. }
            | Self::EventCancelled { .. } => MessageKind::Event,
            Self::Rejected(_) => MessageKind::Rejection,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::CreateEvent { .. } => "CreateEvent",
            Self::PublishEvent { .. } => "PublishEvent",
            Self::OpenSales { .. } => "OpenSales",
            Self::CloseSales { .. } => "CloseSales",
            Self::CancelEvent { .. } => "CancelEvent",
            Self::EventCreated { .. } => "EventCreated",
            Self::EventPublished { .. } => "EventPublished",
            Self::SalesOpened { .. } => "SalesOpened",
            Self::SalesClosed { .. } => "SalesClosed",
            Self::EventCancelled { .. } => "EventCancelled",
            Self::Rejected(_) => "EventRejected",
        }
    }
}

/// Dependencies of the Event reducer.
#[derive(Debug, Clone)]
pub struct EventEnv {
    /// Source of timestamps and "is the date in the future".
    pub clock: Arc<dyn Clock>,
}

impl EventEnv {
    /// An environment reading `clock`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }
}

/// The Event reducer.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventReducer;

impl Reducer for EventReducer {
    type State = EventState;
    type Action = EventAction;
    type Env = EventEnv;

    fn reduce(&self, state: &mut EventState, action: EventAction, env: &EventEnv) -> Effects<EventAction> {
        event_sourced(state, action, |s, a| decide(s, a, env), apply, EventAction::Rejected)
    }
}

/// The event a command produces, or why it is refused (`None` only for non-commands).
fn decide(state: &EventState, command: EventAction, env: &EventEnv) -> Result<Option<EventAction>, EventError> {
    let now = env.clock.now();
    if let EventAction::CreateEvent { event_id, name, venue, date, sections, pricing_tiers, policy } = command {
        if state.details.is_some() {
            return Err(EventError::AlreadyExists { event_id });
        }
        validate_new_event(event_id, &name, date, &sections, &pricing_tiers, now)?;
        if policy.hold.is_some_and(|hold| hold.is_zero() || hold > SalesPolicy::MAX_HOLD) {
            return Err(EventError::InvalidHold { event_id });
        }
        if policy.max_tickets_per_customer == Some(0) {
            return Err(EventError::InvalidTicketLimit { event_id });
        }
        let details = EventDetails { event_id, name, venue, date, sections, pricing_tiers, policy };
        return Ok(Some(EventAction::EventCreated { details, created_at: now }));
    }
    let Some(event_id) = command.event_id() else { return Ok(None) };
    if state.details.as_ref().is_none_or(|d| d.event_id != event_id) {
        return Err(EventError::NotFound { event_id });
    }
    let from = state.status;
    let illegal = |action: &'static str| EventError::IllegalTransition { event_id, from, action: action.into() };
    match command {
        EventAction::PublishEvent { .. } if from == EventStatus::Draft => {
            Ok(Some(EventAction::EventPublished { event_id, published_at: now }))
        }
        EventAction::PublishEvent { .. } => Err(illegal("publish")),
        EventAction::OpenSales { .. } if from == EventStatus::Published => {
            Ok(Some(EventAction::SalesOpened { event_id, opened_at: now }))
        }
        EventAction::OpenSales { .. } => Err(illegal("open sales")),
        EventAction::CloseSales { .. } if from == EventStatus::SalesOpen => {
            Ok(Some(EventAction::SalesClosed { event_id, closed_at: now }))
        }
        EventAction::CloseSales { .. } => Err(illegal("close sales")),
        EventAction::CancelEvent { reason, .. } if from != EventStatus::Cancelled => {
            ensure_storable_text("cancellation reason", &reason)
                .map_err(|source| EventError::InvalidText { event_id, source })?;
            Ok(Some(EventAction::EventCancelled { event_id, reason, cancelled_at: now }))
        }
        _ => Err(illegal("cancel")),
    }
}

fn validate_new_event(
    event_id: EventId,
    name: &str,
    date: DateTime<Utc>,
    sections: &[Section],
    pricing_tiers: &[PricingTier],
    now: DateTime<Utc>,
) -> Result<(), EventError> {
    if name.trim().is_empty() {
        return Err(EventError::BlankName);
    }
    ensure_storable_text("event name", name).map_err(|source| EventError::InvalidText { event_id, source })?;
    if date <= now {
        return Err(EventError::DateInPast { event_id, date });
    }
    let duplicate = sections.iter().enumerate().any(|(i, s)| sections[..i].iter().any(|o| o.name == s.name));
    if sections.is_empty() || duplicate {
        return Err(EventError::InvalidSections { event_id });
    }
    let currency = pricing_tiers.first().map(|t| t.price().currency());
    for tier in pricing_tiers {
        if !sections.iter().any(|s| &s.name == tier.section()) || Some(tier.price().currency()) != currency {
            return Err(EventError::InvalidPricingTier { event_id, section: tier.section().clone() });
        }
    }
    // Every seat sold at its section's dearest price must still fit the money type, so no sum
    // of the event's sales can overflow.
    let mut most: i128 = 0;
    for section in sections {
        let dearest = pricing_tiers
            .iter()
            .filter(|t| t.section() == &section.name)
            .map(|t| i128::from(t.price().minor_units()))
            .max()
            .unwrap_or(0);
        most = most.saturating_add(dearest.saturating_mul(i128::from(section.capacity.get())));
    }
    if most > i128::from(i64::MAX) {
        return Err(EventError::RevenueOverflow { event_id });
    }
    Ok(())
}

fn apply(state: &mut EventState, event: &EventAction) {
    match event {
        EventAction::EventCreated { details, .. } => {
            state.details = Some(details.clone());
            state.status = EventStatus::Draft;
        }
        EventAction::EventPublished { .. } => state.status = EventStatus::Published,
        EventAction::SalesOpened { .. } => state.status = EventStatus::SalesOpen,
        EventAction::SalesClosed { .. } => state.status = EventStatus::SalesClosed,
        EventAction::EventCancelled { .. } => state.status = EventStatus::Cancelled,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::{Currency, VenueId};
    use crate::framework::{FixedClock, ReducerTest, ReducerTestError};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
    }

    fn id() -> EventId {
        EventId::from_uuid(uuid::Uuid::from_u128(7))
    }

    fn section(name: &str) -> SectionName {
        SectionName::new(name).unwrap()
    }

    fn test() -> ReducerTest<EventReducer> {
        ReducerTest::new(EventReducer, EventEnv::new(Arc::new(FixedClock::new(now()))))
    }

    fn tiers() -> Vec<PricingTier> {
        let early = crate::domain::SaleWindow::new(now(), now() + chrono::Duration::days(1)).unwrap();
        vec![
            PricingTier::new(TierKind::Regular, section("Stalls"), Money::new(5_000, Currency::EUR), None).unwrap(),
            PricingTier::new(TierKind::EarlyBird, section("Stalls"), Money::new(4_000, Currency::EUR), Some(early))
                .unwrap(),
            PricingTier::new(TierKind::Vip, section("Box"), Money::new(20_000, Currency::EUR), None).unwrap(),
        ]
    }

    fn create() -> EventAction {
        EventAction::CreateEvent {
            event_id: id(),
            name: "Rust Fest".into(),
            venue: Venue::new(VenueId::from_uuid(uuid::Uuid::from_u128(9)), "Hall").unwrap(),
            date: now() + chrono::Duration::days(30),
            sections: vec![
                Section { name: section("Stalls"), capacity: Capacity::new(100).unwrap() },
                Section { name: section("Box"), capacity: Capacity::new(4).unwrap() },
            ],
            pricing_tiers: tiers(),
            policy: SalesPolicy::default(),
        }
    }

    fn created() -> EventAction {
        let EventAction::CreateEvent { event_id, name, venue, date, sections, pricing_tiers, policy } = create() else {
            unreachable!()
        };
        let details = EventDetails { event_id, name, venue, date, sections, pricing_tiers, policy };
        EventAction::EventCreated { details, created_at: now() }
    }

    fn published() -> EventAction {
        EventAction::EventPublished { event_id: id(), published_at: now() }
    }

    fn opened() -> EventAction {
        EventAction::SalesOpened { event_id: id(), opened_at: now() }
    }

    #[test]
    fn create_event_starts_in_draft() -> Result<(), ReducerTestError> {
        test().when(create()).then_persisted(&[created()])?.then_state("draft", |s| s.status == EventStatus::Draft)?;
        Ok(())
    }

    #[test]
    fn create_rejects_existing_blank_past_and_bad_plans() -> Result<(), ReducerTestError> {
        test()
            .given([created()])?
            .when(create())
            .then_rejected("exists", |a| matches!(a, EventAction::Rejected(EventError::AlreadyExists { .. })))?;
        let mut blank = create();
        if let EventAction::CreateEvent { name, .. } = &mut blank {
            *name = " ".into();
        }
        test().when(blank).then_rejected("blank", |a| matches!(a, EventAction::Rejected(EventError::BlankName)))?;
        let mut dear = create();
        if let EventAction::CreateEvent { pricing_tiers, .. } = &mut dear {
            // 100 Stalls seats at this price cannot be added up.
            let price = Money::new(i64::MAX / 100 + 1, Currency::EUR);
            *pricing_tiers = vec![PricingTier::new(TierKind::Regular, section("Stalls"), price, None).unwrap()];
        }
        test()
            .when(dear)
            .then_rejected("overflow", |a| matches!(a, EventAction::Rejected(EventError::RevenueOverflow { .. })))?;
        let mut fits = create();
        if let EventAction::CreateEvent { pricing_tiers, .. } = &mut fits {
            let price = Money::new(i64::MAX / 104, Currency::EUR);
            *pricing_tiers = vec![
                PricingTier::new(TierKind::Regular, section("Stalls"), price, None).unwrap(),
                PricingTier::new(TierKind::Vip, section("Box"), price, None).unwrap(),
            ];
        }
        test().when(fits).then_state("the largest prices that add up are accepted", |s| s.details.is_some())?;
        for hold in [std::time::Duration::ZERO, SalesPolicy::MAX_HOLD + std::time::Duration::from_secs(1)] {
            let mut bad_hold = create();
            if let EventAction::CreateEvent { policy, .. } = &mut bad_hold {
                policy.hold = Some(hold);
            }
            test()
                .when(bad_hold)
                .then_rejected("hold", |a| matches!(a, EventAction::Rejected(EventError::InvalidHold { .. })))?;
        }
        let mut no_tickets = create();
        if let EventAction::CreateEvent { policy, .. } = &mut no_tickets {
            policy.max_tickets_per_customer = Some(0);
        }
        test()
            .when(no_tickets)
            .then_rejected("limit", |a| matches!(a, EventAction::Rejected(EventError::InvalidTicketLimit { .. })))?;
        let mut past = create();
        if let EventAction::CreateEvent { date, .. } = &mut past {
            *date = now();
        }
        test()
            .when(past)
            .then_rejected("past", |a| matches!(a, EventAction::Rejected(EventError::DateInPast { .. })))?;
        let mut dup = create();
        if let EventAction::CreateEvent { sections, .. } = &mut dup {
            sections[1].name = section("Stalls");
        }
        test()
            .when(dup)
            .then_rejected("dup", |a| matches!(a, EventAction::Rejected(EventError::InvalidSections { .. })))?;
        let mut orphan = create();
        if let EventAction::CreateEvent { sections, .. } = &mut orphan {
            sections.pop();
        }
        test().when(orphan).then_rejected("orphan tier", |a| {
            matches!(a, EventAction::Rejected(EventError::InvalidPricingTier { .. }))
        })?;
        Ok(())
    }

    #[test]
    fn lifecycle_happy_path() -> Result<(), ReducerTestError> {
        test().given([created()])?.when(EventAction::PublishEvent { event_id: id() }).then_persisted(&[published()])?;
        test()
            .given([created(), published()])?
            .when(EventAction::OpenSales { event_id: id() })
            .then_persisted(&[opened()])?
            .then_state("on sale", EventState::is_on_sale)?;
        test()
            .given([created(), published(), opened()])?
            .when(EventAction::CloseSales { event_id: id() })
            .then_persisted(&[EventAction::SalesClosed { event_id: id(), closed_at: now() }])?;
        Ok(())
    }

    #[test]
    fn cancel_from_any_non_terminal_state_but_not_twice() -> Result<(), ReducerTestError> {
        let cancel = || EventAction::CancelEvent { event_id: id(), reason: "storm".into() };
        let cancelled = EventAction::EventCancelled { event_id: id(), reason: "storm".into(), cancelled_at: now() };
        for history in [vec![created()], vec![created(), published()], vec![created(), published(), opened()]] {
            test().given(history)?.when(cancel()).then_persisted(std::slice::from_ref(&cancelled))?;
        }
        test().given([created(), cancelled])?.when(cancel()).then_rejected("twice", |a| {
            matches!(a, EventAction::Rejected(EventError::IllegalTransition { from: EventStatus::Cancelled, .. }))
        })?;
        Ok(())
    }

    #[test]
    fn text_with_a_nul_character_is_rejected() -> Result<(), ReducerTestError> {
        let nul_text = |a: &EventAction| {
            matches!(a, EventAction::Rejected(EventError::InvalidText { source: DomainError::InvalidText { .. }, .. }))
        };
        let EventAction::CreateEvent { event_id, venue, date, sections, pricing_tiers, policy, .. } = create() else {
            unreachable!("create() is a CreateEvent")
        };
        let named = EventAction::CreateEvent {
            event_id,
            name: "Rust\0Fest".into(),
            venue,
            date,
            sections,
            pricing_tiers,
            policy,
        };
        test().when(named).then_rejected("nul name", nul_text)?;
        let cancel = EventAction::CancelEvent { event_id: id(), reason: "storm\0".into() };
        test().given([created()])?.when(cancel).then_rejected("nul reason", nul_text)?.then_unchanged()?;
        Ok(())
    }

    #[test]
    fn illegal_transitions_and_unknown_events_are_rejected() -> Result<(), ReducerTestError> {
        test().given([created()])?.when(EventAction::OpenSales { event_id: id() }).then_rejected("skip", |a| {
            matches!(a, EventAction::Rejected(EventError::IllegalTransition { from: EventStatus::Draft, .. }))
        })?;
        test()
            .given([created()])?
            .when(EventAction::CloseSales { event_id: id() })
            .then_rejected("close", |a| matches!(a, EventAction::Rejected(EventError::IllegalTransition { .. })))?;
        test()
            .given([created(), published()])?
            .when(EventAction::PublishEvent { event_id: id() })
            .then_rejected("republish", |a| matches!(a, EventAction::Rejected(EventError::IllegalTransition { .. })))?;
        test()
            .when(EventAction::PublishEvent { event_id: id() })
            .then_rejected("missing", |a| matches!(a, EventAction::Rejected(EventError::NotFound { .. })))?;
        Ok(())
    }

    #[test]
    fn price_queries_use_tiers_and_windows() -> Result<(), ReducerTestError> {
        let t = test().given([created()])?;
        let state = t.state();
        assert_eq!(state.price_for(&section("Box"), TierKind::Vip), Ok(Money::new(20_000, Currency::EUR)));
        assert_eq!(state.price_at(&section("Stalls"), now()), Ok(Money::new(4_000, Currency::EUR)));
        let later = now() + chrono::Duration::days(2);
        assert_eq!(state.price_at(&section("Stalls"), later), Ok(Money::new(5_000, Currency::EUR)));
        assert!(matches!(state.price_for(&section("Box"), TierKind::EarlyBird), Err(EventError::NoPrice { .. })));
        Ok(())
    }

    #[test]
    fn event_names_equal_serde_tags() {
        for event in [created(), published(), opened()] {
            let json = serde_json::to_value(&event).unwrap();
            let tag = json.as_object().unwrap().keys().next().unwrap().clone();
            assert_eq!(tag, event.name());
            assert_eq!(serde_json::from_value::<EventAction>(json).unwrap(), event);
        }
        let others = [
            EventAction::SalesClosed { event_id: id(), closed_at: now() },
            EventAction::EventCancelled { event_id: id(), reason: String::new(), cancelled_at: now() },
        ];
        for event in others {
            let json = serde_json::to_value(&event).unwrap();
            assert!(json.get(event.name()).is_some());
        }
    }
}
