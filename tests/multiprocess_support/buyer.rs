//! A buyer process: N concurrent customers hammering a big and a one-seat section of one event,
//! alone or in baskets of both,
//! over a shared `PostgreSQL` database. Used by `tests/multiprocess_postgres.rs` (which re-runs its
//! own test binary as the child) and by `examples/buyer.rs`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use boxoffice::aggregates::GatewayOutcome;
use boxoffice::domain::RefundId;
use boxoffice::prelude::*;
use boxoffice::system::{
    ChargeStatus, GatewayChoice, OrderLineRequest, OrderRequest, PaymentDetails, SystemConfig, SystemError,
    TicketingSystem,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;

/// The hundred-seat section.
pub const BIG_SECTION: &str = "Stalls";
/// The one-seat section.
pub const SOLO_SECTION: &str = "Box";

/// What the buyers do after reserving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reserve then pay (some abandon their hold), several rounds, then exit.
    Buy,
    /// Reserve once each, never pay, then sleep until killed.
    HoldAndSleep,
    /// Reserve once each and pay: the provider takes the money, prints `CHARGED <payment id>`
    /// and never answers, so the process is killed between the charge and its record.
    ChargeAndHang,
}

/// Command-line settings: `<event id> <buyers> <seed> <fail ratio> <hold secs> [buy|hold]`, plus
/// `DATABASE_URL` from the environment.
#[derive(Debug, Clone)]
pub struct BuyerArgs {
    /// The database.
    pub database_url: String,
    /// The event on sale.
    pub event_id: EventId,
    /// Concurrent buyers.
    pub buyers: usize,
    /// Seeds the buyers' choices and the gateway's declines.
    pub seed: u64,
    /// Share of payments the gateway declines, in [0, 1].
    pub fail_ratio: f64,
    /// Hold duration.
    pub hold_secs: u64,
    /// What buyers do.
    pub mode: Mode,
}

impl BuyerArgs {
    /// Parses the arguments (without the program name).
    ///
    /// # Errors
    /// A usage message.
    pub fn parse(args: &[String], database_url: Option<String>) -> Result<Self, String> {
        const USAGE: &str =
            "usage: buyer <event id> <buyers> <seed> <fail ratio 0..1> <hold secs> [buy|hold|charge-and-hang]";
        let database_url = database_url.ok_or("DATABASE_URL is not set")?;
        let arg = |i: usize| args.get(i).ok_or_else(|| USAGE.to_owned());
        let event_id = arg(0)?.parse().map_err(|e| format!("event id: {e}"))?;
        let buyers = arg(1)?.parse().map_err(|e| format!("buyers: {e}"))?;
        let seed = arg(2)?.parse().map_err(|e| format!("seed: {e}"))?;
        let fail_ratio: f64 = arg(3)?.parse().map_err(|e| format!("fail ratio: {e}"))?;
        if !(0.0..=1.0).contains(&fail_ratio) {
            return Err(format!("fail ratio {fail_ratio} is not in [0, 1]"));
        }
        let hold_secs = arg(4)?.parse().map_err(|e| format!("hold secs: {e}"))?;
        let mode = match args.get(5).map(String::as_str) {
            None | Some("buy") => Mode::Buy,
            Some("hold") => Mode::HoldAndSleep,
            Some("charge-and-hang") => Mode::ChargeAndHang,
            Some(other) => return Err(format!("unknown mode {other:?}; {USAGE}")),
        };
        Ok(Self { database_url, event_id, buyers, seed, fail_ratio, hold_secs, mode })
    }
}

/// Declines a seeded share of charges. The verdict depends only on the seed and the payment id,
/// so whichever process happens to run a charge gives the same answer.
#[derive(Debug)]
pub struct SeededGateway {
    seed: u64,
    fail_ratio: f64,
}

impl SeededGateway {
    /// Declines about `fail_ratio` of payments.
    #[must_use]
    pub fn new(seed: u64, fail_ratio: f64) -> Self {
        Self { seed, fail_ratio }
    }

    fn declines(&self, payment_id: PaymentId) -> bool {
        let (high, low) = payment_id.as_uuid().as_u64_pair();
        let mut rng = StdRng::seed_from_u64(self.seed ^ high ^ low.rotate_left(17));
        rng.random_bool(self.fail_ratio)
    }
}

