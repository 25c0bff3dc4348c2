//! Input formats: from one raw log message to canonical delivery events.
//!
//! Three formats are read: the canonical JSON event
//! ([`canonical`]), Postfix syslog lines ([`postfix`]) and KumoMTA JSON log
//! records ([`kumomta`]). The format is detected per message unless the
//! configuration fixes it. A message either yields events, is skipped as
//! carrying no delivery (a Postfix `cleanup` line, a KumoMTA `Reception`),
//! or is rejected with a [`RejectReason`]: the caller dead-letters it with
//! its raw bytes. Nothing here panics on input, whatever the bytes.

pub mod canonical;
pub mod kumomta;
pub mod postfix;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::event::{DeliveryEvent, EventView, domain_of};

/// Which format to expect, or `auto` to detect it per message.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    #[default]
    Auto,
    Canonical,
    Postfix,
    Kumomta,
}

/// Why a message was dead-lettered. The short code (`as_str`) labels
/// metrics and the `reason` column; `Display` is for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectReason {
    TooLarge { size: usize, limit: usize },
    InvalidUtf8 { valid_up_to: usize },
    Empty,
    InvalidJson(String),
    MissingField(&'static str),
    BadField { field: &'static str, problem: String },
    UnknownFormat,
    UnparsablePostfix(String),
}

impl RejectReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::TooLarge { .. } => "too_large",
            RejectReason::InvalidUtf8 { .. } => "invalid_utf8",
            RejectReason::Empty => "empty",
            RejectReason::InvalidJson(_) => "invalid_json",
            RejectReason::MissingField(_) => "missing_field",
            RejectReason::BadField { .. } => "bad_field",
            RejectReason::UnknownFormat => "unknown_format",
            RejectReason::UnparsablePostfix(_) => "unparsable_postfix",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::TooLarge { size, limit } => write!(
                f,
                "message of {size} bytes exceeds the limit of {limit} bytes (input.max_record_bytes)"
            ),
            RejectReason::InvalidUtf8 { valid_up_to } => {
                write!(f, "message is not UTF-8 (first bad byte at offset {valid_up_to})")
            }
            RejectReason::Empty => f.write_str("message is empty"),
            RejectReason::InvalidJson(e) => write!(f, "message looks like JSON but does not parse: {e}"),
            RejectReason::MissingField(field) => write!(f, "required field `{field}` is missing"),
            RejectReason::BadField { field, problem } => write!(f, "field `{field}`: {problem}"),
            RejectReason::UnknownFormat => f.write_str(
                "message is neither a canonical JSON event, a KumoMTA log record nor a Postfix syslog line",
            ),
            RejectReason::UnparsablePostfix(why) => write!(f, "Postfix line cannot be read: {why}"),
        }
    }
}

/// What one message gave.
#[derive(Debug)]
pub enum Decoded {
    Events(Vec<DeliveryEvent>),
    /// A well-formed message that carries no delivery, with why.
    Skipped(&'static str),
    Rejected(RejectReason),
}

/// What [`Decoder::decode_stateless`] made of one message.
#[derive(Debug)]
pub enum Stateless {
    /// This many events were handed over.
    Events(usize),
    /// A well-formed message that carries no delivery, with why.
    Skipped(&'static str),
    Rejected(RejectReason),
    /// A Postfix line, to be decoded in order with the join state.
    InOrder,
}

/// Maps senders to organisations: an exact address first, then its domain,
/// then the domain itself is the organisation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OrgResolver {
    /// Lower-cased address or domain -> organisation id.
    pub map: HashMap<String, String>,
}

impl OrgResolver {
    /// Reads a mapping file: one `address-or-domain<TAB or =>org` per line,
    /// `#` comments and blank lines allowed.
    pub fn from_file_text(text: &str) -> Result<Self, String> {
        let mut map = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, org) = line
                .split_once('\t')
                .or_else(|| line.split_once('='))
                .or_else(|| line.split_once(','))
                .ok_or_else(|| {
                    format!(
                        "line {}: expected `address-or-domain = org`, got {line:?}",
                        n + 1
                    )
                })?;
            let (key, org) = (key.trim().to_ascii_lowercase(), org.trim().to_string());
            if key.is_empty() || org.is_empty() {
                return Err(format!("line {}: empty address or organisation", n + 1));
            }
            map.insert(key, org);
        }
        Ok(Self { map })
    }

    /// The organisation of a sender, if one can be told.
    pub fn org_for_sender(&self, sender: &str) -> Option<String> {
        let address = sender.trim().trim_start_matches('<').trim_end_matches('>');
        if let Some(org) = self.map.get(&address.to_ascii_lowercase()) {
            return Some(org.clone());
        }
        let domain = domain_of(address)?;
        Some(self.map.get(&domain).cloned().unwrap_or(domain))
    }
}

