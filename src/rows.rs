//! Delivery rows between decoding and buffering: decoded and classified,
//! on any thread, and held compactly until the source's writer copies them
//! into its column buffers, in order.
//!
//! A row's text values are [`Span`]s: of the input (the message bytes they
//! were read from) or of its [`Lane`]'s side buffer, for the few values
//! that were unescaped, derived or formatted (the event id, a lower-cased
//! domain, the classification). Preparing a batch of messages thus
//! allocates next to nothing per message, and each value is copied once,
//! from where it was read to where it is buffered.

use std::io::Write;

use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::classify::verdict_of;
use crate::event::{EventView, Outcome, SourceFormat, domain_part};
use crate::formats::{Decoded, RejectReason};
use crate::taxonomy::{Classifier, Matched};

/// Where a text value lies: in the input a lane was prepared from or, with
/// [`Span::SIDE`] set in `start`, in the lane's side buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    start: usize,
    len: usize,
}

impl Span {
    const SIDE: usize = 1 << (usize::BITS - 1);
    /// No value.
    pub const NULL: Span = Span { start: 0, len: usize::MAX };

    pub fn is_null(self) -> bool {
        self.len == usize::MAX
    }
}

/// The text columns a row holds a span for, in the order of the
/// `deliveries` schema. (The columns of a few fixed values, such as the
/// outcome, are kept as they are.)
#[derive(Clone, Copy, Debug)]
pub enum Text {
    EventId,
    OrgId,
    Sender,
    SenderDomain,
    Recipient,
    RecipientDomain,
    MessageId,
    QueueId,
    EnhancedCode,
    Reply,
    RemoteHost,
    RemoteIp,
    SendingIp,
    Category,
    Reason,
    Matched,
    Extra,
}

/// How many [`Text`] columns there are.
pub const TEXTS: usize = Text::Extra as usize + 1;

/// One delivery event with its classification, ready to be buffered.
#[derive(Clone, Debug)]
pub struct Row {
    pub texts: [Span; TEXTS],
    /// Microseconds since the Unix epoch.
    pub time_micros: i64,
    /// The local date of the event: the partition it belongs to.
    pub date: NaiveDate,
    /// The offset of its message in the source.
    pub offset: i64,
    pub smtp_code: Option<u16>,
    pub attempt: Option<u32>,
    pub size_bytes: Option<u64>,
    pub nrcpt: Option<u32>,
    pub outcome: Outcome,
    pub format: SourceFormat,
    pub severity: Option<&'static str>,
    pub rule: Option<&'static str>,
    /// A rough size once buffered in columns, for flushing by bytes.
    pub approx_bytes: usize,
}

impl Row {
    pub fn text(&self, column: Text) -> Span {
        self.texts[column as usize]
    }
}

/// What one message gave, its rows in its lane.
#[derive(Debug)]
pub enum Message {
    /// Rows `first..first + count` of the lane.
    Rows {
        first: usize,
        count: usize,
    },
    /// A well-formed message that carries no delivery.
    Skipped,
    Rejected(RejectReason),
    /// To be decoded when taken, in order: it needs the writer's join
    /// state (a Postfix line), or it was already written when prepared.
    InOrder,
}

/// What every row of a source shares.
pub struct RowContext<'a> {
    pub classifier: &'a Classifier,
    pub topic: &'a str,
    pub partition: i32,
    /// The partitions' time zone: a row's date is its local date there.
    pub time_zone: Tz,
}

/// The messages a thread prepared, one after another, and their rows.
#[derive(Debug, Default)]
pub struct Lane {
    side: Vec<u8>,
    rows: Vec<Row>,
    messages: Vec<Message>,
}

