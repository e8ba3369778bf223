//! The one abstraction every aggregate implements.

use smallvec::{SmallVec, smallvec};

use super::{Effect, Message, MessageKind};

/// The effects a single reduction returns; four fit inline without allocating.
pub type Effects<A> = SmallVec<[Effect<A>; 4]>;

/// A pure state machine: given the current state and an action, mutate the state and describe
/// the follow-up work as [`Effect`] values. No I/O, no clock reads and no randomness outside of
/// `Env`.
///
/// By convention an event-sourced reducer answers a command either with
/// [`Effect::Persist`] (the events it applied) or with [`Effect::Reject`] (and leaves the state
/// untouched), and answers an event by applying it with no effects, so folding stored events
/// through `reduce` rebuilds the state.
///
/// ```
/// use boxoffice::framework::{Effect, Effects, Reducer};
/// use smallvec::smallvec;
///
/// struct Counter;
///
/// #[derive(Debug, Clone, PartialEq)]
/// enum Action { Add(u32), Added(u32), TooBig }
///
/// impl Reducer for Counter {
///     type State = u32;
///     type Action = Action;
///     type Env = ();
///
///     fn reduce(&self, state: &mut u32, action: Action, _env: &()) -> Effects<Action> {
///         match action {
///             Action::Add(n) if state.checked_add(n).is_none() => smallvec![Effect::Reject(Box::new(Action::TooBig))],
///             Action::Add(n) => {
///                 *state += n;
///                 smallvec![Effect::Persist(smallvec![Action::Added(n)])]
///             }
///             Action::Added(n) => { *state += n; smallvec![] }
///             Action::TooBig => smallvec![],
///         }
///     }
/// }
///
/// let mut total = 0;
/// let effects = Counter.reduce(&mut total, Action::Add(2), &());
/// assert_eq!(total, 2);
/// assert!(matches!(effects.as_slice(), [Effect::Persist(events)] if events[..] == [Action::Added(2)]));
/// ```
pub trait Reducer: Send + Sync + 'static {
    /// The state this reducer owns.
    type State: Send + 'static;
    /// Everything it accepts: commands, events and rejections.
    type Action: Send + 'static;
    /// Injected dependencies: clock, id generator, gateways, configuration.
    type Env: Send + Sync + 'static;

    /// Handles one action.
    fn reduce(&self, state: &mut Self::State, action: Self::Action, env: &Self::Env) -> Effects<Self::Action>;

    /// Whether `action` is the command that starts a new instance (its stream is almost always
    /// empty when it arrives, as for a reservation under a fresh id): a runtime may decide it on
    /// the default state without loading the stream first, relying on the append's expected
    /// version to find out otherwise. The default: never.
    fn creates(action: &Self::Action) -> bool {
        let _ = action;
        false
    }

    /// Whether `state` expects no more commands in the normal course of things (a finished
    /// reservation, a settled payment): a runtime that caches states may let it go soon. A
    /// command that comes later still works, from the reloaded state. The default: never.
    fn at_rest(state: &Self::State) -> bool {
        let _ = state;
        false
    }
}

/// The contract of an event-sourced reducer, written once: an event is applied and answers
/// nothing; a rejection answers nothing; a command is `decide`d against the state without
/// touching it, and then either its events (none for a command already carried out) are applied
/// and returned in one [`Effect::Persist`], or its refusal, wrapped by `rejected`, is the one
/// [`Effect::Reject`] and the state stays as it was. Folding a stream's events through the
/// reducer therefore rebuilds its state.
///
/// ```
/// use boxoffice::framework::{Effect, Message, MessageKind, event_sourced};
///
/// #[derive(Debug, Clone, PartialEq)]
/// enum Action { Add(u32), Added(u32), TooBig(u32) }
/// impl Message for Action {
///     fn kind(&self) -> MessageKind {
///         match self { Action::Add(_) => MessageKind::Command, Action::Added(_) => MessageKind::Event, Action::TooBig(_) => MessageKind::Rejection }
///     }
///     fn name(&self) -> &'static str { "action" }
/// }
///
/// let decide = |total: &u32, action| match action {
///     Action::Add(n) if total.checked_add(n).is_none() => Err(n),
///     Action::Add(n) => Ok(Some(Action::Added(n))),
///     _ => Ok(None),
/// };
/// let apply = |total: &mut u32, event: &Action| if let Action::Added(n) = event { *total += n };
/// let mut total = u32::MAX - 1;
/// let refused = event_sourced(&mut total, Action::Add(2), decide, apply, Action::TooBig);
/// assert_eq!((refused.as_slice(), total), ([Effect::Reject(Box::new(Action::TooBig(2)))].as_slice(), u32::MAX - 1));
/// let added = event_sourced(&mut total, Action::Add(1), decide, apply, Action::TooBig);
/// assert_eq!((added.len(), total), (1, u32::MAX));
/// ```
pub fn event_sourced<S, A, E, I>(
    state: &mut S,
    action: A,
    decide: impl FnOnce(&S, A) -> Result<I, E>,
    apply: impl Fn(&mut S, &A),
    rejected: impl FnOnce(E) -> A,
) -> Effects<A>
where
    A: Message,
    I: IntoIterator<Item = A>,
{
    match action.kind() {
        MessageKind::Event => {
            apply(state, &action);
            Effects::new()
        }
        MessageKind::Rejection => Effects::new(),
        MessageKind::Command => match decide(state, action) {
            Ok(events) => {
                let events: SmallVec<[A; 4]> = events.into_iter().collect();
                if events.is_empty() {
                    return Effects::new();
                }
                for event in &events {
                    apply(state, event);
                }
                smallvec![Effect::Persist(events)]
            }
            Err(error) => smallvec![Effect::Reject(Box::new(rejected(error)))],
        },
    }
}