/// Settings every decoder shares.
#[derive(Clone, Debug)]
pub struct DecodeSettings {
    pub format: InputFormat,
    pub max_record_bytes: usize,
    pub orgs: OrgResolver,
    /// Organisation given to mail with a null sender (bounces the platform
    /// itself sends) when no mapping names one.
    pub null_sender_org: String,
    /// Organisation given when the sender cannot be told (a Postfix
    /// delivery whose `qmgr` line came before the log began).
    pub unknown_sender_org: String,
    /// Time zone of syslog timestamps that carry none.
    pub syslog_timezone: Tz,
    /// Fixed year for syslog timestamps; `None` infers it from the time the
    /// message was received.
    pub syslog_year: Option<i32>,
}

impl Default for DecodeSettings {
    fn default() -> Self {
        Self {
            format: InputFormat::Auto,
            max_record_bytes: 1024 * 1024,
            orgs: OrgResolver::default(),
            null_sender_org: "_system".to_string(),
            unknown_sender_org: "_unknown".to_string(),
            syslog_timezone: Tz::UTC,
            syslog_year: None,
        }
    }
}

/// Decodes the messages of one source (a Kafka partition, an input file).
/// It holds the Postfix join state of that source, which is why there is
/// one decoder per source and why its state is saved with the offsets.
pub struct Decoder {
    settings: DecodeSettings,
    postfix: postfix::JoinState,
}

impl Decoder {
    pub fn new(settings: DecodeSettings) -> Self {
        Self { settings, postfix: postfix::JoinState::default() }
    }

    pub fn settings(&self) -> &DecodeSettings {
        &self.settings
    }

    /// The Postfix join state, to save beside the offsets it belongs to.
    pub fn snapshot(&self) -> postfix::JoinState {
        self.postfix.clone()
    }

    pub fn restore(&mut self, state: postfix::JoinState) {
        self.postfix = state;
    }

    /// Decodes one message. `received` is when the transport got it (the
    /// Kafka timestamp); it anchors syslog's missing year.
    pub fn decode(&mut self, payload: &[u8], received: Option<DateTime<Utc>>) -> Decoded {
        let text = match self.text_of(payload) {
            Ok(text) => text,
            Err(rejected) => return Decoded::Rejected(rejected),
        };
        match self.decode_text(&text) {
            Some(decoded) => decoded,
            None => postfix::decode(&text, received, &self.settings, &mut self.postfix)
                .unwrap_or_else(Decoded::Rejected),
        }
    }