impl Lane {
    /// Empties the lane, keeping its memory.
    pub fn clear(&mut self) {
        self.side.clear();
        self.rows.clear();
        self.messages.clear();
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The text of the rows, given the input they were prepared from.
    pub fn texts<'a>(&'a self, input: &'a [u8]) -> Texts<'a> {
        Texts { input, side: &self.side }
    }

    pub fn push(&mut self, message: Message) {
        self.messages.push(message);
    }

    /// Adds a message decoded whole (in order, with the join state): its
    /// events are copied to the side buffer.
    pub fn push_decoded(&mut self, cx: &RowContext<'_>, offset: i64, decoded: Decoded) {
        let message = match decoded {
            Decoded::Events(events) => {
                let first = self.rows.len();
                for (index, event) in events.iter().enumerate() {
                    let index = u32::try_from(index).unwrap_or(u32::MAX);
                    self.push_row(cx, &[], offset, index, &event.view());
                }
                Message::Rows { first, count: events.len() }
            }
            Decoded::Skipped(_) => Message::Skipped,
            Decoded::Rejected(reason) => Message::Rejected(reason),
        };
        self.push(message);
    }

    /// Classifies an event and adds its row; `index` is which of its
    /// message's events it is (part of `event_id`). The message itself is
    /// pushed after its rows.
    pub fn push_row(
        &mut self,
        cx: &RowContext<'_>,
        input: &[u8],
        offset: i64,
        index: u32,
        event: &EventView<'_>,
    ) {
        let verdict = verdict_of(cx.classifier, event);
        let mut texts = [Span::NULL; TEXTS];
        let mut set = |column: Text, span: Span| texts[column as usize] = span;
        set(Text::EventId, self.event_id(cx, offset, index));
        set(Text::OrgId, self.span(input, event.org_id));
        set(Text::Sender, self.option(input, event.sender));
        set(Text::SenderDomain, self.domain(input, event.sender));
        set(Text::Recipient, self.span(input, event.recipient));
        set(Text::RecipientDomain, self.domain(input, Some(event.recipient)));
        set(Text::MessageId, self.option(input, event.message_id));
        set(Text::QueueId, self.option(input, event.queue_id));
        set(Text::EnhancedCode, self.option(input, event.enhanced_code));
        set(Text::Reply, self.option(input, event.reply));
        set(Text::RemoteHost, self.option(input, event.remote_host));
        set(Text::RemoteIp, self.option(input, event.remote_ip));
        set(Text::SendingIp, self.option(input, event.sending_ip));
        set(Text::Extra, self.option(input, event.extra));
        let mut matched_len = 0;
        if let Some(verdict) = &verdict {
            set(Text::Category, self.copied(verdict.category()));
            set(Text::Reason, self.option(&[], verdict.reason_id()));
            let matched = match verdict.matched {
                Matched::Phrase(phrase) => self.copied(phrase),
                Matched::Enhanced(code) => self.formatted(format_args!("{code}")),
                Matched::Reply(code) => self.formatted(format_args!("{code}")),
                Matched::Nothing => Span::NULL,
            };
            if !matched.is_null() {
                matched_len = matched.len;
            }
            set(Text::Matched, matched);
        }
        let len = |s: Option<&str>| s.map_or(0, str::len);
        let approx_bytes = 160
            + event.org_id.len()
            + event.recipient.len()
            + len(event.sender)
            + len(event.reply)
            + len(event.extra)
            + len(event.message_id)
            + len(event.remote_host)
            + matched_len;
        self.rows.push(Row {
            texts,
            time_micros: event.event_time.timestamp_micros(),
            date: event.event_time.with_timezone(&cx.time_zone).date_naive(),
            offset,
            smtp_code: event.smtp_code,
            attempt: event.attempt,
            size_bytes: event.size_bytes,
            nrcpt: event.nrcpt,
            outcome: event.outcome,
            format: event.format,
            severity: verdict.map(|v| v.severity.as_str()),
            rule: verdict.map(|v| v.rule.as_str()),
            approx_bytes,
        });
    }

    /// The span of `text`: where it lies in `input` if it was read from
    /// there, else a copy in the side buffer.
    fn span(&mut self, input: &[u8], text: &str) -> Span {
        let base = input.as_ptr() as usize;
        let at = text.as_ptr() as usize;
        if at >= base && at + text.len() <= base + input.len() {
            return Span { start: at - base, len: text.len() };
        }
        self.copied(text)
    }

    fn option(&mut self, input: &[u8], text: Option<&str>) -> Span {
        text.map_or(Span::NULL, |text| self.span(input, text))
    }

    fn copied(&mut self, text: &str) -> Span {
        let start = self.side.len();
        self.side.extend_from_slice(text.as_bytes());
        Span { start: start | Span::SIDE, len: text.len() }
    }

    fn formatted(&mut self, args: std::fmt::Arguments<'_>) -> Span {
        let start = self.side.len();
        self.side.write_fmt(args).expect("writing to memory");
        Span { start: start | Span::SIDE, len: self.side.len() - start }
    }

    /// `topic:partition:offset:index`, without the formatting machinery
    /// (it is made for every row).
    fn event_id(&mut self, cx: &RowContext<'_>, offset: i64, index: u32) -> Span {
        let start = self.side.len();
        let mut digits = itoa::Buffer::new();
        self.side.extend_from_slice(cx.topic.as_bytes());
        self.side.push(b':');
        self.side.extend_from_slice(digits.format(cx.partition).as_bytes());
        self.side.push(b':');
        self.side.extend_from_slice(digits.format(offset).as_bytes());
        self.side.push(b':');
        self.side.extend_from_slice(digits.format(index).as_bytes());
        Span { start: start | Span::SIDE, len: self.side.len() - start }
    }

    /// The lower-cased domain of an address, or null.
    fn domain(&mut self, input: &[u8], address: Option<&str>) -> Span {
        match address.and_then(domain_part) {
            Some(domain) if domain.bytes().any(|b| b.is_ascii_uppercase()) => {
                let start = self.side.len();
                self.side.extend(domain.bytes().map(|b| b.to_ascii_lowercase()));
                Span { start: start | Span::SIDE, len: domain.len() }
            }
            Some(domain) => self.span(input, domain),
            None => Span::NULL,
        }
    }
}

/// Resolves the spans of a lane's rows.
#[derive(Clone, Copy)]
pub struct Texts<'a> {
    input: &'a [u8],
    side: &'a [u8],
}

