//! The gateway conformance kit against `SimulatedGateway`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway_conformance;

use boxoffice::system::SimulatedGateway;
use gateway_conformance::{Harness, Subject};
use secrecy::SecretString;

/// One simulated provider with the tokens it approves and declines.
struct Simulated {
    gateway: SimulatedGateway,
    approving: SecretString,
    declining: SecretString,
}

impl Harness for Simulated {
    fn subject(&self) -> Subject<'_> {
        Subject {
            gateway: &self.gateway,
            approving: &self.approving,
            declining: &self.declining,
            faults: &self.gateway,
        }
    }
}

#[allow(clippy::unused_async)] // the suite awaits every setup
async fn simulated() -> Simulated {
    Simulated {
        gateway: SimulatedGateway::always_succeed(),
        approving: SecretString::from("tok_visa"),
        declining: SecretString::from("tok_declined"),
    }
}

gateway_conformance::gateway_conformance_suite!(simulated);
