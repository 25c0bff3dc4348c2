//! The canonical delivery event in JSON, as documented by
//! `schemas/delivery-event.schema.json`.
//!
//! Required: `timestamp`, `recipient`, `outcome`, and an organisation
//! (`org_id`, or a `sender` it can be derived from). Everything else is
//! optional; fields the schema does not name are kept in `extra`.

use std::borrow::Cow;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::{DecodeSettings, Decoded, RejectReason, kumomta, parse_timestamp};
use crate::event::{EventView, Outcome, SourceFormat};

/// The fields the canonical form reads; anything else goes to `extra`.
const KNOWN: [&str; 16] = [
    "timestamp",
    "org_id",
    "sender",
    "recipient",
    "message_id",
    "queue_id",
    "outcome",
    "smtp_code",
    "enhanced_code",
    "reply",
    "remote_host",
    "remote_ip",
    "sending_ip",
    "attempt",
    "size",
    "nrcpt",
];

/// Where `key` is in [`KNOWN`]: picked by its length and a letter or two,
/// then compared whole once. (Every line has a dozen keys: comparing each
/// with the known names in turn cost more than reading the values.)
fn known_index(key: &str) -> Option<usize> {
    let b = key.as_bytes();
    let i = match (b.len(), b.first()) {
        (9, Some(b't')) => 0,                 // timestamp
        (6, Some(b'o')) => 1,                 // org_id
        (6, Some(b's')) => 2,                 // sender
        (9, Some(b'r')) if b[2] == b'c' => 3, // recipient
        (10, Some(b'm')) => 4,                // message_id
        (8, Some(b'q')) => 5,                 // queue_id
        (7, Some(b'o')) => 6,                 // outcome
        (9, Some(b's')) => 7,                 // smtp_code
        (13, Some(b'e')) => 8,                // enhanced_code
        (5, Some(b'r')) => 9,                 // reply
        (11, Some(b'r')) => 10,               // remote_host
        (9, Some(b'r')) => 11,                // remote_ip
        (10, Some(b's')) => 12,               // sending_ip
        (7, Some(b'a')) => 13,                // attempt
        (4, Some(b's')) => 14,                // size
        (5, Some(b'n')) => 15,                // nrcpt
        _ => return None,
    };
    same_short(b, KNOWN[i].as_bytes()).then_some(i)
}

/// Whether two short byte strings are equal, compared as two words at most
/// (every line has a dozen keys: a library `memcmp` call per key cost more
/// than the rest of the lookup).
fn same_short(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word =
        |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    let half =
        |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap());
    match n {
        // The first and the last eight bytes, overlapping.
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => a == b,
    }
}

/// One JSON value as a field reads it: text borrowed from the input where
/// it has no escapes, numbers, or only the kind of anything else.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Text(Cow<'a, str>),
    Int(i64),
    /// A number that is not an `i64`: a fraction or a large unsigned one.
    Number(Number),
    /// An array, object or boolean, by its kind ("an array").
    Other(&'static str),
}

