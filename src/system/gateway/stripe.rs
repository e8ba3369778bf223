//! [`StripeGateway`]: the [payment gateway port](super) against Stripe's HTTP API
//! (`PaymentIntents` and `Refunds`, form-encoded requests, Bearer authentication with the secret
//! key). Behind the `stripe` feature.
//!
//! How the port's guarantees are kept and how Stripe's answers are mapped is documented on
//! [`StripeGateway`].

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, InvalidHeaderValue};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ChargeStatus, GatewayOutcome, PaymentGateway};
use crate::domain::{Money, PaymentId, RefundId};

/// Where the gateway sends requests unless told otherwise.
const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// How long one call of the port may take unless told otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest timeout accepted: well under the reconciler's default 60 s grace period.
const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// The metadata key naming the payment on a `PaymentIntent`.
const PAYMENT_METADATA: &str = "boxoffice_payment_id";
/// The form field setting [`PAYMENT_METADATA`].
const PAYMENT_METADATA_FIELD: &str = "metadata[boxoffice_payment_id]";
/// The form field naming the refund in a Stripe refund's metadata.
const REFUND_METADATA_FIELD: &str = "metadata[boxoffice_refund_id]";
/// How many approved intents the gateway remembers before it starts over.
const REMEMBERED_INTENTS: usize = 10_000;
/// The reason of a charge that needed the customer to authenticate.
const NEEDS_AUTHENTICATION: &str = "requires customer authentication";
/// The reason of a refund of a payment that was never successfully charged.
const NOTHING_TO_REFUND: &str = "no successful charge to refund";

/// How to reach Stripe. Built with [`StripeConfig::new`]; the other fields have defaults and can
/// be set afterwards. `Debug` shows the key as `[REDACTED]`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StripeConfig {
    /// The secret (`sk_…`) or restricted (`rk_…`) API key.
    pub secret_key: SecretString,
    /// The API's base URL, without the `/v1` (default `https://api.stripe.com`). Plain `http` is
    /// accepted only for a loopback host (a local fake in tests).
    pub api_base: String,
    /// How long one call of the port may take in all (default 20 s, at most 30 s, well under the
    /// reconciler's grace period). A call that runs out of time answers `Unknown`.
    pub timeout: Duration,
}

impl StripeConfig {
    /// The configuration for `secret_key` against `https://api.stripe.com`, with a 20 s timeout.
    #[must_use]
    pub fn new(secret_key: SecretString) -> Self {
        Self { secret_key, api_base: DEFAULT_API_BASE.to_owned(), timeout: DEFAULT_TIMEOUT }
    }
}

/// Why a [`StripeGateway`] could not be built. No variant shows the secret key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StripeSetupError {
    /// The secret key is empty.
    #[error("the Stripe secret key is empty")]
    EmptySecretKey,
    /// The secret key holds characters an HTTP header cannot carry.
    #[error("the Stripe secret key cannot be sent in an HTTP header")]
    InvalidSecretKey {
        /// The header's complaint (it does not quote the key).
        #[source]
        source: InvalidHeaderValue,
    },
    /// The API base is not a URL.
    #[error("the Stripe API base `{api_base}` is not a valid URL")]
    InvalidApiBase {
        /// The configured base.
        api_base: String,
        /// Why it does not parse.
        #[source]
        source: <Url as FromStr>::Err,
    },
    /// The API base is not `https` (and not a loopback `http` address), so the key would travel in
    /// clear text.
    #[error("the Stripe API base `{api_base}` must use https (plain http only to a loopback host)")]
    InsecureApiBase {
        /// The configured base.
        api_base: String,
    },
    /// The timeout is zero or longer than 30 s.
    #[error("the Stripe timeout must be above zero and at most {max:?}, got {timeout:?}")]
    InvalidTimeout {
        /// The configured timeout.
        timeout: Duration,
        /// The longest accepted.
        max: Duration,
    },
    /// The HTTP client could not be built (no TLS backend, for one).
    #[error("the Stripe HTTP client could not be built")]
    Client {
        /// The client's complaint.
        #[source]
        source: reqwest::Error,
    },
}

