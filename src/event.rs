//! The canonical delivery event: one recipient attempt, whatever log it
//! came from, as every input format is turned into and as the output table
//! stores it (with its classification added).
//!
//! `schemas/delivery-event.schema.json` documents the JSON form.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What happened to one delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Accepted by the receiving server.
    Delivered,
    /// Failed temporarily; it will be retried.
    Deferred,
    /// Failed permanently.
    Bounced,
    /// Given up after retrying until the queue lifetime ran out.
    Expired,
    /// Refused before queueing (policy, limits, authentication).
    Rejected,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Delivered,
        Outcome::Deferred,
        Outcome::Bounced,
        Outcome::Expired,
        Outcome::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Deferred => "deferred",
            Outcome::Bounced => "bounced",
            Outcome::Expired => "expired",
            Outcome::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        Self::ALL.into_iter().find(|o| o.as_str().eq_ignore_ascii_case(text))
    }

    /// Whether the attempt failed and should be classified.
    pub fn is_failure(self) -> bool {
        self != Outcome::Delivered
    }
}

/// Which input format an event was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Canonical,
    Postfix,
    Kumomta,
}

impl SourceFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Canonical => "canonical",
            SourceFormat::Postfix => "postfix",
            SourceFormat::Kumomta => "kumomta",
        }
    }
}

/// One recipient attempt, in the canonical form.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeliveryEvent {
    pub event_time: DateTime<Utc>,
    pub org_id: String,
    pub sender: Option<String>,
    pub recipient: String,
    pub message_id: Option<String>,
    pub queue_id: Option<String>,
    pub outcome: Outcome,
    pub smtp_code: Option<u16>,
    pub enhanced_code: Option<String>,
    pub reply: Option<String>,
    pub remote_host: Option<String>,
    pub remote_ip: Option<String>,
    pub sending_ip: Option<String>,
    pub attempt: Option<u32>,
    pub size_bytes: Option<u64>,
    pub nrcpt: Option<u32>,
    pub format: SourceFormat,
    /// Fields of the input that the canonical form has no column for, as a
    /// JSON object, kept so nothing the platform sent is lost.
    pub extra: Option<String>,
}

/// A delivery event whose text is borrowed: from the message it was read
/// from where it could be, so decoding a message allocates only for the
/// few values that had to be unescaped or derived.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventView<'a> {
    pub event_time: DateTime<Utc>,
    pub org_id: &'a str,
    pub sender: Option<&'a str>,
    pub recipient: &'a str,
    pub message_id: Option<&'a str>,
    pub queue_id: Option<&'a str>,
    pub outcome: Outcome,
    pub smtp_code: Option<u16>,
    pub enhanced_code: Option<&'a str>,
    pub reply: Option<&'a str>,
    pub remote_host: Option<&'a str>,
    pub remote_ip: Option<&'a str>,
    pub sending_ip: Option<&'a str>,
    pub attempt: Option<u32>,
    pub size_bytes: Option<u64>,
    pub nrcpt: Option<u32>,
    pub format: SourceFormat,
    pub extra: Option<&'a str>,
}

impl EventView<'_> {
    pub fn to_event(&self) -> DeliveryEvent {
        let owned = |s: Option<&str>| s.map(str::to_string);
        DeliveryEvent {
            event_time: self.event_time,
            org_id: self.org_id.to_string(),
            sender: owned(self.sender),
            recipient: self.recipient.to_string(),
            message_id: owned(self.message_id),
            queue_id: owned(self.queue_id),
            outcome: self.outcome,
            smtp_code: self.smtp_code,
            enhanced_code: owned(self.enhanced_code),
            reply: owned(self.reply),
            remote_host: owned(self.remote_host),
            remote_ip: owned(self.remote_ip),
            sending_ip: owned(self.sending_ip),
            attempt: self.attempt,
            size_bytes: self.size_bytes,
            nrcpt: self.nrcpt,
            format: self.format,
            extra: owned(self.extra),
        }
    }
}

impl DeliveryEvent {
    pub fn view(&self) -> EventView<'_> {
        EventView {
            event_time: self.event_time,
            org_id: &self.org_id,
            sender: self.sender.as_deref(),
            recipient: &self.recipient,
            message_id: self.message_id.as_deref(),
            queue_id: self.queue_id.as_deref(),
            outcome: self.outcome,
            smtp_code: self.smtp_code,
            enhanced_code: self.enhanced_code.as_deref(),
            reply: self.reply.as_deref(),
            remote_host: self.remote_host.as_deref(),
            remote_ip: self.remote_ip.as_deref(),
            sending_ip: self.sending_ip.as_deref(),
            attempt: self.attempt,
            size_bytes: self.size_bytes,
            nrcpt: self.nrcpt,
            format: self.format,
            extra: self.extra.as_deref(),
        }
    }
}

/// The domain part of an address, lower-cased: `a@B.com` gives `b.com`.
pub fn domain_of(address: &str) -> Option<String> {
    domain_part(address).map(str::to_ascii_lowercase)
}

/// The domain part of an address as written (not lower-cased).
pub fn domain_part(address: &str) -> Option<&str> {
    // Most addresses begin and end with a letter or digit: nothing to trim
    // (this runs twice for every row written).
    let bare = |s: &str| {
        let b = s.as_bytes();
        b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
    };
    let address = if bare(address) {
        address
    } else {
        address.trim().trim_start_matches('<').trim_end_matches('>')
    };
    // A byte search: `rsplit_once('@')` compares each candidate with a
    // library call.
    let at = address.bytes().rposition(|b| b == b'@')?;
    let domain = &address[at + 1..];
    let domain = if bare(domain) { domain } else { domain.trim().trim_end_matches('.') };
    (!domain.is_empty()).then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lowercased_and_bracket_free() {
        assert_eq!(domain_of("<U@Example.COM>").as_deref(), Some("example.com"));
        assert_eq!(domain_of("root"), None);
        assert_eq!(domain_of("a@"), None);
    }

    #[test]
    fn outcomes_parse_case_insensitively() {
        assert_eq!(Outcome::parse(" Bounced "), Some(Outcome::Bounced));
        assert_eq!(Outcome::parse("lost"), None);
    }
}