impl<'a> Scalar<'a> {
    pub(crate) fn of(value: &'a Value) -> Self {
        match value {
            Value::Null => Scalar::Null,
            Value::Bool(_) => Scalar::Other("a boolean"),
            Value::Number(n) => {
                n.as_i64().map_or_else(|| Scalar::Number(n.clone()), Scalar::Int)
            }
            Value::String(s) => Scalar::Text(Cow::Borrowed(s)),
            Value::Array(_) => Scalar::Other("an array"),
            Value::Object(_) => Scalar::Other("an object"),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Text(_) => "text",
            Scalar::Int(_) | Scalar::Number(_) => "a number",
            Scalar::Other(kind) => kind,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other("a boolean"))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(i64::try_from(v)
                    .map_or_else(|_| Scalar::Number(v.into()), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                Ok(Number::from_f64(v).map_or(Scalar::Other("a number"), Scalar::Number))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Scalar<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Scalar<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an object"))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The top-level fields of one event, read in one pass: known fields as
/// scalars borrowed from the input, unknown ones left as raw JSON for
/// `extra`. (Reading the whole object into a map first costs twice as
/// much.) A field given twice keeps its last value, as a map would.
#[derive(Default)]
struct Fields<'a> {
    known: [Option<Scalar<'a>>; KNOWN.len()],
    extra: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Fields<'a> {
    fn get(&self, field: &str) -> Option<&Scalar<'a>> {
        let i = known_index(field).expect("a known field");
        self.known[i].as_ref()
    }

    fn string(&self, field: &'static str) -> Result<Option<Cow<'_, str>>, RejectReason> {
        scalar_string(self.get(field), field)
    }

    fn integer(
        &self,
        field: &'static str,
        min: i64,
        max: i64,
    ) -> Result<Option<i64>, RejectReason> {
        scalar_integer(self.get(field), field, min, max)
    }
}

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields<'de>, A::Error> {
                let mut fields = Fields::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match known_index(&key) {
                        Some(i) => fields.known[i] = Some(map.next_value()?),
                        None => fields.extra.push((key, map.next_value()?)),
                    }
                }
                Ok(fields)
            }
        }
        d.deserialize_map(Visit)
    }
}

pub fn decode(text: &str, settings: &DecodeSettings) -> Result<Decoded, RejectReason> {
    decode_with(text, settings, |event| Decoded::Events(vec![event.to_event()]))
}

