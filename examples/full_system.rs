//! The whole ticketing flow on the assembled system: an event with two sections and tiers, then a
//! mixed basket (VIP and Stalls seats in one order, one payment), a declined payment
//! (compensation), an expiry, a customer cancellation and a partial refund; then at the door: the
//! basket's signed tickets, a check-in, a duplicate scan turned away, and one ticket refunded (its
//! code revoked, its seat back on sale). Availability and revenue are printed after each step.
//!
//! In memory by default. Built with `--features postgres` and given `DATABASE_URL`, it runs on
//! `PostgreSQL` instead (events, checkpoints and read models); built with `--features kafka` (or `full`) and given `KAFKA_BROKERS`, an
//! outbox relay also publishes every committed event to the Kafka/RedPanda topics. Time is a
//! `FixedClock`, so the five-minute expiry happens instantly.

use std::sync::Arc;
use std::time::Duration;

use boxoffice::aggregates::Section;
use boxoffice::domain::TicketKeys;
use boxoffice::domain::{GateName, ScanId};
use boxoffice::prelude::*;
use boxoffice::system::{
    EventSpec, Gate, GatewayChoice, OrderLineRequest, OrderRequest, PaymentDetails, Receipt, RefundRequest,
    ReserveRequest, SystemConfig, SystemError, TicketRefundRequest, TicketingSystem,
};

async fn report(system: &TicketingSystem, event: EventId, after: &str) -> Result<(), SystemError> {
    system.settled().await?;
    let seats = system.available_seats()?;
    let mut line = Vec::new();
    for section in ["Stalls", "VIP"] {
        if let Some(a) = seats.get_availability(event, section).await? {
            line.push(format!(
                "{} {}/{} free ({} held, {} sold)",
                a.section, a.available, a.total_capacity, a.reserved, a.sold
            ));
        }
    }
    let revenue = system.sales_analytics()?.get_metrics(event).await?.map(|m| m.total_revenue.to_string());
    println!("after {after:<22} | {} | revenue {}", line.join(" | "), revenue.unwrap_or_else(|| "0".into()));
    Ok(())
}

/// Step 1: two VIP seats and two Stalls seats in one order, held all or none until one deadline,
/// paid with one payment; the seats are sold in both sections.
async fn mixed_basket(
    system: &TicketingSystem,
    event: EventId,
    vip: &SectionName,
    stalls: &SectionName,
) -> Result<Receipt, SystemError> {
    let line = |section: &SectionName, quantity| OrderLineRequest { section: section.clone(), quantity, tier: None };
    let basket = OrderRequest {
        event_id: event,
        lines: vec![line(vip, 2), line(stalls, 2)],
        customer_id: CustomerId::new_v4(),
        idempotency_key: None,
    };
    let hold = system.reserve_order(basket).await?;
    for held in &hold.lines {
        println!("  held {} {} seats at {} each", held.seats.len(), held.section, held.unit_price);
    }
    println!("  until {} for {} in all", hold.expires_at.format("%H:%M:%S"), hold.total);
    let purchase = system.pay(hold.reservation_id, PaymentDetails { token: "tok_visa".into() }).await?;
    println!("  paid {} in one payment: order completed", purchase.amount);
    Ok(purchase)
}

