//! A local HTTP fake of the part of Stripe's API the Stripe gateway uses, bound to
//! `127.0.0.1:0`: `POST /v1/payment_intents`, `GET /v1/payment_intents/search`,
//! `POST /v1/payment_intents/{id}/cancel` and `POST /v1/refunds`, with Stripe's documented
//! behaviour:
//!
//! - Bearer authentication with [`SECRET_KEY`] (401 otherwise).
//! - `Idempotency-Key`: a request under a key already used replays the saved answer when the
//!   parameters are the same and answers 400 `idempotency_error` when they differ. As at Stripe,
//!   an answer is saved once the endpoint started acting (not for a 400 validation failure).
//! - Test payment methods: `pm_card_visa` succeeds, `pm_card_chargeDeclined` answers 402
//!   `card_error`/`card_declined` with the intent in `requires_payment_method`,
//!   `pm_card_authenticationRequired` leaves the intent in `requires_action`; any other is 400
//!   `resource_missing` (`No such PaymentMethod: '<id>'`, quoting it as Stripe does).
//! - Refunds above what is left answer 400 `amount_too_large`, of a fully refunded charge 400
//!   `charge_already_refunded`.
//! - Search is immediately consistent (real Stripe lags).
//!
//! Fault knobs: [`StripeFake::fail_next_after_acting`] (the next request is processed, then
//! answered 500) and [`StripeFake::hang_next`] (the next request is processed, then answered
//! only after a delay). Every request is recorded ([`StripeFake::requests`]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code, clippy::missing_panics_doc)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The only key the fake accepts.
pub const SECRET_KEY: &str = "sk_test_fake_51HxBoxofficeNeverLogMe";

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`.
    pub method: String,
    /// The path, e.g. `/v1/refunds`.
    pub path: String,
    /// The raw query string (still percent-encoded).
    pub query: String,
    /// Every header, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: String,
    /// The decoded form body (or query, for a GET).
    pub params: Vec<(String, String)>,
}

impl Recorded {
    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What the fake does to the next request.
#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    FailAfterActing,
    Hang(Duration),
}

/// A `PaymentIntent` at the fake.
#[derive(Debug, Clone)]
pub struct FakeIntent {
    /// `pi_fake_…`.
    pub id: String,
    /// Minor units.
    pub amount: i64,
    /// Lowercase ISO code.
    pub currency: String,
    /// Stripe's status.
    pub status: String,
    /// The metadata sent.
    pub metadata: BTreeMap<String, String>,
    /// What was refunded so far.
    pub refunded: i64,
    last_payment_error: Option<Value>,
}

impl FakeIntent {
    fn to_json(&self) -> Value {
        let mut intent = json!({
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_received": if self.status == "succeeded" { self.amount } else { 0 },
            "currency": self.currency,
            "status": self.status,
            "metadata": self.metadata,
            "livemode": false,
            "last_payment_error": self.last_payment_error,
            "client_secret": format!("{}_secret_fake", self.id),
        });
        if self.status == "requires_action" {
            intent["next_action"] = json!({ "type": "use_stripe_sdk" });
        }
        intent
    }
}

#[derive(Debug)]
struct Saved {
    endpoint: String,
    params: Vec<(String, String)>,
    status: StatusCode,
    body: Value,
}

#[derive(Debug, Default)]
struct State {
    intents: Vec<FakeIntent>,
    refunds: usize,
    idempotency: HashMap<String, Saved>,
    requests: Vec<Recorded>,
    faults: Vec<Fault>,
}

/// The running fake. Dropping it stops the server.
pub struct StripeFake {
    base_url: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for StripeFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl StripeFake {
    /// Starts a fake on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::clone(&state);
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&shared);
            async move { handle(&state, method, &uri, &headers, &body).await }
        });
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base_url, state, server }
    }

    /// The base URL to configure the gateway with (`http://127.0.0.1:<port>`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The next request is processed as usual, but answered 500: its answer is lost.
    pub fn fail_next_after_acting(&self) {
        self.state().faults.push(Fault::FailAfterActing);
    }

    /// The next request is processed as usual, but answered only after `delay`.
    pub fn hang_next(&self, delay: Duration) {
        self.state().faults.push(Fault::Hang(delay));
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Every intent whose `metadata[boxoffice_payment_id]` is `payment_id`.
    pub fn intents_for(&self, payment_id: &str) -> Vec<FakeIntent> {
        self.state()
            .intents
            .iter()
            .filter(|i| i.metadata.get("boxoffice_payment_id").map(String::as_str) == Some(payment_id))
            .cloned()
            .collect()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> (StatusCode, Value) {
    let mut error = json!({ "type": kind, "message": message });
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    (status, json!({ "error": error }))
}

async fn handle(state: &Mutex<State>, method: Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Response {
    let body_text = String::from_utf8_lossy(body).into_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let params: Vec<(String, String)> = if method == Method::GET {
        serde_urlencoded::from_str(&query).unwrap_or_default()
    } else {
        serde_urlencoded::from_bytes(body).unwrap_or_default()
    };
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query,
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: body_text,
        params: params.clone(),
    };
    let idempotency_key = recorded.header("idempotency-key").map(str::to_owned);
    let authorized = recorded.header("authorization") == Some(format!("Bearer {SECRET_KEY}").as_str());

    let (fault, status, answer, replayed) = {
        let mut state = lock(state);
        state.requests.push(recorded);
        let fault = if state.faults.is_empty() { Fault::None } else { state.faults.remove(0) };
        if authorized {
            let endpoint = format!("{method} {}", uri.path());
            let mut sorted = params.clone();
            sorted.sort();
            match idempotency_key.as_ref().filter(|_| method == Method::POST).and_then(|k| state.idempotency.get(k)) {
                Some(saved) if saved.endpoint == endpoint && saved.params == sorted => {
                    (fault, saved.status, saved.body.clone(), true)
                }
                Some(_) => {
                    let (status, answer) = error(
                        StatusCode::BAD_REQUEST,
                        "idempotency_error",
                        None,
                        "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                    );
                    (fault, status, answer, false)
                }
                None => {
                    let (status, answer) = route(&mut state, &method, uri.path(), &params);
                    if let Some(key) = idempotency_key.filter(|_| method == Method::POST) {
                        if status != StatusCode::BAD_REQUEST {
                            state
                                .idempotency
                                .insert(key, Saved { endpoint, params: sorted, status, body: answer.clone() });
                        }
                    }
                    (fault, status, answer, false)
                }
            }
        } else {
            let masked = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map_or_else(String::new, |k| {
                    format!("{}***{}", &k[..k.len().min(8)], &k[k.len().saturating_sub(4)..])
                });
            let (status, answer) = error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                &format!("Invalid API Key provided: {masked}"),
            );
            (Fault::None, status, answer, false)
        }
    };

    match fault {
        Fault::None => {}
        Fault::FailAfterActing => {
            let (status, answer) =
                error(StatusCode::INTERNAL_SERVER_ERROR, "api_error", None, "An unknown error occurred");
            return (status, axum::Json(answer)).into_response();
        }
        Fault::Hang(delay) => tokio::time::sleep(delay).await,
    }
    let mut response = (status, axum::Json(answer)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", "true".parse().unwrap());
    }
    response
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn route(state: &mut State, method: &Method, path: &str, params: &[(String, String)]) -> (StatusCode, Value) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "payment_intents"]) => create_intent(state, params),
        ("GET", ["v1", "payment_intents", "search"]) => search(state, params),
        ("POST", ["v1", "payment_intents", id, "cancel"]) => cancel(state, id),
        ("POST", ["v1", "refunds"]) => refund(state, params),
        _ => {
            error(StatusCode::NOT_FOUND, "invalid_request_error", Some("resource_missing"), "Unrecognized request URL")
        }
    }
}

