//! KumoMTA JSON log records (`Delivery`, `Bounce`, `TransientFailure`,
//! `Expiration`, `AdminBounce`, `OOB`; `Reception` and `Feedback` carry no
//! delivery and are skipped).
//!
//! The organisation is the first of: `meta.tenant`, `meta.org_id`, a
//! top-level `tenant`, the tenant part of the queue name
//! (`campaign:tenant@domain`), the sender's domain.

use serde_json::{Map, Value};

use super::canonical::{integer, string};
use super::{DecodeSettings, Decoded, RejectReason, parse_timestamp};
use crate::event::{DeliveryEvent, Outcome, SourceFormat};

const RECORD_TYPES: &[&str] = &[
    "Reception",
    "Delivery",
    "Bounce",
    "TransientFailure",
    "Expiration",
    "AdminBounce",
    "OOB",
    "Feedback",
];

/// Whether a JSON message is a KumoMTA record: a known `type` and a
/// `response` object, which the canonical event has not.
pub fn looks_like(text: &str) -> bool {
    let head = &text[..text.floor_char_boundary(text.len().min(400))];
    head.contains("\"type\"")
        && RECORD_TYPES.iter().any(|t| head.contains(&format!("\"{t}\"")))
        && text.contains("\"response\"")
}

pub fn decode(text: &str, settings: &DecodeSettings) -> Result<Decoded, RejectReason> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| RejectReason::InvalidJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(RejectReason::InvalidJson("expected a JSON object".to_string()));
    };
    let kind = string(&obj, "type")?.ok_or(RejectReason::MissingField("type"))?;
    let outcome = match kind.as_str() {
        "Delivery" => Outcome::Delivered,
        "Bounce" | "AdminBounce" | "OOB" => Outcome::Bounced,
        "TransientFailure" => Outcome::Deferred,
        "Expiration" => Outcome::Expired,
        "Reception" | "Feedback" => {
            return Ok(Decoded::Skipped("kumomta_not_a_delivery"));
        }
        other => {
            return Err(RejectReason::BadField {
                field: "type",
                problem: format!("unknown KumoMTA record type {other:?}"),
            });
        }
    };
    let timestamp =
        obj.get("timestamp").ok_or(RejectReason::MissingField("timestamp"))?;
    let event_time = parse_timestamp(&super::canonical::Scalar::of(timestamp))
        .map_err(|problem| RejectReason::BadField { field: "timestamp", problem })?;
    let recipient =
        string(&obj, "recipient")?.ok_or(RejectReason::MissingField("recipient"))?;
    let sender = string(&obj, "sender")?;
    let org_id = organisation(&obj, sender.as_deref(), settings)?;
    let empty = Map::new();
    let response = obj.get("response").and_then(Value::as_object).unwrap_or(&empty);
    let smtp_code =
        integer(response, "code", 0, 999)?.and_then(|c| u16::try_from(c).ok());
    let enhanced_code =
        response.get("enhanced_code").and_then(Value::as_object).and_then(|e| {
            let part = |k: &str| e.get(k).and_then(Value::as_u64);
            Some(format!("{}.{}.{}", part("class")?, part("subject")?, part("detail")?))
        });
    let peer = obj.get("peer_address").and_then(Value::as_object).unwrap_or(&empty);
    let source = obj.get("source_address").and_then(Value::as_object).unwrap_or(&empty);
    let headers = obj.get("headers").and_then(Value::as_object).unwrap_or(&empty);
    let message_id = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("message-id"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string);
    let mut extra = Map::new();
    for key in
        ["queue", "site", "egress_pool", "egress_source", "meta", "bounce_classification"]
    {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            extra.insert(key.to_string(), v.clone());
        }
    }
    Ok(Decoded::Events(vec![DeliveryEvent {
        event_time,
        org_id,
        sender,
        recipient,
        message_id,
        queue_id: string(&obj, "id")?,
        outcome,
        smtp_code: smtp_code.filter(|c| *c >= 100),
        enhanced_code,
        reply: string(response, "content")?.filter(|s| !s.is_empty()),
        remote_host: string(peer, "name")?.filter(|s| !s.is_empty()),
        remote_ip: string(peer, "addr")?.filter(|s| !s.is_empty()),
        sending_ip: string(source, "address")?.filter(|s| !s.is_empty()),
        attempt: integer(&obj, "num_attempts", 0, u32::MAX as i64)?.map(|v| v as u32),
        size_bytes: integer(&obj, "size", 0, i64::MAX)?.map(|v| v as u64),
        nrcpt: None,
        format: SourceFormat::Kumomta,
        extra: (!extra.is_empty()).then(|| Value::Object(extra).to_string()),
    }]))
}

fn organisation(
    obj: &Map<String, Value>,
    sender: Option<&str>,
    settings: &DecodeSettings,
) -> Result<String, RejectReason> {
    let meta = obj.get("meta").and_then(Value::as_object);
    for key in ["tenant", "org_id"] {
        if let Some(org) = meta.and_then(|m| m.get(key)).and_then(Value::as_str)
            && !org.trim().is_empty()
        {
            return Ok(org.to_string());
        }
    }
    if let Some(org) = string(obj, "tenant")?.filter(|t| !t.trim().is_empty()) {
        return Ok(org);
    }
    if let Some(queue) = string(obj, "queue")?
        && let Some((head, _domain)) = queue.rsplit_once('@')
    {
        let tenant = head.rsplit(':').next().unwrap_or(head);
        if !tenant.is_empty() && head.contains(':') {
            return Ok(tenant.to_string());
        }
    }
    sender
        .and_then(|s| settings.orgs.org_for_sender(s))
        .ok_or(RejectReason::MissingField("meta.tenant"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SourceFormat;
    use crate::formats::Decoder;

    const BOUNCE: &str = r#"{"type":"Bounce","id":"1d98076abbbc11ed940250ebf67f93bd","sender":"news@acme.com","recipient":"u@gmail.com","queue":"spring:acme-corp@gmail.com","site":"gmail","size":1047,"response":{"code":550,"enhanced_code":{"class":5,"subject":1,"detail":1},"content":"The email account that you tried to reach does not exist.","command":"RCPT TO"},"peer_address":{"name":"gmail-smtp-in.l.google.com.","addr":"142.250.1.26"},"timestamp":1764583200,"created":1764583100,"num_attempts":1,"meta":{}}"#;

    #[test]
    fn a_bounce_record_becomes_a_classifiable_event() {
        let mut decoder = Decoder::new(DecodeSettings::default());
        let Decoded::Events(events) = decoder.decode(BOUNCE.as_bytes(), None) else {
            panic!()
        };
        let e = &events[0];
        assert_eq!(e.format, SourceFormat::Kumomta, "told apart from a canonical event");
        assert_eq!(e.org_id, "acme-corp");
        assert_eq!(e.outcome, Outcome::Bounced);
        assert_eq!(e.smtp_code, Some(550));
        assert_eq!(e.enhanced_code.as_deref(), Some("5.1.1"));
        assert_eq!(e.remote_ip.as_deref(), Some("142.250.1.26"));
        assert_eq!(e.attempt, Some(1));
    }

    #[test]
    fn reception_records_are_skipped() {
        let r = r#"{"type":"Reception","id":"x","sender":"a@b.c","recipient":"d@e.f","response":{"code":250},"timestamp":1}"#;
        let mut decoder = Decoder::new(DecodeSettings::default());
        assert!(matches!(decoder.decode(r.as_bytes(), None), Decoded::Skipped(_)));
    }
}