/// A [`PaymentGateway`] that moves real money through Stripe (or test money with an `sk_test_`
/// key).
///
/// # How the contract is kept
///
/// - **Charges** create and confirm a `PaymentIntent` in one call (`POST /v1/payment_intents`,
///   `confirm=true`, no redirect-based payment methods) under the header
///   `Idempotency-Key: boxoffice-charge-<payment id>`, and tag it with
///   `metadata[boxoffice_payment_id]`. A retry of the same charge gets Stripe's saved answer
///   instead of a second charge. Stripe keeps idempotency keys for 24 hours: a charge must not be
///   retried later than that (the engine settles charges within minutes).
/// - **Refunds** go to `POST /v1/refunds` under `Idempotency-Key: boxoffice-refund-<refund id>`
///   with `metadata[boxoffice_refund_id]`; Stripe itself refuses a refund above what is left of
///   the charge, so no refund is ever clipped.
/// - **Status** finds the `PaymentIntent` by its metadata through the search API
///   (`GET /v1/payment_intents/search`).
///
/// # Mapping of Stripe's answers
///
/// | Stripe answers | charge | status |
/// |---|---|---|
/// | intent `succeeded` | `Approved` | `Approved` |
/// | HTTP 402 `card_error`, intent `requires_payment_method` or `canceled` | `Declined` (the error `code` and `decline_code`) | `Declined` |
/// | intent `requires_action` (3-D Secure and the like: nobody is there to authenticate) | the intent is cancelled, then `Declined` ("requires customer authentication"); `Unknown` if the cancel fails | the same: cancelled, then `Declined` |
/// | intent `processing`, `requires_capture`, `requires_confirmation` | `Unknown` | `Unknown` |
/// | HTTP 400 `idempotency_error` (the key was used with other parameters) | `Unknown` | - |
/// | another HTTP 400 (Stripe refused the request before acting) | `Declined` (the error `code`) | - |
/// | timeout, connection error, HTTP 401/403/404/409/429/5xx, an unreadable body | `Unknown` | `Unknown` |
/// | no intent under the payment id | - | `NotCharged` |
///
/// An `idempotency_error` answers `Unknown`, not `Declined`: an earlier request under the same key
/// (with the same payment id) may have taken the money, so only [`PaymentGateway::status`] can
/// tell. An HTTP 401 (a wrong or revoked key) answers `Unknown` too, so the payment waits for
/// reconciliation instead of being failed for a configuration mistake.
///
/// Refunds: refund `succeeded` or `pending` answers `Approved` (Stripe accepted the refund and
/// completes a `pending` one on its own; a refund that fails later is reported by Stripe's
/// `charge.refund.updated` webhook, which this adapter does not consume), `failed` or `canceled`
/// answers `Declined`, an HTTP 400 (`charge_already_refunded`, `amount_too_large`, any other
/// refusal before acting) answers `Declined`, `idempotency_error`, timeouts, connection errors and
/// 5xx answer `Unknown` (reconciliation sends the refund again under its refund id). A refund of a
/// payment whose intent did not succeed answers `Declined` ("no successful charge to refund")
/// without calling Stripe.
///
/// # Search is eventually consistent
///
/// Stripe indexes objects for search asynchronously: an intent created a moment ago may not be
/// found yet (Stripe documents under a minute in normal operation, longer during incidents). So:
///
/// - [`PaymentGateway::status`] may answer [`ChargeStatus::NotCharged`] for a charge made in the
///   last minute or so. The reconciler only asks about charges older than its grace period
///   (default 60 s, see
///   [`TicketingSystemBuilder::payment_reconciliation`](crate::system::TicketingSystemBuilder::payment_reconciliation));
///   do not configure a shorter grace period with this adapter.
/// - A refund whose charge search cannot find answers `Unknown`, not `Declined`: the engine only
///   refunds charges it recorded as approved, so "not found" means "not indexed yet", and
///   reconciliation sends the refund again later. To avoid the lag in the common case the gateway
///   remembers the intent of every approved charge it saw in this process.
///
/// # Secrets and time
///
/// The secret key goes into one `Authorization` header marked sensitive; the token only into the
/// body of `POST /v1/payment_intents`. Neither appears in a reason, an error or a tracing field:
/// reasons are built from Stripe's machine-readable codes only, never from its human-readable
/// `message` (which can quote the payment method). Every call of the port, however many HTTP
/// requests it makes, returns within [`StripeConfig::timeout`].
pub struct StripeGateway {
    client: Client,
    api_base: String,
    timeout: Duration,
    /// The intent of every approved charge seen here, so a refund need not wait for search.
    approved: Mutex<HashMap<PaymentId, FoundIntent>>,
}

