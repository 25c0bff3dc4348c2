//! The canonical delivery event in JSON, as documented by
//! `schemas/delivery-event.schema.json`.
//!
//! Required: `timestamp`, `recipient`, `outcome`, and an organisation
//! (`org_id`, or a `sender` it can be derived from). Everything else is
//! optional; fields the schema does not name are kept in `extra`.

use serde_json::{Map, Value};

use super::{DecodeSettings, Decoded, RejectReason, parse_timestamp};
use crate::event::{DeliveryEvent, Outcome, SourceFormat};

/// The fields the canonical form reads; anything else goes to `extra`.
const KNOWN: &[&str] = &[
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

/// The top-level fields of one event, read in one pass: known fields as
/// small values, unknown ones left as raw JSON for `extra`. (Reading the
/// whole object into a map first costs twice as much.)
#[derive(Default)]
struct Fields<'a> {
    known: Map<String, Value>,
    extra: Vec<(std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue)>,
}

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields<'de>, A::Error> {
                let mut fields = Fields::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if KNOWN.contains(&key.as_ref()) {
                        let value: Value = map.next_value()?;
                        fields.known.insert(key.into_owned(), value);
                    } else {
                        fields.extra.push((key, map.next_value()?));
                    }
                }
                Ok(fields)
            }
        }
        d.deserialize_map(Visit)
    }
}

pub fn decode(text: &str, settings: &DecodeSettings) -> Result<Decoded, RejectReason> {
    let fields: Fields<'_> = serde_json::from_str(text).map_err(|e| {
        if text.trim_start().starts_with('{') {
            RejectReason::InvalidJson(e.to_string())
        } else {
            RejectReason::InvalidJson("expected a JSON object".to_string())
        }
    })?;
    let obj = &fields.known;
    let timestamp =
        obj.get("timestamp").ok_or(RejectReason::MissingField("timestamp"))?;
    let event_time = parse_timestamp(timestamp)
        .map_err(|problem| RejectReason::BadField { field: "timestamp", problem })?;
    let recipient =
        string(obj, "recipient")?.ok_or(RejectReason::MissingField("recipient"))?;
    let outcome_text =
        string(obj, "outcome")?.ok_or(RejectReason::MissingField("outcome"))?;
    let outcome = Outcome::parse(&outcome_text).ok_or_else(|| RejectReason::BadField {
        field: "outcome",
        problem: format!(
            "{outcome_text:?} is not one of delivered, deferred, bounced, expired, rejected"
        ),
    })?;
    let sender = string(obj, "sender")?;
    // An empty `org_id` falls back to the sender's; with no sender it stays
    // empty (stored under `org=~empty`) rather than losing the delivery.
    let given = string(obj, "org_id")?;
    let org_id = match given {
        Some(org) if !org.trim().is_empty() => org,
        given => sender
            .as_deref()
            .and_then(|s| settings.orgs.org_for_sender(s))
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
    Ok(Decoded::Events(vec![DeliveryEvent {
        event_time,
        org_id,
        sender,
        recipient,
        message_id: string(obj, "message_id")?,
        queue_id: string(obj, "queue_id")?,
        outcome,
        smtp_code: integer(obj, "smtp_code", 100, 599)?.map(|v| v as u16),
        enhanced_code: string(obj, "enhanced_code")?,
        reply: string(obj, "reply")?,
        remote_host: string(obj, "remote_host")?,
        remote_ip: string(obj, "remote_ip")?,
        sending_ip: string(obj, "sending_ip")?,
        attempt: integer(obj, "attempt", 0, u32::MAX as i64)?.map(|v| v as u32),
        size_bytes: integer(obj, "size", 0, i64::MAX)?.map(|v| v as u64),
        nrcpt: integer(obj, "nrcpt", 0, u32::MAX as i64)?.map(|v| v as u32),
        format: SourceFormat::Canonical,
        extra,
    }]))
}

/// A string field; null and absent are `None`; numbers are accepted as text.
pub(crate) fn string(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, RejectReason> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(RejectReason::BadField {
            field,
            problem: format!("expected text, got {}", type_name(other)),
        }),
    }
}

/// An integer field within `[min, max]`; digits in a string are accepted.
pub(crate) fn integer(
    obj: &Map<String, Value>,
    field: &'static str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, RejectReason> {
    let bad = |problem: String| RejectReason::BadField { field, problem };
    let value = match obj.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => {
            n.as_i64().ok_or_else(|| bad(format!("{n} is not an integer")))?
        }
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| bad(format!("{s:?} is not an integer")))?,
        Some(other) => {
            return Err(bad(format!("expected an integer, got {}", type_name(other))));
        }
    };
    if value < min || value > max {
        return Err(bad(format!("{value} is outside {min}..={max}")));
    }
    Ok(Some(value))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_one(text: &str) -> Result<DeliveryEvent, RejectReason> {
        match decode(text, &DecodeSettings::default())? {
            Decoded::Events(mut events) => Ok(events.remove(0)),
            other => panic!("unexpected {other:?}"),
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
            (r#"{"timestamp":1,"recipient"#, "invalid_json"),
            ("[1,2]", "invalid_json"),
        ];
        for (text, code) in cases {
            let err = decode_one(text).unwrap_err();
            assert_eq!(err.as_str(), *code, "{text}: {err}");
        }
    }
}