#[async_trait]
impl PaymentGateway for SeededGateway {
    async fn charge(&self, payment_id: PaymentId, _amount: Money, _token: &SecretString) -> GatewayOutcome {
        if self.declines(payment_id) {
            GatewayOutcome::Declined { reason: "seeded decline".into() }
        } else {
            GatewayOutcome::Approved
        }
    }

    async fn refund(&self, _payment_id: PaymentId, _refund_id: RefundId, _amount: Money) -> GatewayOutcome {
        GatewayOutcome::Approved
    }

    /// The verdict a charge of `payment_id` gets, whichever process asks (the provider is shared).
    async fn status(&self, payment_id: PaymentId) -> ChargeStatus {
        if self.declines(payment_id) {
            ChargeStatus::Declined { reason: "seeded decline".into() }
        } else {
            ChargeStatus::Approved
        }
    }
}

/// The seeded provider, but the answer to a charge never comes back: the money is taken (as
/// `status` will say), `CHARGED <payment id>` is printed, and the call hangs until the process
/// is killed.
#[derive(Debug)]
struct HangingGateway(SeededGateway);

#[async_trait]
impl PaymentGateway for HangingGateway {
    async fn charge(&self, payment_id: PaymentId, amount: Money, token: &SecretString) -> GatewayOutcome {
        let _taken = self.0.charge(payment_id, amount, token).await;
        println!("CHARGED {payment_id}");
        std::future::pending().await
    }

    async fn refund(&self, payment_id: PaymentId, refund_id: RefundId, amount: Money) -> GatewayOutcome {
        self.0.refund(payment_id, refund_id, amount).await
    }

    async fn status(&self, payment_id: PaymentId) -> ChargeStatus {
        self.0.status(payment_id).await
    }
}

/// What the buyers of one process saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Holds granted.
    pub held: u32,
    /// Reservations refused for lack of seats.
    pub sold_out: u32,
    /// Purchases completed.
    pub bought: u32,
    /// Seats in those purchases.
    pub seats_bought: u32,
    /// Payments declined.
    pub declined: u32,
    /// Holds left to expire on purpose.
    pub abandoned: u32,
    /// Holds that ended before the payment landed (or, under load, before the seats were held).
    pub ended: u32,
    /// Anything else (timeouts, contention).
    pub errors: u32,
}

impl Summary {
    fn add(&mut self, other: Summary) {
        self.held += other.held;
        self.sold_out += other.sold_out;
        self.bought += other.bought;
        self.seats_bought += other.seats_bought;
        self.declined += other.declined;
        self.abandoned += other.abandoned;
        self.ended += other.ended;
        self.errors += other.errors;
    }

    /// One line of JSON.
    #[must_use]
    pub fn to_json(self, elapsed: Duration) -> String {
        let mut line = String::new();
        let _ = write!(
            line,
            r#"{{"held":{},"sold_out":{},"bought":{},"seats_bought":{},"declined":{},"abandoned":{},"ended":{},"errors":{},"elapsed_ms":{}}}"#,
            self.held,
            self.sold_out,
            self.bought,
            self.seats_bought,
            self.declined,
            self.abandoned,
            self.ended,
            self.errors,
            elapsed.as_millis()
        );
        line
    }
}

/// Most rounds a buyer plays in [`Mode::Buy`].
const MAX_ROUNDS: usize = 40;
/// Share of holds a buyer walks away from, leaving them to expire.
const ABANDON_RATIO: f64 = 0.15;

/// What one buyer asks for next: a quarter ask for the one seat alone, the rest for Stalls
/// seats; when buying, a third of those ask for a basket of Stalls seats and the one seat, held
/// all or none.
fn order(args: &BuyerArgs, rng: &mut StdRng, (big, solo): (&SectionName, &SectionName)) -> OrderRequest {
    let lines = if rng.random_bool(0.25) {
        vec![(solo.clone(), 1)]
    } else {
        let stalls = (big.clone(), rng.random_range(1..=3));
        if args.mode == Mode::Buy && rng.random_bool(0.33) { vec![stalls, (solo.clone(), 1)] } else { vec![stalls] }
    };
    OrderRequest {
        event_id: args.event_id,
        lines: lines
            .into_iter()
            .map(|(section, quantity)| OrderLineRequest { section, quantity, tier: None })
            .collect(),
        customer_id: CustomerId::new_v4(),
        idempotency_key: None,
    }
}