    /// Decodes a message that needs no join state: every JSON format and
    /// every message that is rejected before its format matters. Each event
    /// is handed to `each` (with its index in the message) as a view that
    /// borrows from `payload` where it can. A Postfix line comes back as
    /// [`Stateless::InOrder`]: only [`decode`](Self::decode) can read it,
    /// in order. This half takes `&self`, so a batch of messages can be
    /// decoded on several threads before being taken in order.
    pub fn decode_stateless(
        &self,
        payload: &[u8],
        mut each: impl FnMut(u32, &EventView<'_>),
    ) -> Stateless {
        let text = match self.text_of(payload) {
            Ok(text) => text,
            Err(rejected) => return Stateless::Rejected(rejected),
        };
        let each_view = |event: &EventView<'_>| each(0, event);
        let decoded = match self.route(&text) {
            Route::Canonical => {
                canonical::decode_with(&text, &self.settings, each_view).map(|()| 1)
            }
            Route::Json => {
                match canonical::decode_detected(&text, &self.settings, each_view) {
                    Ok(Some(())) => Ok(1),
                    Ok(None) => return self.kumomta_views(&text, &mut each),
                    Err(reason) => Err(reason),
                }
            }
            Route::Kumomta => return self.kumomta_views(&text, &mut each),
            Route::Postfix => return Stateless::InOrder,
            Route::Unknown => Err(RejectReason::UnknownFormat),
        };
        match decoded {
            Ok(count) => Stateless::Events(count),
            Err(reason) => Stateless::Rejected(reason),
        }
    }

    /// A KumoMTA record's events, handed to `each`.
    fn kumomta_views(
        &self,
        text: &str,
        each: &mut impl FnMut(u32, &EventView<'_>),
    ) -> Stateless {
        match kumomta::decode(text, &self.settings) {
            Ok(Decoded::Events(events)) => {
                for (i, event) in events.iter().enumerate() {
                    each(u32::try_from(i).unwrap_or(u32::MAX), &event.view());
                }
                Stateless::Events(events.len())
            }
            Ok(Decoded::Skipped(why)) => Stateless::Skipped(why),
            Ok(Decoded::Rejected(reason)) | Err(reason) => Stateless::Rejected(reason),
        }
    }

    /// How to read a message's text: by the format the settings fix, or by
    /// what it looks like.
    fn route(&self, text: &str) -> Route {
        match self.settings.format {
            InputFormat::Canonical => Route::Canonical,
            InputFormat::Kumomta => Route::Kumomta,
            InputFormat::Postfix => Route::Postfix,
            InputFormat::Auto if text.starts_with('{') => Route::Json,
            InputFormat::Auto if postfix::looks_like(text) => Route::Postfix,
            InputFormat::Auto => Route::Unknown,
        }
    }

    /// The stateless formats of a message's text; `None` for Postfix.
    fn decode_text(&self, text: &str) -> Option<Decoded> {
        let owned = |event: &EventView<'_>| Decoded::Events(vec![event.to_event()]);
        let result = match self.route(text) {
            Route::Canonical => canonical::decode(text, &self.settings),
            Route::Json => {
                match canonical::decode_detected(text, &self.settings, owned) {
                    Ok(Some(decoded)) => Ok(decoded),
                    Ok(None) => kumomta::decode(text, &self.settings),
                    Err(reason) => Err(reason),
                }
            }
            Route::Kumomta => kumomta::decode(text, &self.settings),
            Route::Postfix => return None,
            Route::Unknown => Err(RejectReason::UnknownFormat),
        };
        Some(result.unwrap_or_else(Decoded::Rejected))
    }

    /// The text of a message, trimmed, or why it has none.
    fn text_of<'a>(&self, payload: &'a [u8]) -> Result<Cow<'a, str>, RejectReason> {
        if payload.len() > self.settings.max_record_bytes {
            return Err(RejectReason::TooLarge {
                size: payload.len(),
                limit: self.settings.max_record_bytes,
            });
        }
        // Every message is checked whole, with SIMD.
        let text = match simdutf8::compat::from_utf8(payload) {
            Ok(t) => Cow::Borrowed(t),
            // Syslog lines carry remote replies byte for byte, and Chinese
            // servers often answer in GBK: a Postfix line keeps its delivery
            // with the bad bytes replaced. Anything else is dead-lettered.
            Err(e) => {
                let lossy = String::from_utf8_lossy(payload);
                let fixed = matches!(
                    self.settings.format,
                    InputFormat::Auto | InputFormat::Postfix
                );
                if !(fixed && postfix::looks_like(&lossy)) {
                    return Err(RejectReason::InvalidUtf8 {
                        valid_up_to: e.valid_up_to(),
                    });
                }
                lossy
            }
        };
        let text = match text {
            Cow::Borrowed(t) => Cow::Borrowed(trim(t)),
            Cow::Owned(t) => Cow::Owned(trim(&t).to_string()),
        };
        if text.is_empty() {
            return Err(RejectReason::Empty);
        }
        Ok(text)
    }
}