impl fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeGateway")
            .field("api_base", &self.api_base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl StripeGateway {
    /// A gateway for `config`. It makes no request yet.
    ///
    /// # Errors
    /// `StripeSetupError` when the key is empty or not header-safe, the API base is not an
    /// `https` URL (or a loopback `http` one), the timeout is zero or above 30 s, or the HTTP
    /// client cannot be built.
    pub fn new(config: StripeConfig) -> Result<Self, StripeSetupError> {
        let StripeConfig { secret_key, api_base, timeout } = config;
        let key = secret_key.expose_secret();
        if key.trim().is_empty() {
            return Err(StripeSetupError::EmptySecretKey);
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|source| StripeSetupError::InvalidSecretKey { source })?;
        authorization.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization);

        let api_base = api_base.trim_end_matches('/').to_owned();
        let url = Url::parse(&api_base)
            .map_err(|source| StripeSetupError::InvalidApiBase { api_base: api_base.clone(), source })?;
        let https = match url.scheme() {
            "https" => true,
            "http" if is_loopback(&url) => false,
            _ => return Err(StripeSetupError::InsecureApiBase { api_base }),
        };
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(StripeSetupError::InvalidTimeout { timeout, max: MAX_TIMEOUT });
        }

        let client = Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(https)
            .user_agent(concat!("boxoffice/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| StripeSetupError::Client { source })?;
        Ok(Self { client, api_base, timeout, approved: Mutex::new(HashMap::new()) })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_base)
    }

    fn remembered(&self) -> MutexGuard<'_, HashMap<PaymentId, FoundIntent>> {
        self.approved.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, payment_id: PaymentId, intent: &Intent) {
        let mut approved = self.remembered();
        if approved.len() >= REMEMBERED_INTENTS {
            approved.clear();
        }
        approved.insert(payment_id, FoundIntent { id: intent.id.clone(), currency: intent.currency.clone() });
    }

    /// Runs one call of the port within the timeout.
    async fn bounded<T>(&self, call: impl Future<Output = Result<T, CallError>>) -> Result<T, CallError> {
        tokio::time::timeout(self.timeout, call).await.unwrap_or(Err(CallError::OutOfTime(self.timeout)))
    }

    async fn send(&self, request: RequestBuilder) -> Result<Answer, CallError> {
        let response = request.send().await.map_err(CallError::from_transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(|source| CallError::Body { status: status.as_u16(), source })?;
        Ok(Answer { status, body: body.to_vec() })
    }

    async fn try_charge(
        &self,
        payment_id: PaymentId,
        amount: Money,
        token: &SecretString,
    ) -> Result<Verdict, CallError> {
        if !amount.is_positive() {
            return Ok(Verdict::Declined("the amount must be above zero".to_owned()));
        }
        let form = [
            ("amount", amount.minor_units().to_string()),
            ("currency", amount.currency().as_str().to_ascii_lowercase()),
            ("payment_method", token.expose_secret().to_owned()),
            ("confirm", "true".to_owned()),
            ("automatic_payment_methods[enabled]", "true".to_owned()),
            ("automatic_payment_methods[allow_redirects]", "never".to_owned()),
            (PAYMENT_METADATA_FIELD, payment_id.to_string()),
        ];
        let request = self
            .client
            .post(self.url("/v1/payment_intents"))
            .header("Idempotency-Key", format!("boxoffice-charge-{payment_id}"))
            .form(&form);
        let answer = self.send(request).await?;
        if answer.status.is_success() {
            let intent: Intent = answer.json()?;
            return Ok(self.settle_intent(payment_id, &intent).await);
        }
        let error = answer.error();
        if answer.status == StatusCode::BAD_REQUEST || answer.status == StatusCode::PAYMENT_REQUIRED {
            if error.as_ref().is_some_and(ApiError::is_idempotency_error) {
                return Ok(Verdict::Unknown(IDEMPOTENCY_CONFLICT.to_owned()));
            }
            // Stripe refused the charge: with the intent it created (a card error), decide by the
            // intent's state; without one it acted on nothing.
            if let Some(intent) = error.as_ref().and_then(|e| e.payment_intent.as_ref()) {
                return Ok(self.settle_intent(payment_id, intent).await);
            }
            return Ok(Verdict::Declined(error.map_or_else(|| "declined by Stripe".to_owned(), |e| e.reason())));
        }
        Ok(Verdict::Unknown(unexpected(answer.status)))
    }

    /// What an intent's state means, cancelling one that waits for the customer to authenticate.
    async fn settle_intent(&self, payment_id: PaymentId, intent: &Intent) -> Verdict {
        match intent.status.as_str() {
            "succeeded" => {
                self.remember(payment_id, intent);
                Verdict::Approved
            }
            "requires_payment_method" | "canceled" => Verdict::Declined(intent.decline_reason()),
            "requires_action" => self.cancel(payment_id, intent).await,
            "processing" => Verdict::Unknown("Stripe is still processing the payment".to_owned()),
            other => Verdict::Unknown(format!("the payment intent is in state `{}`", stripe_code(other))),
        }
    }

    /// Cancels an intent that waits for customer authentication, so no money can move later.
    async fn cancel(&self, payment_id: PaymentId, intent: &Intent) -> Verdict {
        let failed =
            |why: &str| Verdict::Unknown(format!("{NEEDS_AUTHENTICATION}; cancelling the payment intent {why}"));
        if !is_stripe_id(&intent.id) {
            return failed("was not possible: Stripe sent an unexpected intent id");
        }
        let request = self
            .client
            .post(self.url(&format!("/v1/payment_intents/{}/cancel", intent.id)))
            .form(&[("cancellation_reason", "abandoned")]);
        let answer = match self.send(request).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(%payment_id, error = %error, "could not cancel a Stripe payment intent requiring action");
                return failed("failed");
            }
        };
        let after = if answer.status.is_success() {
            answer.json::<Intent>().ok()
        } else {
            // Cancelling an intent already out of `requires_action` answers 400 with the intent.
            answer.error().and_then(|e| e.payment_intent).map(|i| *i)
        };
        match after.as_ref().map(|i| i.status.as_str()) {
            Some("canceled" | "requires_payment_method") => Verdict::Declined(NEEDS_AUTHENTICATION.to_owned()),
            Some("succeeded") => after.map_or(Verdict::Approved, |i| {
                self.remember(payment_id, &i);
                Verdict::Approved
            }),
            _ => failed("failed"),
        }
    }

    /// Every intent tagged with `payment_id`, as Stripe's (eventually consistent) search sees them.
    async fn find(&self, payment_id: PaymentId) -> Result<Vec<Intent>, CallError> {
        let query = format!("metadata['{PAYMENT_METADATA}']:'{payment_id}'");
        let request = self
            .client
            .get(self.url("/v1/payment_intents/search"))
            .query(&[("query", query.as_str()), ("limit", "10")]);
        let answer = self.send(request).await?;
        if !answer.status.is_success() {
            return Err(CallError::Status(answer.status.as_u16()));
        }
        Ok(answer.json::<SearchResult>()?.data)
    }

    async fn try_status(&self, payment_id: PaymentId) -> Result<Verdict, CallError> {
        let intents = self.find(payment_id).await?;
        if intents.is_empty() {
            return Ok(Verdict::NotCharged);
        }
        let rank = |intent: &Intent| match intent.status.as_str() {
            "succeeded" => 0,
            "requires_action" => 1,
            "requires_payment_method" | "canceled" => 3,
            _ => 2,
        };
        // With more than one intent (only possible when a charge was retried after Stripe forgot
        // its idempotency key), the most advanced one tells: any success means money moved.
        let Some(intent) = intents.iter().min_by_key(|i| rank(i)) else { return Ok(Verdict::NotCharged) };
        Ok(self.settle_intent(payment_id, intent).await)
    }

    async fn try_refund(
        &self,
        payment_id: PaymentId,
        refund_id: RefundId,
        amount: Money,
    ) -> Result<Verdict, CallError> {
        if !amount.is_positive() {
            return Ok(Verdict::Declined("the refund amount must be above zero".to_owned()));
        }
        let remembered = self.remembered().get(&payment_id).cloned();
        let intent = if let Some(intent) = remembered {
            intent
        } else {
            let intents = self.find(payment_id).await?;
            if intents.is_empty() {
                return Ok(Verdict::Unknown(
                    "Stripe's search finds no charge under this payment id (yet: search lags behind writes)".to_owned(),
                ));
            }
            let Some(succeeded) = intents.iter().find(|i| i.status == "succeeded") else {
                return Ok(Verdict::Declined(NOTHING_TO_REFUND.to_owned()));
            };
            self.remember(payment_id, succeeded);
            FoundIntent { id: succeeded.id.clone(), currency: succeeded.currency.clone() }
        };
        if !intent.currency.eq_ignore_ascii_case(amount.currency().as_str()) {
            return Ok(Verdict::Declined("the refund's currency is not the charge's".to_owned()));
        }
        let form = [
            ("payment_intent", intent.id),
            ("amount", amount.minor_units().to_string()),
            (REFUND_METADATA_FIELD, refund_id.to_string()),
            (PAYMENT_METADATA_FIELD, payment_id.to_string()),
        ];
        let request = self
            .client
            .post(self.url("/v1/refunds"))
            .header("Idempotency-Key", format!("boxoffice-refund-{refund_id}"))
            .form(&form);
        let answer = self.send(request).await?;
        if answer.status.is_success() {
            let refund: StripeRefund = answer.json()?;
            return Ok(match refund.status.as_str() {
                "succeeded" | "pending" => Verdict::Approved,
                "failed" | "canceled" => Verdict::Declined(
                    refund.failure_reason.map_or_else(|| format!("refund {}", refund.status), |r| stripe_code(&r)),
                ),
                other => Verdict::Unknown(format!("the refund is in state `{}`", stripe_code(other))),
            });
        }
        if answer.status == StatusCode::BAD_REQUEST {
            let error = answer.error();
            if error.as_ref().is_some_and(ApiError::is_idempotency_error) {
                return Ok(Verdict::Unknown(IDEMPOTENCY_CONFLICT.to_owned()));
            }
            return Ok(Verdict::Declined(error.map_or_else(|| "refused by Stripe".to_owned(), |e| e.reason())));
        }
        Ok(Verdict::Unknown(unexpected(answer.status)))
    }
}