/// Runs the buyers and returns what they saw; in [`Mode::HoldAndSleep`] it never returns after
/// the holds are taken (the caller kills the process).
///
/// # Errors
/// [`SystemError`] when the system cannot start.
pub async fn run(args: &BuyerArgs) -> Result<Summary, SystemError> {
    // The environment's settings (`DATABASE_URL`, `DATABASE_MAX_CONNECTIONS`, ...), as
    // `TicketingSystem::from_env` reads them, with the hold from the command line.
    let mut config = SystemConfig::from_env()?;
    config.database_url = Some(args.database_url.clone());
    config.hold_duration = Duration::from_secs(args.hold_secs);
    config.payment_gateway = Some(GatewayChoice::Simulated);
    let system = TicketingSystem::builder_from_config(&config)
        .await?
        .payment_gateway(if args.mode == Mode::ChargeAndHang {
            Arc::new(HangingGateway(SeededGateway::new(args.seed, args.fail_ratio)))
        } else {
            Arc::new(SeededGateway::new(args.seed, args.fail_ratio))
        })
        .reply_timeout(Duration::from_secs(20))
        .build()
        .await?;
    let big = SectionName::new(BIG_SECTION)?;
    let solo = SectionName::new(SOLO_SECTION)?;
    let buyers = (0..args.buyers).map(|index| {
        let system = system.clone();
        let (big, solo) = (big.clone(), solo.clone());
        let args = args.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(args.seed.wrapping_mul(1_000_003).wrapping_add(index as u64));
            // Buying goes on past two hold durations, so abandoned and unpaid holds expire (swept
            // by whichever process gets there first) while other buyers still want their seats.
            let until = Instant::now() + Duration::from_secs(2 * args.hold_secs + 1);
            let rounds = if args.mode == Mode::Buy { MAX_ROUNDS } else { 1 };
            let abandon = if args.mode == Mode::Buy { ABANDON_RATIO } else { 0.0 };
            let mut summary = Summary::default();
            for round in 0..rounds {
                if round > 0 {
                    if Instant::now() >= until {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
                }
                let request = order(&args, &mut rng, (&big, &solo));
                let hold = match system.reserve_order(request).await {
                    Ok(hold) => hold,
                    Err(SystemError::InsufficientInventory { .. }) => {
                        summary.sold_out += 1;
                        continue;
                    }
                    // The 2-second hold ran out before the seats were allocated (a loaded
                    // machine, three processes on one database): an answer, not a failure; the
                    // ledger check at the end shows its seats came back.
                    Err(SystemError::ReservationEnded { how: "expired", .. }) => {
                        summary.ended += 1;
                        continue;
                    }
                    Err(error) => {
                        eprintln!("buyer {index}: reserve failed: {error}");
                        summary.errors += 1;
                        continue;
                    }
                };
                summary.held += 1;
                if args.mode == Mode::HoldAndSleep || rng.random_bool(abandon) {
                    summary.abandoned += 1;
                    continue;
                }
                match system.pay(hold.reservation_id, PaymentDetails { token: "tok_test".into() }).await {
                    Ok(purchase) => {
                        summary.bought += 1;
                        summary.seats_bought += u32::try_from(purchase.seats.len()).unwrap_or(u32::MAX);
                    }
                    Err(SystemError::PaymentDeclined { .. }) => summary.declined += 1,
                    // The hold ran out first: either the saga saw it end while the payment was
                    // under way, or the reservation refused the payment request as already over.
                    Err(SystemError::ReservationEnded { .. } | SystemError::Reservation(_)) => summary.ended += 1,
                    Err(error) => {
                        eprintln!("buyer {index}: pay failed: {error}");
                        summary.errors += 1;
                    }
                }
            }
            summary
        })
    });
    let mut total = Summary::default();
    for buyer in futures::future::join_all(buyers.collect::<Vec<_>>()).await {
        match buyer {
            Ok(summary) => total.add(summary),
            Err(_) => total.errors += 1,
        }
    }
    if args.mode == Mode::HoldAndSleep {
        println!("HOLDING {}", total.to_json(Duration::ZERO));
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    system.shutdown().await;
    Ok(total)
}

/// Parses `std::env::args`-style arguments, runs, and prints the summary as one JSON line.
///
/// # Errors
/// A usage or start-up message.
pub fn main_with(args: &[String]) -> Result<(), String> {
    let args = BuyerArgs::parse(args, std::env::var("DATABASE_URL").ok())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let summary = runtime.block_on(run(&args)).map_err(|e| e.to_string())?;
    println!("{}", summary.to_json(started.elapsed()));
    Ok(())
}
