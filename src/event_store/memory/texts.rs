//! The payload text of every event in the in-memory log, packed into large shared chunks.

use std::sync::Arc;

/// A chunk is closed once it holds this many bytes of text...
const CHUNK_BYTES: usize = 1 << 20;
/// ...or this many events, whichever comes first: so the open chunk only ever holds recent
/// events, which readers get as trees, and a reader of an old event clones a closed chunk's
/// pointer instead of copying its text.
const CHUNK_EVENTS: usize = 4_096;

/// The longest payload text the log takes, in bytes (spans are 32-bit).
pub(super) const MAX_TEXT_BYTES: usize = u32::MAX as usize;

/// Where one event's text is.
#[derive(Clone, Copy, Debug)]
pub(super) struct TextSpan {
    chunk: u32,
    start: u32,
    len: u32,
}

/// Every text, in append order: one allocation per chunk instead of one per event, so a long log
/// costs its bytes and no allocator overhead per event, and its memory is not a patchwork of
/// small long-lived blocks between the short-lived ones of the events being read.
#[derive(Debug, Default)]
pub(super) struct Texts {
    closed: Vec<Arc<Vec<u8>>>,
    open: Vec<u8>,
    open_events: usize,
}

impl Texts {
    /// Stores `text` (at most [`MAX_TEXT_BYTES`], which the caller checks first).
    pub(super) fn push(&mut self, text: &[u8]) -> TextSpan {
        if !self.open.is_empty() && (self.open.len() + text.len() > CHUNK_BYTES || self.open_events == CHUNK_EVENTS) {
            self.closed.push(Arc::new(std::mem::take(&mut self.open)));
            self.open_events = 0;
        }
        if self.open.capacity() == 0 {
            self.open.reserve_exact(CHUNK_BYTES.max(text.len()));
        }
        // The chunk count, an open chunk's length (below CHUNK_BYTES before this push, or 0) and
        // the text's length (checked by the caller) all fit 32 bits.
        let span = TextSpan {
            chunk: u32::try_from(self.closed.len()).unwrap_or(u32::MAX),
            start: u32::try_from(self.open.len()).unwrap_or(u32::MAX),
            len: u32::try_from(text.len()).unwrap_or(u32::MAX),
        };
        self.open.extend_from_slice(text);
        self.open_events += 1;
        span
    }

    /// The text at `span`, to read outside the log's lock: a closed chunk shared, or a copy of
    /// the bytes while they are still in the open chunk.
    pub(super) fn get(&self, span: TextSpan) -> Text {
        let (start, len) = (span.start as usize, span.len as usize);
        match self.closed.get(span.chunk as usize) {
            Some(chunk) => Text { chunk: Arc::clone(chunk), start, len },
            None => {
                Text { chunk: Arc::new(self.open.get(start..start + len).unwrap_or_default().to_vec()), start: 0, len }
            }
        }
    }
}

/// One event's text, held outside the log.
#[derive(Debug)]
pub(super) struct Text {
    chunk: Arc<Vec<u8>>,
    start: usize,
    len: usize,
}

impl Text {
    /// The bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        self.chunk.get(self.start..self.start + self.len).unwrap_or_default()
    }
}
