//! Which topic a stream's events go to.

/// Maps stream ids to topics: `{prefix}-{category}-events`, where the category is the stream id
/// up to its first `-`.
///
/// ```
/// use boxoffice::event_bus::TopicRouter;
///
/// let router = TopicRouter::new("shop");
/// assert_eq!(router.topic_for_stream("cart-42"), "shop-cart-events");
/// assert_eq!(router.topic_for_category("order"), "shop-order-events");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRouter {
    prefix: String,
}

impl TopicRouter {
    /// The prefix used when none is configured.
    pub const DEFAULT_PREFIX: &'static str = "ticketing";

    /// A router whose topics start with `prefix`.
    #[must_use]
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// The topic prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The category of a stream: its id up to the first `-` (the whole id when there is none).
    #[must_use]
    pub fn category(stream_id: &str) -> &str {
        stream_id.split_once('-').map_or(stream_id, |(category, _)| category)
    }

    /// The topic that holds the events of `category`.
    #[must_use]
    pub fn topic_for_category(&self, category: &str) -> String {
        format!("{}-{category}-events", self.prefix)
    }

    /// The topic that holds the events of the stream `stream_id`.
    #[must_use]
    pub fn topic_for_stream(&self, stream_id: &str) -> String {
        self.topic_for_category(Self::category(stream_id))
    }

    /// The topics of several categories, e.g. to create them at start-up.
    #[must_use]
    pub fn topics_for_categories<'a>(&self, categories: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        categories.into_iter().map(|c| self.topic_for_category(c)).collect()
    }
}

impl Default for TopicRouter {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::TopicRouter;

    #[test]
    fn category_is_the_id_up_to_the_first_dash() {
        let router = TopicRouter::default();
        assert_eq!(
            router.topic_for_stream("inventory-1b4e28ba-2fa1-11d2-883f-0016d3cca427-VIP"),
            "ticketing-inventory-events"
        );
        assert_eq!(router.topic_for_stream("payment"), "ticketing-payment-events");
    }
}