/// The reason of an `idempotency_error`.
const IDEMPOTENCY_CONFLICT: &str =
    "Stripe refused the idempotency key: an earlier request under it had other parameters; ask for the status";

#[async_trait]
impl PaymentGateway for StripeGateway {
    async fn charge(&self, payment_id: PaymentId, amount: Money, token: &SecretString) -> GatewayOutcome {
        let verdict = self.bounded(self.try_charge(payment_id, amount, token)).await.unwrap_or_else(Verdict::from);
        verdict.log("charge", payment_id);
        verdict.into_outcome()
    }

    async fn refund(&self, payment_id: PaymentId, refund_id: RefundId, amount: Money) -> GatewayOutcome {
        let verdict = self.bounded(self.try_refund(payment_id, refund_id, amount)).await.unwrap_or_else(Verdict::from);
        verdict.log("refund", payment_id);
        verdict.into_outcome()
    }

    async fn status(&self, payment_id: PaymentId) -> ChargeStatus {
        let verdict = self.bounded(self.try_status(payment_id)).await.unwrap_or_else(Verdict::from);
        verdict.log("status", payment_id);
        match verdict {
            Verdict::Approved => ChargeStatus::Approved,
            Verdict::Declined(reason) => ChargeStatus::Declined { reason },
            Verdict::Unknown(reason) => ChargeStatus::Unknown { reason },
            Verdict::NotCharged => ChargeStatus::NotCharged,
        }
    }
}