fn metadata(params: &[(String, String)]) -> BTreeMap<String, String> {
    params
        .iter()
        .filter_map(|(n, v)| {
            n.strip_prefix("metadata[").and_then(|k| k.strip_suffix(']')).map(|k| (k.to_owned(), v.clone()))
        })
        .collect()
}

fn create_intent(state: &mut State, params: &[(String, String)]) -> (StatusCode, Value) {
    let Some(amount) = param(params, "amount").and_then(|a| a.parse::<i64>().ok()).filter(|a| *a > 0) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid_integer"),
            "Invalid integer",
        );
    };
    let Some(currency) = param(params, "currency").filter(|c| c.len() == 3) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", Some("parameter_missing"), "Missing currency");
    };
    let confirm = param(params, "confirm") == Some("true");
    let automatic = param(params, "automatic_payment_methods[enabled]") == Some("true");
    let redirects_allowed = param(params, "automatic_payment_methods[allow_redirects]") != Some("never");
    if confirm && automatic && redirects_allowed && param(params, "return_url").is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "A return_url must be specified because this Payment Intent is configured to automatically accept the payment methods enabled in the Dashboard",
        );
    }
    let method = param(params, "payment_method").unwrap_or("");
    let (status, last_payment_error) = match (confirm, method) {
        (false, _) => ("requires_confirmation", None),
        (true, "pm_card_visa") => ("succeeded", None),
        (true, "pm_card_authenticationRequired") => ("requires_action", None),
        (true, "pm_card_chargeDeclined") => (
            "requires_payment_method",
            Some(json!({
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
            })),
        ),
        (true, other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("resource_missing"),
                &format!("No such PaymentMethod: '{other}'"),
            );
        }
    };
    let intent = FakeIntent {
        id: format!("pi_fake_{}", state.intents.len() + 1),
        amount,
        currency: currency.to_owned(),
        status: status.to_owned(),
        metadata: metadata(params),
        refunded: 0,
        last_payment_error: last_payment_error.clone(),
    };
    let body = intent.to_json();
    state.intents.push(intent);
    match last_payment_error {
        Some(mut error) => {
            error["payment_intent"] = body;
            (StatusCode::PAYMENT_REQUIRED, json!({ "error": error }))
        }
        None => (StatusCode::OK, body),
    }
}