/// Steps 6 and 7: the basket's tickets at the door, then one of them refunded.
async fn at_the_door(
    system: &TicketingSystem,
    event: EventId,
    basket: ReservationId,
) -> Result<(), Box<dyn std::error::Error>> {
    // 6. At the door: the basket's four tickets, one code each, checked at the north gate.
    let tickets = system.tickets(basket).await?;
    for ticket in &tickets {
        let tail = &ticket.code[ticket.code.len().saturating_sub(16)..];
        println!(
            "  ticket {} ({} at {}): code BX1.…{tail} ({} characters)",
            ticket.ticket_id,
            ticket.section,
            ticket.price,
            ticket.code.len()
        );
    }
    let north = Gate { event_id: event, name: GateName::new("North")? };
    let first = system.check_in(&tickets[0].code, &north, ScanId::new_v4()).await?;
    println!("  north gate, first scan: {first:?}");
    let again = system.check_in(&tickets[0].code, &north, ScanId::new_v4()).await?;
    println!("  north gate, same code again: {again:?}");
    report(system, event, "6. check-in").await?;

    // 7. One VIP guest cannot come: that ticket alone is refunded at its own price; its code
    // stops admitting and its seat goes back on sale in VIP.
    let guest = tickets.iter().rev().find(|t| t.section.as_str() == "VIP").ok_or("the basket has VIP tickets")?;
    let refunded = system
        .refund_tickets(TicketRefundRequest {
            reservation_id: basket,
            tickets: vec![guest.ticket_id],
            reason: "guest cannot come".into(),
            idempotency_key: Some("guest-2".into()),
        })
        .await?;
    println!("  refunded ticket {}: {} back", guest.ticket_id, refunded.amount);
    let revoked = system.check_in(&guest.code, &north, ScanId::new_v4()).await?;
    println!("  north gate, refunded code: {revoked:?}");
    report(system, event, "7. ticket refund").await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    // DATABASE_URL and KAFKA_BROKERS choose the backends; neither set means all in memory.
    let mut config = SystemConfig::from_env()?;
    // A real deployment sets PAYMENT_GATEWAY (the system refuses to start without it); this demo
    // runs on the simulated provider, which moves no money, unless told otherwise.
    if config.payment_gateway.is_none() {
        config.payment_gateway = Some(GatewayChoice::Simulated);
        println!("payments: simulated gateway (a demo that moves no money; PAYMENT_GATEWAY=stripe for Stripe)");
    }
    println!(
        "event store: {}; event bus: {}",
        if config.database_url.is_some() { "PostgreSQL (DATABASE_URL)" } else { "in memory" },
        config.kafka_brokers.as_deref().map_or_else(|| "none".to_owned(), |b| format!("Kafka at {b} (KAFKA_BROKERS)"))
    );

    // Ticket codes are signed from BOXOFFICE_TICKET_KEY; a deployment sets it (the system never
    // makes one up). The demo signs with a throwaway key when it is not set.
    if config.ticket_keys.is_none() {
        config.ticket_keys = Some(TicketKeys::ephemeral());
        println!("tickets: signed with a throwaway key (set {} to keep codes valid across runs)", TicketKeys::VARIABLE);
    }

    let clock = FixedClock::new(chrono::Utc::now());
    let simulated = matches!(config.payment_gateway, Some(GatewayChoice::Simulated));
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let mut builder = TicketingSystem::builder_from_config(&config).await?.clock(Arc::new(clock.clone()));
    if simulated {
        // The demo's own simulated provider, so it can decline a card on cue and show its ledger.
        builder = builder.payment_gateway(gateway.clone());
    }
    let system = builder.build().await?;

    let eur = Currency::EUR;
    let (stalls, vip) = (SectionName::new("Stalls")?, SectionName::new("VIP")?);
    let event = system
        .create_event(EventSpec {
            name: "RustConf Live".into(),
            venue: Venue::new(VenueId::new_v4(), "Harbour Hall")?,
            date: clock.now() + chrono::Duration::days(60),
            sections: vec![
                Section { name: stalls.clone(), capacity: Capacity::new(100)? },
                Section { name: vip.clone(), capacity: Capacity::new(10)? },
            ],
            pricing_tiers: vec![
                PricingTier::new(TierKind::Regular, stalls.clone(), Money::new(4_500, eur), None)?,
                PricingTier::new(TierKind::Vip, vip.clone(), Money::new(15_000, eur), None)?,
            ],
            policy: SalesPolicy::default(),
        })
        .await?;
    system.publish_event(event).await?;
    system.open_sales(event).await?;
    report(&system, event, "sales opened").await?;

    let request = |section: &SectionName, quantity| ReserveRequest {
        event_id: event,
        section: section.clone(),
        quantity,
        customer_id: CustomerId::new_v4(),
        idempotency_key: None,
    };
    let card = || PaymentDetails { token: "tok_visa".into() };

    // 1. A mixed basket: two VIP seats and two Stalls seats in one order, one payment.
    let purchase = mixed_basket(&system, event, &vip, &stalls).await?;
    report(&system, event, "1. mixed basket").await?;
    let basket = purchase.reservation_id;

    // 2. The card is declined: the saga compensates and the seats go back.
    gateway.add_failures(1);
    let hold = system.reserve(request(&stalls, 4)).await?;
    match system.pay(hold.reservation_id, card()).await {
        Err(SystemError::PaymentDeclined { reason, .. }) => println!("  payment declined ({reason}): seats released"),
        other => println!("  unexpected: {other:?}"),
    }
    report(&system, event, "2. declined payment").await?;

    // 3. Nobody pays: five minutes later the hold expires.
    let hold = system.reserve(request(&stalls, 3)).await?;
    report(&system, event, "3a. hold taken").await?;
    clock.advance(Duration::from_secs(5 * 60));
    system.settled().await?;
    println!("  clock +5 min: reservation {:?}", system.reservation(hold.reservation_id).await?.status);
    report(&system, event, "3b. hold expired").await?;

    // 4. The customer changes their mind.
    let hold = system.reserve(request(&vip, 1)).await?;
    system.cancel_reservation(hold.reservation_id).await?;
    report(&system, event, "4. cancellation").await?;

    // 5. A partial refund: part of the basket's payment goes back through the payment gateway.
    let refund = system
        .refund(RefundRequest {
            reservation_id: basket,
            amount: Some(Money::new(5_000, eur)),
            reason: "restricted view".into(),
            idempotency_key: Some("restricted-view".into()),
        })
        .await?;
    println!("  refund {} of {}: {:?}", refund.amount, purchase.amount, refund.status);
    if simulated {
        let at_gateway = gateway.refunded(purchase.payment_id).map_or_else(|| "nothing".to_owned(), |m| m.to_string());
        println!("  the gateway's ledger: {at_gateway} given back for payment {}", purchase.payment_id);
    }
    report(&system, event, "5. partial refund").await?;

    at_the_door(&system, event, basket).await?;

    let log = system.event_store().head_position().await?;
    println!("{log} events in the log; every state above is rebuilt from them");
    if let Some(mut published) = system.published_position() {
        tokio::time::timeout(Duration::from_secs(30), published.wait_for(|p| *p >= log)).await??;
        println!("outbox relay: every event up to position {log} published to Kafka");
    }
    system.shutdown().await;
    Ok(())
}