/// What a call found out, before it is told in the port's terms.
#[derive(Debug)]
enum Verdict {
    Approved,
    Declined(String),
    Unknown(String),
    NotCharged,
}

impl Verdict {
    fn into_outcome(self) -> GatewayOutcome {
        match self {
            Verdict::Approved => GatewayOutcome::Approved,
            Verdict::Declined(reason) => GatewayOutcome::Declined { reason },
            Verdict::Unknown(reason) => GatewayOutcome::Unknown { reason },
            // Only status finds nothing; a charge or refund never answers this.
            Verdict::NotCharged => GatewayOutcome::Unknown { reason: "no charge found".to_owned() },
        }
    }

    fn log(&self, call: &'static str, payment_id: PaymentId) {
        if let Verdict::Unknown(reason) = self {
            tracing::warn!(%payment_id, call, %reason, "Stripe's answer is not known");
        }
    }
}

impl From<CallError> for Verdict {
    fn from(error: CallError) -> Self {
        if let CallError::Transport { source } = &error {
            tracing::debug!(error = %source, "request to Stripe failed");
        }
        Verdict::Unknown(error.to_string())
    }
}

/// Why a request to Stripe got no usable answer. The messages are fixed texts: no key, no token,
/// nothing quoted from Stripe.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// The whole call ran out of time.
    #[error("Stripe did not answer within {0:?}")]
    OutOfTime(Duration),
    /// The request timed out.
    #[error("the request to Stripe timed out")]
    TimedOut {
        #[source]
        source: reqwest::Error,
    },
    /// The request could not be sent or its answer not received.
    #[error("could not reach Stripe")]
    Transport {
        #[source]
        source: reqwest::Error,
    },
    /// The answer's body broke off.
    #[error("Stripe's answer (HTTP {status}) broke off")]
    Body {
        status: u16,
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not the JSON expected.
    #[error("Stripe's answer is not the JSON expected")]
    Decode {
        #[source]
        source: serde_json::Error,
    },
    /// A status query answered an error.
    #[error("Stripe answered HTTP {0}")]
    Status(u16),
}