fn search(state: &State, params: &[(String, String)]) -> (StatusCode, Value) {
    let query = param(params, "query").unwrap_or("");
    // Only the one query the gateway makes: metadata['<key>']:'<value>'.
    let parsed = query
        .strip_prefix("metadata['")
        .and_then(|rest| rest.split_once("']:'"))
        .and_then(|(key, value)| value.strip_suffix('\'').map(|value| (key.to_owned(), value.to_owned())));
    let Some((key, value)) = parsed else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", None, "Unsupported search query");
    };
    let data: Vec<Value> =
        state.intents.iter().filter(|i| i.metadata.get(&key) == Some(&value)).map(FakeIntent::to_json).collect();
    (
        StatusCode::OK,
        json!({ "object": "search_result", "url": "/v1/payment_intents/search", "has_more": false, "data": data }),
    )
}

fn cancel(state: &mut State, id: &str) -> (StatusCode, Value) {
    let Some(intent) = state.intents.iter_mut().find(|i| i.id == id) else {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such payment_intent: '{id}'"),
        );
    };
    match intent.status.as_str() {
        "requires_payment_method" | "requires_capture" | "requires_confirmation" | "requires_action" | "processing" => {
            "canceled".clone_into(&mut intent.status);
            (StatusCode::OK, intent.to_json())
        }
        _ => {
            let (status, mut answer) = error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("payment_intent_unexpected_state"),
                "This PaymentIntent could not be canceled",
            );
            answer["error"]["payment_intent"] = intent.to_json();
            (status, answer)
        }
    }
}

fn refund(state: &mut State, params: &[(String, String)]) -> (StatusCode, Value) {
    let intent_id = param(params, "payment_intent").unwrap_or("");
    let Some(index) = state.intents.iter().position(|i| i.id == intent_id) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such payment_intent: '{intent_id}'"),
        );
    };
    state.refunds += 1;
    let refund_number = state.refunds;
    let intent = &mut state.intents[index];
    if intent.status != "succeeded" {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("charge_not_refundable"),
            "This PaymentIntent does not have a successful charge to refund.",
        );
    }
    let left = intent.amount - intent.refunded;
    let amount = match param(params, "amount") {
        None => left,
        Some(text) => match text.parse::<i64>() {
            Ok(amount) if amount > 0 => amount,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("parameter_invalid_integer"),
                    "Invalid integer",
                );
            }
        },
    };
    if left == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("charge_already_refunded"),
            "Charge has already been refunded.",
        );
    }
    if amount > left {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("amount_too_large"),
            "Refund amount is greater than unrefunded amount on charge",
        );
    }
    intent.refunded += amount;
    (
        StatusCode::OK,
        json!({
            "id": format!("re_fake_{refund_number}"),
            "object": "refund",
            "amount": amount,
            "currency": intent.currency,
            "payment_intent": intent.id,
            "status": "succeeded",
            "metadata": metadata(params),
        }),
    )
}
