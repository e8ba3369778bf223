//! Given / when / then for reducers, public so users test their own reducers the way the crate
//! tests its aggregates. Checks return `Result` instead of panicking, so a test reads
//! `ReducerTest::new(..).given(..)?.when(..).then_persisted(..)?`.

use std::fmt::Debug;

use super::{Effect, Effects, Message, Reducer};

/// A check in a [`ReducerTest`] did not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReducerTestError {
    /// An event passed to `given` was refused instead of applied.
    #[error("given event {event} was rejected: {rejection}")]
    GivenRejected {
        /// The event that should have applied cleanly.
        event: String,
        /// What the reducer answered.
        rejection: String,
    },
    /// An action passed to `given` is not an event.
    #[error("given action {action} is not an event")]
    GivenNotEvent {
        /// The offending action.
        action: String,
    },
    /// The persisted events differ from the expected ones.
    #[error("expected persisted events {expected}, got {actual}")]
    PersistedMismatch {
        /// What the test expected.
        expected: String,
        /// What the reducer persisted.
        actual: String,
    },
    /// The command was expected to be rejected but was not, or the rejection did not match.
    #[error("expected a rejection matching {expected}, got effects {actual}")]
    RejectionMismatch {
        /// A description of the expected rejection.
        expected: String,
        /// What the reducer returned.
        actual: String,
    },
    /// The state check returned false.
    #[error("state check failed ({description}): state is {state}")]
    StateMismatch {
        /// What the check was testing.
        description: String,
        /// The state after the action.
        state: String,
    },
    /// The state changed although the test required it not to.
    #[error("state changed: before {before}, after {after}")]
    StateChanged {
        /// The state before the action.
        before: String,
        /// The state after the action.
        after: String,
    },
}

/// A reducer, its environment and a state built from past events.
pub struct ReducerTest<R: Reducer> {
    reducer: R,
    env: R::Env,
    state: R::State,
}

/// What one action did: the state before and after and the returned effects.
pub struct ReducerOutcome<R: Reducer> {
    before: R::State,
    state: R::State,
    effects: Effects<R::Action>,
}

impl<R> ReducerTest<R>
where
    R: Reducer,
    R::State: Default + Clone + Debug,
    R::Action: Message + Debug,
{
    /// Starts from the default state.
    pub fn new(reducer: R, env: R::Env) -> Self {
        Self { reducer, env, state: R::State::default() }
    }

    /// Applies past events. Fails if one is not an event or is refused.
    ///
    /// # Errors
    /// [`ReducerTestError::GivenNotEvent`] or [`ReducerTestError::GivenRejected`].
    pub fn given(mut self, events: impl IntoIterator<Item = R::Action>) -> Result<Self, ReducerTestError> {
        for event in events {
            if !event.is_event() {
                return Err(ReducerTestError::GivenNotEvent { action: format!("{event:?}") });
            }
            let described = format!("{event:?}");
            let effects = self.reducer.reduce(&mut self.state, event, &self.env);
            if let Some(rejection) = effects.iter().find(|e| matches!(e, Effect::Reject(_))) {
                return Err(ReducerTestError::GivenRejected { event: described, rejection: format!("{rejection:?}") });
            }
        }
        Ok(self)
    }

    /// The state built so far.
    pub fn state(&self) -> &R::State {
        &self.state
    }

    /// Reduces one action and captures what happened.
    pub fn when(mut self, action: R::Action) -> ReducerOutcome<R> {
        let before = self.state.clone();
        let effects = self.reducer.reduce(&mut self.state, action, &self.env);
        ReducerOutcome { before, state: self.state, effects }
    }
}

impl<R> ReducerOutcome<R>
where
    R: Reducer,
    R::State: Debug,
    R::Action: Debug,
{
    /// The effects returned.
    pub fn effects(&self) -> &Effects<R::Action> {
        &self.effects
    }

    /// The state after the action.
    pub fn state(&self) -> &R::State {
        &self.state
    }

    /// The events persisted by top-level [`Effect::Persist`] effects, in order.
    pub fn persisted(&self) -> Vec<&R::Action> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Persist(events) => Some(events.iter()),
                Effect::Reject(_) => None,
            })
            .flatten()
            .collect()
    }

    /// Requires the persisted events to equal `expected`.
    ///
    /// # Errors
    /// [`ReducerTestError::PersistedMismatch`].
    pub fn then_persisted(self, expected: &[R::Action]) -> Result<Self, ReducerTestError>
    where
        R::Action: PartialEq,
    {
        let actual = self.persisted();
        if actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| *a == e) {
            Ok(self)
        } else {
            Err(ReducerTestError::PersistedMismatch {
                expected: format!("{expected:?}"),
                actual: format!("{actual:?}"),
            })
        }
    }

    /// Requires the action to have been rejected with a rejection for which `matches` holds,
    /// nothing persisted, and the state unchanged.
    ///
    /// # Errors
    /// [`ReducerTestError::RejectionMismatch`] or [`ReducerTestError::StateChanged`].
    pub fn then_rejected(
        self,
        description: &str,
        matches: impl FnOnce(&R::Action) -> bool,
    ) -> Result<Self, ReducerTestError>
    where
        R::State: PartialEq,
    {
        let rejection = self.effects.iter().find_map(|e| match e {
            Effect::Reject(action) => Some(action.as_ref()),
            Effect::Persist(_) => None,
        });
        let ok = rejection.is_some_and(matches) && self.persisted().is_empty();
        if !ok {
            return Err(ReducerTestError::RejectionMismatch {
                expected: description.to_owned(),
                actual: format!("{:?}", self.effects),
            });
        }
        self.then_unchanged()
    }

    /// Requires the state to be exactly what it was before the action.
    ///
    /// # Errors
    /// [`ReducerTestError::StateChanged`].
    pub fn then_unchanged(self) -> Result<Self, ReducerTestError>
    where
        R::State: PartialEq,
    {
        if self.before == self.state {
            Ok(self)
        } else {
            Err(ReducerTestError::StateChanged {
                before: format!("{:?}", self.before),
                after: format!("{:?}", self.state),
            })
        }
    }

    /// Requires `check` to hold for the state after the action.
    ///
    /// # Errors
    /// [`ReducerTestError::StateMismatch`].
    pub fn then_state(
        self,
        description: &str,
        check: impl FnOnce(&R::State) -> bool,
    ) -> Result<Self, ReducerTestError> {
        if check(&self.state) {
            Ok(self)
        } else {
            Err(ReducerTestError::StateMismatch {
                description: description.to_owned(),
                state: format!("{:?}", self.state),
            })
        }
    }
}