impl CallError {
    fn from_transport(source: reqwest::Error) -> Self {
        let source = source.without_url();
        if source.is_timeout() { CallError::TimedOut { source } } else { CallError::Transport { source } }
    }
}

impl From<serde_json::Error> for CallError {
    fn from(source: serde_json::Error) -> Self {
        CallError::Decode { source }
    }
}

/// One HTTP answer, read in full.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl Answer {
    fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T, CallError> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    fn error(&self) -> Option<ApiError> {
        serde_json::from_slice::<ErrorEnvelope>(&self.body).ok().map(|e| e.error)
    }
}

/// A `PaymentIntent`, as much of it as the gateway reads.
#[derive(Debug, Clone, Deserialize)]
struct Intent {
    id: String,
    status: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    last_payment_error: Option<ApiError>,
}

impl Intent {
    fn decline_reason(&self) -> String {
        match (&self.last_payment_error, self.status.as_str()) {
            (Some(error), _) => error.reason(),
            (None, "canceled") => "the payment intent was canceled".to_owned(),
            (None, _) => "declined by Stripe".to_owned(),
        }
    }
}

/// An intent the gateway can refund.
#[derive(Debug, Clone)]
struct FoundIntent {
    id: String,
    currency: String,
}

/// `GET /v1/payment_intents/search`'s answer.
#[derive(Debug, Deserialize)]
struct SearchResult {
    data: Vec<Intent>,
}