/// Decodes one event and hands it to `take` as a view that borrows its
/// text from `text` wherever the JSON has no escapes.
pub fn decode_with<R>(
    text: &str,
    settings: &DecodeSettings,
    take: impl FnOnce(&EventView<'_>) -> R,
) -> Result<R, RejectReason> {
    event_of(&parse(text)?, settings, take)
}

/// Like [`decode_with`] for a JSON object whose format was not fixed:
/// `None` when it is a KumoMTA log record instead (it has a top-level
/// `type` and [`kumomta::looks_like`] one). Reading the keys first spares
/// canonical events the search of their text that telling them apart by
/// text alone needs.
pub(crate) fn decode_detected<R>(
    text: &str,
    settings: &DecodeSettings,
    take: impl FnOnce(&EventView<'_>) -> R,
) -> Result<Option<R>, RejectReason> {
    let fields = parse(text)?;
    if fields.extra.iter().any(|(key, _)| key == "type") && kumomta::looks_like(text) {
        return Ok(None);
    }
    event_of(&fields, settings, take).map(Some)
}

fn parse(text: &str) -> Result<Fields<'_>, RejectReason> {
    serde_json::from_str(text).map_err(|e| {
        if text.trim_start().starts_with('{') {
            RejectReason::InvalidJson(e.to_string())
        } else {
            RejectReason::InvalidJson("expected a JSON object".to_string())
        }
    })
}

/// The event of a canonical object's fields, handed to `take`.
fn event_of<R>(
    fields: &Fields<'_>,
    settings: &DecodeSettings,
    take: impl FnOnce(&EventView<'_>) -> R,
) -> Result<R, RejectReason> {
    let timestamp =
        fields.get("timestamp").ok_or(RejectReason::MissingField("timestamp"))?;
    let event_time = parse_timestamp(timestamp)
        .map_err(|problem| RejectReason::BadField { field: "timestamp", problem })?;
    let recipient =
        fields.string("recipient")?.ok_or(RejectReason::MissingField("recipient"))?;
    let outcome_text =
        fields.string("outcome")?.ok_or(RejectReason::MissingField("outcome"))?;
    let outcome = Outcome::parse(&outcome_text).ok_or_else(|| RejectReason::BadField {
        field: "outcome",
        problem: format!(
            "{outcome_text:?} is not one of delivered, deferred, bounced, expired, rejected"
        ),
    })?;
    let sender = fields.string("sender")?;
    // An empty `org_id` falls back to the sender's; with no sender it stays
    // empty (stored under `org=~empty`) rather than losing the delivery.
    let given = fields.string("org_id")?;
    let org_id = match given {
        Some(org) if !org.trim().is_empty() => org,
        given => sender
            .as_deref()
            .and_then(|s| settings.orgs.org_for_sender(s))
            .map(Cow::Owned)
            .or(given)
            .ok_or(RejectReason::MissingField("org_id"))?,
    };
    let extra = (!fields.extra.is_empty()).then(|| {
        let mut out = String::from("{");
        for (i, (key, raw)) in fields.extra.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(
                &serde_json::to_string(key.as_ref()).expect("a string serializes"),
            );
            out.push(':');
            out.push_str(raw.get());
        }
        out.push('}');
        out
    });
    let message_id = fields.string("message_id")?;
    let queue_id = fields.string("queue_id")?;
    let smtp_code = fields.integer("smtp_code", 100, 599)?.map(|v| v as u16);
    let enhanced_code = fields.string("enhanced_code")?;
    let reply = fields.string("reply")?;
    let remote_host = fields.string("remote_host")?;
    let remote_ip = fields.string("remote_ip")?;
    let sending_ip = fields.string("sending_ip")?;
    let attempt = fields.integer("attempt", 0, u32::MAX as i64)?.map(|v| v as u32);
    let size_bytes = fields.integer("size", 0, i64::MAX)?.map(|v| v as u64);
    let nrcpt = fields.integer("nrcpt", 0, u32::MAX as i64)?.map(|v| v as u32);
    Ok(take(&EventView {
        event_time,
        org_id: &org_id,
        sender: sender.as_deref(),
        recipient: &recipient,
        message_id: message_id.as_deref(),
        queue_id: queue_id.as_deref(),
        outcome,
        smtp_code,
        enhanced_code: enhanced_code.as_deref(),
        reply: reply.as_deref(),
        remote_host: remote_host.as_deref(),
        remote_ip: remote_ip.as_deref(),
        sending_ip: sending_ip.as_deref(),
        attempt,
        size_bytes,
        nrcpt,
        format: SourceFormat::Canonical,
        extra: extra.as_deref(),
    }))
}

/// A string field of a JSON object; null and absent are `None`; numbers
/// are accepted as text.
pub(crate) fn string(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, RejectReason> {
    scalar_string(obj.get(field).map(Scalar::of).as_ref(), field)
        .map(|s| s.map(Cow::into_owned))
}

/// An integer field of a JSON object within `[min, max]`; digits in a
/// string are accepted.
pub(crate) fn integer(
    obj: &Map<String, Value>,
    field: &'static str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, RejectReason> {
    scalar_integer(obj.get(field).map(Scalar::of).as_ref(), field, min, max)
}

fn scalar_string<'s>(
    value: Option<&'s Scalar<'_>>,
    field: &'static str,
) -> Result<Option<Cow<'s, str>>, RejectReason> {
    match value {
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::Text(s)) => Ok(Some(Cow::Borrowed(s))),
        Some(Scalar::Int(n)) => Ok(Some(Cow::Owned(n.to_string()))),
        Some(Scalar::Number(n)) => Ok(Some(Cow::Owned(n.to_string()))),
        Some(other) => Err(RejectReason::BadField {
            field,
            problem: format!("expected text, got {}", other.kind()),
        }),
    }
}

