//! Effects are values: a reducer says what became of an action and the runtime carries it out.

use smallvec::SmallVec;

/// What a reducer asks its runtime to do with an action it handled. Reducers never perform I/O:
/// work outside the log (a payment gateway call, a timer) belongs to the runtime, which feeds the
/// outcome back as another command.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<A> {
    /// Events the reducer has already applied to its state. The runtime appends them durably,
    /// with the expected stream version, before it answers; if the append fails the state is
    /// rebuilt from the log, so state never runs ahead of what was stored.
    Persist(SmallVec<[A; 4]>),
    /// The action being reduced was refused; the boxed action (a rejection) says why. Nothing
    /// was persisted and the state is unchanged.
    Reject(Box<A>),
}

impl<A> Effect<A> {
    /// Converts the actions this effect carries, so a child reducer's effects can be returned by
    /// a parent whose action type wraps the child's.
    pub fn map<B>(self, f: impl Fn(A) -> B) -> Effect<B> {
        match self {
            Effect::Persist(events) => Effect::Persist(events.into_iter().map(f).collect()),
            Effect::Reject(action) => Effect::Reject(Box::new(f(*action))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_converts_every_action() {
        let persist: Effect<u32> = Effect::Persist(smallvec::smallvec![1, 2]);
        assert_eq!(persist.map(|n| n * 10), Effect::Persist(smallvec::smallvec![10, 20]));
        assert_eq!(Effect::Reject(Box::new(3)).map(|n| format!("#{n}")), Effect::Reject(Box::new("#3".to_owned())));
    }
}
