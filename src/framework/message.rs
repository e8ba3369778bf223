//! Classifying the values a reducer receives: commands ask for something, events record what
//! happened, rejections say why a command was refused.

/// What role an action plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A request that may be refused. Never persisted.
    Command,
    /// A fact. Persisted, replayed, published.
    Event,
    /// The typed reason a command was refused. Never persisted.
    Rejection,
}

/// Implemented by every action enum so runtimes can tell commands from events without a
/// proc-macro. The name is the stable wire name of the variant: it is stored with every event
/// and must not change when the Rust type is renamed.
///
/// ```
/// use boxoffice::framework::{Message, MessageKind};
///
/// enum Door { Open, Opened }
///
/// impl Message for Door {
///     fn kind(&self) -> MessageKind {
///         match self { Door::Open => MessageKind::Command, Door::Opened => MessageKind::Event }
///     }
///     fn name(&self) -> &'static str {
///         match self { Door::Open => "Open", Door::Opened => "Opened" }
///     }
/// }
///
/// assert!(Door::Open.is_command());
/// assert_eq!(Door::Opened.event_type(), Some("Opened"));
/// ```
pub trait Message {
    /// Whether this is a command, an event or a rejection.
    fn kind(&self) -> MessageKind;

    /// The stable name of this variant.
    fn name(&self) -> &'static str;

    /// True for commands.
    fn is_command(&self) -> bool {
        self.kind() == MessageKind::Command
    }

    /// True for events.
    fn is_event(&self) -> bool {
        self.kind() == MessageKind::Event
    }

    /// The stable event type name, for events only.
    fn event_type(&self) -> Option<&'static str> {
        self.is_event().then(|| self.name())
    }
}