/// A Stripe refund, as much of it as the gateway reads.
#[derive(Debug, Deserialize)]
struct StripeRefund {
    status: String,
    #[serde(default)]
    failure_reason: Option<String>,
}

/// `{"error": {...}}`.
#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ApiError,
}

/// Stripe's error object. Its `message` is deliberately not read: it can quote the request.
#[derive(Debug, Clone, Deserialize)]
struct ApiError {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    payment_intent: Option<Box<Intent>>,
}

impl ApiError {
    fn is_idempotency_error(&self) -> bool {
        self.kind.as_deref() == Some("idempotency_error")
    }

    /// A reason from the machine-readable codes only.
    fn reason(&self) -> String {
        let code = self.code.as_deref().or(self.kind.as_deref()).map_or_else(|| "declined".to_owned(), stripe_code);
        match self.decline_code.as_deref() {
            Some(decline) if !decline.is_empty() && Some(decline) != self.code.as_deref() => {
                format!("{code} ({})", stripe_code(decline))
            }
            _ => code,
        }
    }
}

/// A Stripe code kept to the characters codes are made of, so nothing else can slip into a reason.
fn stripe_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect()
}

/// True for ids as Stripe makes them (`pi_…`), safe in a URL path.
fn is_stripe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The reason of an HTTP status the gateway cannot read as an answer.
fn unexpected(status: StatusCode) -> String {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            format!("Stripe refused the API key (HTTP {})", status.as_u16())
        }
        StatusCode::CONFLICT => "Stripe is still processing another request with this idempotency key".to_owned(),
        StatusCode::TOO_MANY_REQUESTS => "Stripe is rate limiting requests (HTTP 429)".to_owned(),
        _ => format!("Stripe answered HTTP {}", status.as_u16()),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => {
            host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base: &str) -> StripeConfig {
        let mut config = StripeConfig::new(SecretString::from("sk_test_123"));
        base.clone_into(&mut config.api_base);
        config
    }

    #[test]
    fn the_api_base_must_be_https_or_loopback() {
        assert!(StripeGateway::new(config("https://api.stripe.com")).is_ok());
        assert!(StripeGateway::new(config("http://127.0.0.1:1234/")).is_ok());
        assert!(matches!(
            StripeGateway::new(config("http://api.stripe.com")),
            Err(StripeSetupError::InsecureApiBase { .. })
        ));
        assert!(matches!(StripeGateway::new(config("not a url")), Err(StripeSetupError::InvalidApiBase { .. })));
    }

    #[test]
    fn bad_keys_and_timeouts_are_refused_without_quoting_the_key() {
        let empty = StripeGateway::new(StripeConfig::new(SecretString::from("")));
        assert!(matches!(empty, Err(StripeSetupError::EmptySecretKey)));
        let bad = StripeGateway::new(StripeConfig::new(SecretString::from("sk_test_\nhunter2")));
        let message = bad.err().map(|e| e.to_string());
        assert!(message.is_some_and(|m| !m.contains("hunter2")), "a key with a newline is refused, unquoted");
        let mut slow = config("https://api.stripe.com");
        slow.timeout = Duration::from_secs(61);
        assert!(matches!(StripeGateway::new(slow), Err(StripeSetupError::InvalidTimeout { .. })));
    }

    #[test]
    fn reasons_come_from_codes_only() {
        let error = ApiError {
            kind: Some("card_error".into()),
            code: Some("card_declined".into()),
            decline_code: Some("insufficient_funds".into()),
            payment_intent: None,
        };
        assert_eq!(error.reason(), "card_declined (insufficient_funds)");
        assert_eq!(stripe_code("weird 'pm_secret' code"), "weirdpm_secretcode");
    }
}