impl<'a> Texts<'a> {
    /// The text of a span, `None` for [`Span::NULL`].
    ///
    /// # Panics
    ///
    /// When the span is not of this lane and input: spans are cut at the
    /// bounds of text, so any other failure is a mismatch.
    pub fn get(&self, span: Span) -> Option<&'a str> {
        self.bytes(span).map(|bytes| {
            std::str::from_utf8(bytes)
                .expect("a span of the input and side buffer of its own lane")
        })
    }

    /// The bytes of a span's text, not checked to be UTF-8 (see
    /// [`get`](Self::get)).
    pub fn bytes(&self, span: Span) -> Option<&'a [u8]> {
        if span.is_null() {
            return None;
        }
        let (bytes, start) = if span.start & Span::SIDE != 0 {
            (self.side, span.start & !Span::SIDE)
        } else {
            (self.input, span.start)
        };
        let bytes = bytes
            .get(start..start + span.len)
            .expect("a span of the input and side buffer of its own lane");
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    #[test]
    fn text_read_from_the_input_is_not_copied_and_the_rest_is() {
        let classifier = Classifier::builtin();
        let cx = RowContext {
            classifier: &classifier,
            topic: "logs",
            partition: 3,
            time_zone: chrono_tz::Asia::Shanghai,
        };
        let input = "acme a@Mail.Acme.com b@example.com 550 5.1.1 user unknown";
        let word = |n: usize| input.split(' ').nth(n).unwrap();
        let reply = &input[input.find("550").unwrap()..];
        let owned_extra = String::from(r#"{"campaign":"x"}"#);
        let event = EventView {
            event_time: DateTime::from_timestamp(1_764_604_800, 0).unwrap(),
            org_id: word(0),
            sender: Some(word(1)),
            recipient: word(2),
            message_id: None,
            queue_id: None,
            outcome: Outcome::Bounced,
            smtp_code: Some(550),
            enhanced_code: Some(word(4)),
            reply: Some(reply),
            remote_host: None,
            remote_ip: None,
            sending_ip: None,
            attempt: Some(1),
            size_bytes: None,
            nrcpt: None,
            format: SourceFormat::Canonical,
            extra: Some(&owned_extra),
        };
        let mut lane = Lane::default();
        lane.push_row(&cx, input.as_bytes(), 41, 2, &event);
        lane.push(Message::Rows { first: 0, count: 1 });
        let row = &lane.rows()[0];
        let texts = lane.texts(input.as_bytes());
        let text = |column| texts.get(row.text(column));
        assert_eq!(text(Text::EventId), Some("logs:3:41:2"));
        assert_eq!(text(Text::OrgId), Some("acme"));
        assert_eq!(text(Text::SenderDomain), Some("mail.acme.com"));
        assert_eq!(text(Text::RecipientDomain), Some("example.com"));
        assert_eq!(text(Text::Reply), Some(reply));
        assert_eq!(text(Text::Extra), Some(owned_extra.as_str()));
        assert_eq!(text(Text::MessageId), None);
        assert_eq!(text(Text::Category), Some("recipient_unknown"));
        assert_eq!(row.severity, Some("hard"));
        // 2025-12-01 16:00 UTC is the next day in Shanghai.
        assert_eq!(row.date, NaiveDate::from_ymd_opt(2025, 12, 2).unwrap());
        for column in [Text::OrgId, Text::Recipient, Text::Reply, Text::RecipientDomain] {
            assert_eq!(row.text(column).start & Span::SIDE, 0, "{column:?} is borrowed");
        }
        for column in [Text::EventId, Text::SenderDomain, Text::Extra, Text::Category] {
            assert_ne!(row.text(column).start & Span::SIDE, 0, "{column:?} is copied");
        }
    }
}