fn scalar_integer(
    value: Option<&Scalar<'_>>,
    field: &'static str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, RejectReason> {
    let bad = |problem: String| RejectReason::BadField { field, problem };
    let value = match value {
        None | Some(Scalar::Null) => return Ok(None),
        Some(Scalar::Int(n)) => *n,
        Some(Scalar::Number(n)) => return Err(bad(format!("{n} is not an integer"))),
        Some(Scalar::Text(s)) if s.trim().is_empty() => return Ok(None),
        Some(Scalar::Text(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| bad(format!("{s:?} is not an integer")))?,
        Some(other) => {
            return Err(bad(format!("expected an integer, got {}", other.kind())));
        }
    };
    if value < min || value > max {
        return Err(bad(format!("{value} is outside {min}..={max}")));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::DeliveryEvent;

    fn decode_one(text: &str) -> Result<DeliveryEvent, RejectReason> {
        match decode(text, &DecodeSettings::default())? {
            Decoded::Events(mut events) => Ok(events.remove(0)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn every_known_field_and_no_other_name_is_found() {
        for (i, name) in KNOWN.iter().enumerate() {
            assert_eq!(known_index(name), Some(i), "{name}");
        }
        let near = [
            "",
            "t",
            "Timestamp",
            "timestamq",
            "recipiemt",
            "remote_ix",
            "rexipient",
            "org_ix",
            "senders",
            "sizes",
            "nrcpts",
            "outcomes",
            "attempts",
            "queue_ix",
            "message_ix",
            "sending_ix",
            "remote_hosx",
            "enhanced_codx",
            "smtp_codx",
            "replx",
            "size ",
        ];
        for name in near {
            assert_eq!(known_index(name), None, "{name:?}");
        }
    }

    #[test]
    fn short_strings_differing_anywhere_are_told_apart() {
        let text = b"abcdefghijklmnopqrst";
        for n in 0..=text.len() {
            let a = &text[..n];
            assert!(same_short(a, a), "{n}");
            assert!(!same_short(a, &text[..n.saturating_sub(1)]) || n == 0);
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!same_short(a, &b), "length {n}, byte {at}");
            }
        }
    }

    #[test]
    fn a_full_event_keeps_unknown_fields_in_extra() {
        let e = decode_one(
            r#"{"timestamp":"2026-12-01T10:00:00Z","org_id":"acme","sender":"a@acme.com",
               "recipient":"b@example.com","outcome":"bounced","smtp_code":550,
               "enhanced_code":"5.1.1","reply":"550 5.1.1 user unknown","campaign":"x1"}"#,
        )
        .unwrap();
        assert_eq!(e.org_id, "acme");
        assert_eq!(e.outcome, Outcome::Bounced);
        assert_eq!(e.smtp_code, Some(550));
        assert_eq!(e.extra.as_deref(), Some(r#"{"campaign":"x1"}"#));
    }

    #[test]
    fn the_organisation_falls_back_to_the_sender_domain() {
        let e = decode_one(
            r#"{"timestamp":1764583200,"sender":"a@Acme.com","recipient":"b@x.com","outcome":"delivered"}"#,
        )
        .unwrap();
        assert_eq!(e.org_id, "acme.com");
        assert_eq!(e.event_time.to_rfc3339(), "2025-12-01T10:00:00+00:00");
    }

    #[test]
    fn broken_events_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            (r#"{"recipient":"b@x","outcome":"bounced","org_id":"a"}"#, "missing_field"),
            (
                r#"{"timestamp":"yesterday","recipient":"b@x","outcome":"bounced","org_id":"a"}"#,
                "bad_field",
            ),
            (
                r#"{"timestamp":1,"recipient":"b@x","outcome":"lost","org_id":"a"}"#,
                "bad_field",
            ),
            (r#"{"timestamp":1,"recipient":"b@x","outcome":"bounced"}"#, "missing_field"),
            (
                r#"{"timestamp":1,"recipient":"b@x","outcome":"bounced","org_id":"a","smtp_code":9999}"#,
                "bad_field",
            ),
            (
                r#"{"timestamp":1,"recipient":["b"],"outcome":"bounced","org_id":"a"}"#,
                "bad_field",
            ),
            (
                r#"{"timestamp":"9999-12-31T23:59:59Z","recipient":"b@x","outcome":"bounced","org_id":"a"}"#,
                "bad_field",
            ),
            (
                r#"{"timestamp":-99999999999999,"recipient":"b@x","outcome":"bounced","org_id":"a"}"#,
                "bad_field",
            ),
            (r#"{"timestamp":1,"recipient"#, "invalid_json"),
            ("[1,2]", "invalid_json"),
        ];
        for (text, code) in cases {
            let err = decode_one(text).unwrap_err();
            assert_eq!(err.as_str(), *code, "{text}: {err}");
        }
    }
}