fn trim(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// How a message is read (see [`Decoder::route`]).
enum Route {
    Canonical,
    Kumomta,
    /// A JSON object in `auto` mode: canonical, unless its keys say it is a
    /// KumoMTA record.
    Json,
    Postfix,
    Unknown,
}

/// The years an event's time may fall in (see [`parse_timestamp`]).
pub const ACCEPTED_YEARS: std::ops::RangeInclusive<i32> = 1970..=2199;

/// Reads a timestamp given as RFC 3339 text or as Unix seconds or
/// milliseconds (a number above 10^11 is taken as milliseconds). A time
/// outside the years 1970 to 2199 is refused: no delivery happened then,
/// and it would be stored under a nonsense date partition.
pub(crate) fn parse_timestamp(
    value: &canonical::Scalar<'_>,
) -> Result<DateTime<Utc>, String> {
    let time = parse_timestamp_unchecked(value)?;
    if !ACCEPTED_YEARS.contains(&time.year()) {
        return Err(format!(
            "{} is outside the years {} to {}",
            time.to_rfc3339(),
            ACCEPTED_YEARS.start(),
            ACCEPTED_YEARS.end()
        ));
    }
    Ok(time)
}

fn parse_timestamp_unchecked(
    value: &canonical::Scalar<'_>,
) -> Result<DateTime<Utc>, String> {
    use canonical::Scalar;
    let (secs, shown) = match value {
        Scalar::Text(s) => {
            return DateTime::parse_from_rfc3339(s.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e})"));
        }
        Scalar::Int(n) => (*n as f64, n.to_string()),
        Scalar::Number(n) => (
            n.as_f64().ok_or_else(|| format!("{n} is not a number of seconds"))?,
            n.to_string(),
        ),
        Scalar::Null => {
            return Err("expected RFC 3339 text or Unix seconds, got null".into());
        }
        Scalar::Other(kind) => {
            return Err(format!("expected RFC 3339 text or Unix seconds, got {kind}"));
        }
    };
    let millis = if secs.abs() > 1e11 { secs } else { secs * 1000.0 };
    if !millis.is_finite() || millis.abs() > 8.0e15 {
        return Err(format!("{shown} is out of range"));
    }
    DateTime::from_timestamp_millis(millis as i64)
        .ok_or_else(|| format!("{shown} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postfix_line_with_a_gbk_reply_keeps_its_delivery() {
        let mut line = b"Dec 15 07:46:45 mx postfix/smtp[1]: ABCDEF12: to=<a@qq.com>, relay=mx.qq.com[1.2.3.4]:25, dsn=5.1.1, status=bounced (host mx.qq.com[1.2.3.4] said: 550 ".to_vec();
        line.extend_from_slice(&[0xd3, 0xc3, 0xbb, 0xa7]); // "用户" in GBK
        line.extend_from_slice(b" user unknown (in reply to RCPT TO command))");
        let mut d = Decoder::new(DecodeSettings {
            syslog_year: Some(2014),
            ..DecodeSettings::default()
        });
        let Decoded::Events(events) = d.decode(&line, None) else {
            panic!("dead-lettered")
        };
        assert!(events[0].reply.as_deref().unwrap().contains("user unknown"));
        // Other formats with bad bytes are still dead letters.
        let json = [b'{', 0xff, b'}'];
        assert!(matches!(
            d.decode(&json, None),
            Decoded::Rejected(RejectReason::InvalidUtf8 { .. })
        ));
    }
}
