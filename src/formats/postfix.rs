//! Postfix syslog lines, as rsyslog or Vector ship them.
//!
//! A delivery is a `to=<...>, relay=..., dsn=..., status=...` line of
//! `smtp`, `lmtp`, `error`, `local`, `virtual`, `pipe` or `discard`; its
//! sender, size and recipient count come from the `qmgr` `from=` line of
//! the same queue id, logged earlier. [`JoinState`] holds those per queue id
//! until `qmgr` logs `removed`. It is part of a source's checkpoint: a job
//! restarted from an offset gets the state as it was at that offset, so the
//! sender of a delivery does not depend on where a restart happened.
//!
//! `status=expired` is logged by `qmgr` once per message, without a
//! recipient; it becomes one `expired` event per recipient still deferred,
//! carrying that recipient's last reply (so it is classified by it).
//!
//! BSD syslog stamps carry no year and no zone. The zone is configured; the
//! year is the one that puts the stamp not more than a week after the time
//! the message was received (the Kafka timestamp, or now), unless a year is
//! configured outright, as backfills of old logs need.

use std::collections::BTreeMap;

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use serde::{Deserialize, Serialize};

use super::{DecodeSettings, Decoded, RejectReason};
use crate::event::{DeliveryEvent, Outcome, SourceFormat};
use crate::taxonomy::codes::find_reply_code;

/// Entries not touched for this long are dropped (Postfix's default
/// maximal queue lifetime is five days).
const QUEUE_ENTRY_TTL_SECS: i64 = 10 * 24 * 3600;

/// Per queue id: what the `qmgr` and `cleanup` lines told.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// `Some("")` for the null sender `<>`.
    pub sender: Option<String>,
    pub size: Option<u64>,
    pub nrcpt: Option<u32>,
    pub message_id: Option<String>,
    pub last_seen: i64,
    /// Recipients deferred and not yet delivered or bounced, with the last
    /// reply, its status code and the relay.
    pub pending: Vec<PendingRecipient>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingRecipient {
    pub recipient: String,
    pub reply: Option<String>,
    pub dsn: Option<String>,
    pub relay: Option<String>,
}

/// The join state of one source: queue id -> entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JoinState {
    pub queues: BTreeMap<String, QueueEntry>,
}

impl JoinState {
    fn evict_older_than(&mut self, now: i64) {
        self.queues.retain(|_, e| now - e.last_seen <= QUEUE_ENTRY_TTL_SECS);
    }
}

/// Whether `text` looks like a syslog line from Postfix.
pub fn looks_like(text: &str) -> bool {
    let head = &text[..text.floor_char_boundary(text.len().min(200))];
    head.contains(" postfix") && head.contains("]: ")
}

struct Line<'a> {
    time: DateTime<Utc>,
    host: &'a str,
    program: &'a str,
    body: &'a str,
}

pub fn decode(
    text: &str,
    received: Option<DateTime<Utc>>,
    settings: &DecodeSettings,
    state: &mut JoinState,
) -> Result<Decoded, RejectReason> {
    let line = parse_syslog(text, received, settings)?;
    let Some((queue_id, rest)) = split_queue_id(line.body) else {
        return Ok(Decoded::Skipped("postfix_no_queue_id"));
    };
    let now = line.time.timestamp();
    if rest == "removed" {
        state.queues.remove(queue_id);
        return Ok(Decoded::Skipped("postfix_context"));
    }
    let fields = parse_fields(rest);
    let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    if let Some(message_id) = get("message-id") {
        let entry = state.queues.entry(queue_id.to_string()).or_default();
        entry.message_id = Some(strip_angle(message_id).to_string());
        entry.last_seen = now;
        return Ok(Decoded::Skipped("postfix_context"));
    }
    if let (Some(from), None) = (get("from"), get("to")) {
        if get("status") == Some("expired") {
            let events =
                expired_events(&line, queue_id, strip_angle(from), settings, state);
            return Ok(Decoded::Events(events));
        }
        let entry = state.queues.entry(queue_id.to_string()).or_default();
        entry.sender = Some(strip_angle(from).to_string());
        entry.size = get("size").and_then(|s| s.parse().ok()).or(entry.size);
        entry.nrcpt =
            get("nrcpt").and_then(|s| s.split(' ').next()?.parse().ok()).or(entry.nrcpt);
        entry.last_seen = now;
        state.evict_older_than(now);
        return Ok(Decoded::Skipped("postfix_context"));
    }
    let (Some(to), Some(status)) = (get("to"), get("status")) else {
        return Ok(Decoded::Skipped("postfix_not_a_delivery"));
    };
    let outcome = match status {
        "sent" => Outcome::Delivered,
        "deferred" => Outcome::Deferred,
        "bounced" => Outcome::Bounced,
        "expired" => Outcome::Expired,
        other => {
            return Err(RejectReason::UnparsablePostfix(format!(
                "unknown delivery status {other:?}"
            )));
        }
    };
    let recipient = strip_angle(to).to_string();
    let reply = status_text(rest).map(str::to_string);
    let dsn = get("dsn").map(str::to_string);
    let relay = get("relay").map(str::to_string);
    let entry = state.queues.entry(queue_id.to_string()).or_default();
    entry.last_seen = now;
    entry.pending.retain(|p| p.recipient != recipient);
    if outcome == Outcome::Deferred {
        entry.pending.push(PendingRecipient {
            recipient: recipient.clone(),
            reply: reply.clone(),
            dsn: dsn.clone(),
            relay: relay.clone(),
        });
    }
    let entry = entry.clone();
    let mut extra = serde_json::Map::new();
    extra.insert("host".into(), line.host.into());
    extra.insert("program".into(), line.program.into());
    for key in ["orig_to", "delay", "delays", "conn_use"] {
        if let Some(v) = get(key) {
            extra.insert(key.into(), strip_angle(v).into());
        }
    }
    let event = build_event(
        &line,
        queue_id,
        &entry,
        Recipient { address: recipient, reply, dsn, relay },
        outcome,
        settings,
        Some(serde_json::Value::Object(extra).to_string()),
    );
    Ok(Decoded::Events(vec![event]))
}

struct Recipient {
    address: String,
    reply: Option<String>,
    dsn: Option<String>,
    relay: Option<String>,
}

fn expired_events(
    line: &Line<'_>,
    queue_id: &str,
    from: &str,
    settings: &DecodeSettings,
    state: &mut JoinState,
) -> Vec<DeliveryEvent> {
    let mut entry = state.queues.remove(queue_id).unwrap_or_default();
    entry.sender = Some(from.to_string());
    let pending = std::mem::take(&mut entry.pending);
    let recipients: Vec<Recipient> = if pending.is_empty() {
        vec![Recipient { address: String::new(), reply: None, dsn: None, relay: None }]
    } else {
        pending
            .into_iter()
            .map(|p| Recipient {
                address: p.recipient,
                reply: p.reply,
                dsn: p.dsn,
                relay: p.relay,
            })
            .collect()
    };
    recipients
        .into_iter()
        .map(|r| build_event(line, queue_id, &entry, r, Outcome::Expired, settings, None))
        .collect()
}

fn build_event(
    line: &Line<'_>,
    queue_id: &str,
    entry: &QueueEntry,
    recipient: Recipient,
    outcome: Outcome,
    settings: &DecodeSettings,
    extra: Option<String>,
) -> DeliveryEvent {
    let org_id = match entry.sender.as_deref() {
        Some("") => settings.null_sender_org.clone(),
        Some(sender) => settings
            .orgs
            .org_for_sender(sender)
            .unwrap_or_else(|| settings.unknown_sender_org.clone()),
        None => settings.unknown_sender_org.clone(),
    };
    let (remote_host, remote_ip) =
        recipient.relay.as_deref().map(split_relay).unwrap_or_default();
    let smtp_code = recipient.reply.as_deref().and_then(find_reply_code);
    DeliveryEvent {
        event_time: line.time,
        org_id,
        sender: entry.sender.clone(),
        recipient: recipient.address,
        message_id: entry.message_id.clone(),
        queue_id: Some(queue_id.to_string()),
        outcome,
        smtp_code,
        enhanced_code: recipient.dsn,
        reply: recipient.reply,
        remote_host,
        remote_ip,
        sending_ip: None,
        attempt: None,
        size_bytes: entry.size,
        nrcpt: entry.nrcpt,
        format: SourceFormat::Postfix,
        extra,
    }
}

/// `host[1.2.3.4]:25` -> (host, ip); `none` and `local` give nothing.
fn split_relay(relay: &str) -> (Option<String>, Option<String>) {
    if relay == "none" || relay == "local" {
        return (None, None);
    }
    match relay.split_once('[') {
        Some((host, rest)) => {
            let ip = rest.split(']').next().unwrap_or_default();
            (Some(host.to_string()), (!ip.is_empty()).then(|| ip.to_string()))
        }
        None => (Some(relay.to_string()), None),
    }
}

fn strip_angle(v: &str) -> &str {
    v.trim().trim_start_matches('<').trim_end_matches('>')
}

/// The text in parentheses after `status=...`, which is the remote reply.
fn status_text(rest: &str) -> Option<&str> {
    let at = rest.find("status=")?;
    let after = &rest[at..];
    let open = after.find(" (")?;
    let inner = &after[open + 2..];
    Some(inner.strip_suffix(')').unwrap_or(inner))
}

/// `key=value, key=value (comment)` pairs, up to the status comment.
fn parse_fields(rest: &str) -> Vec<(&str, &str)> {
    let head = match rest.find("status=") {
        Some(at) => {
            let status_end = rest[at..].find(' ').map_or(rest.len(), |i| at + i);
            &rest[..status_end]
        }
        None => rest,
    };
    head.split(", ")
        .filter_map(|part| {
            let (k, v) = part.split_once('=')?;
            let k = k.trim();
            (!k.is_empty() && !k.contains(' '))
                .then_some((k, v.trim().trim_end_matches(',')))
        })
        .collect()
}

fn split_queue_id(body: &str) -> Option<(&str, &str)> {
    let (id, rest) = body.split_once(": ")?;
    let ok =
        (5..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
    (ok && id != "warning" && id != "fatal" && id != "error")
        .then(|| (id, rest.trim_end()))
}

fn parse_syslog<'a>(
    text: &'a str,
    received: Option<DateTime<Utc>>,
    settings: &DecodeSettings,
) -> Result<Line<'a>, RejectReason> {
    let bad = |why: &str| RejectReason::UnparsablePostfix(why.to_string());
    let mut text = text;
    if text.starts_with('<')
        && let Some(end) = text.find('>')
    {
        text = &text[end + 1..];
    }
    let (time, rest) = if text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        let (stamp, rest) = text.split_once(' ').ok_or_else(|| bad("no timestamp"))?;
        let time = DateTime::parse_from_rfc3339(stamp)
            .map_err(|_| bad("timestamp is neither `Mmm dd hh:mm:ss` nor RFC 3339"))?
            .with_timezone(&Utc);
        (time, rest)
    } else {
        if text.len() < 16 || !text.is_char_boundary(15) || !text.is_char_boundary(16) {
            return Err(bad("line too short for a syslog timestamp"));
        }
        let time = bsd_time(&text[..15], received, settings)
            .ok_or_else(|| bad("timestamp is neither `Mmm dd hh:mm:ss` nor RFC 3339"))?;
        (time, &text[16..])
    };
    let (host, rest) = rest.trim_start().split_once(' ').ok_or_else(|| bad("no host"))?;
    let (program, body) =
        rest.split_once("]: ").ok_or_else(|| bad("no `program[pid]:`"))?;
    let program = program.split('[').next().unwrap_or(program);
    let program = program.rsplit('/').next().unwrap_or(program);
    Ok(Line { time, host, program, body })
}

fn bsd_time(
    stamp: &str,
    received: Option<DateTime<Utc>>,
    settings: &DecodeSettings,
) -> Option<DateTime<Utc>> {
    if !stamp.is_ascii() {
        return None;
    }
    let month = match &stamp[..3] {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let day: u32 = stamp[4..6].trim().parse().ok()?;
    let time = NaiveTime::parse_from_str(&stamp[7..15], "%H:%M:%S").ok()?;
    let tz = settings.syslog_timezone;
    let at_year = |year: i32| -> Option<DateTime<Utc>> {
        let date = NaiveDate::from_ymd_opt(year, month, day)?;
        let local = NaiveDateTime::new(date, time);
        tz.from_local_datetime(&local).earliest().map(|t| t.with_timezone(&Utc))
    };
    if let Some(year) = settings.syslog_year {
        return at_year(year);
    }
    let reference = received.unwrap_or_else(Utc::now);
    let year = reference.with_timezone(&tz).year();
    match at_year(year) {
        Some(t) if t <= reference + Duration::days(7) => Some(t),
        // The latest earlier year in which the date exists (Feb 29).
        _ => (1..=8).find_map(|back| at_year(year - back)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DecodeSettings {
        DecodeSettings { syslog_year: Some(2014), ..DecodeSettings::default() }
    }

    fn decode_all(lines: &[&str]) -> Vec<Decoded> {
        let mut state = JoinState::default();
        let s = settings();
        lines.iter().map(|l| decode(l, None, &s, &mut state).unwrap()).collect()
    }

    const FROM: &str = "Dec 15 07:46:27 phoenix postfix/qmgr[28945]: 5EDC01104345: from=<u1@acme.co.uk>, size=579, nrcpt=1 (queue active)";
    const BOUNCE: &str = "Dec 15 07:46:45 phoenix postfix/smtp[29103]: 5EDC01104345: to=<u2@dmn.info>, relay=smtp-in.jcu.info[137.219.20.34]:25, delay=2, delays=0/0/1/1, dsn=5.1.1, status=bounced (host smtp-in.jcu.info[137.219.20.34] said: 550 5.1.1 <u2@dmn.info>: Recipient address rejected: User unknown in relay recipient table (in reply to RCPT TO command))";

    #[test]
    fn a_bounce_is_joined_with_its_sender() {
        let out = decode_all(&[FROM, BOUNCE]);
        let Decoded::Events(events) = &out[1] else { panic!("{:?}", out[1]) };
        let e = &events[0];
        assert_eq!(e.org_id, "acme.co.uk");
        assert_eq!(e.sender.as_deref(), Some("u1@acme.co.uk"));
        assert_eq!(e.size_bytes, Some(579));
        assert_eq!(e.outcome, Outcome::Bounced);
        assert_eq!(e.smtp_code, Some(550));
        assert_eq!(e.enhanced_code.as_deref(), Some("5.1.1"));
        assert_eq!(e.remote_host.as_deref(), Some("smtp-in.jcu.info"));
        assert_eq!(e.remote_ip.as_deref(), Some("137.219.20.34"));
        assert!(e.reply.as_deref().unwrap().ends_with("(in reply to RCPT TO command)"));
        assert_eq!(e.event_time.to_rfc3339(), "2014-12-15T07:46:45+00:00");
    }

    #[test]
    fn an_unjoined_delivery_gets_the_unknown_organisation() {
        let out = decode_all(&[BOUNCE]);
        let Decoded::Events(events) = &out[0] else { panic!() };
        assert_eq!(events[0].org_id, "_unknown");
    }

    #[test]
    fn expiry_gives_one_event_per_deferred_recipient() {
        let deferred = "Dec 15 07:48:33 phoenix postfix/error[30156]: 5EDC01104345: to=<u3@dmn.co.uk>, relay=none, delay=406308, delays=405198/1110/0/0, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to ns.example.com[129.34.20.123]:25: Connection timed out)";
        let expired = "Dec 15 07:49:00 phoenix postfix/qmgr[28945]: 5EDC01104345: from=<u1@acme.co.uk>, status=expired, returned to sender";
        let out = decode_all(&[FROM, deferred, expired]);
        let Decoded::Events(events) = &out[2] else { panic!() };
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].outcome, Outcome::Expired);
        assert_eq!(events[0].recipient, "u3@dmn.co.uk");
        assert!(events[0].reply.as_deref().unwrap().contains("Connection timed out"));
    }

    #[test]
    fn the_year_is_inferred_from_the_receive_time() {
        let s = DecodeSettings::default();
        let jan = Utc.with_ymd_and_hms(2027, 1, 2, 0, 0, 0).unwrap();
        assert_eq!(bsd_time("Dec 31 23:00:00", Some(jan), &s).unwrap().year(), 2026);
        assert_eq!(bsd_time("Jan  1 23:00:00", Some(jan), &s).unwrap().year(), 2027);
        assert_eq!(bsd_time("Feb 29 10:00:00", Some(jan), &s).unwrap().year(), 2024);
    }

    #[test]
    fn a_long_line_is_looked_at_up_to_a_character_boundary() {
        // Byte 200 falls inside a three-byte character.
        let line = format!("{} postfix/smtp[1]: {}", "a".repeat(150), "中".repeat(100));
        assert!(!line.is_char_boundary(200));
        assert!(looks_like(&line));
        assert!(!looks_like(&"\u{fffd}".repeat(100)));
    }

    #[test]
    fn broken_lines_are_rejected_not_panicked_on() {
        let s = settings();
        let mut state = JoinState::default();
        for line in [
            "Xyz 15 07:46:27 phoenix postfix/smtp[1]: ABCDEF: to=<a@b>, status=sent (ok)",
            "Dec 15 07:46 postfix",
            "Dec 15 07:46:27 phoenix postfix/smtp[1]: ABCDEF: to=<a@b>, status=weird (ok)",
            "2026-13-01T00:00:00Z host postfix/smtp[1]: x",
            "Dec 1é 07:46:27 phoenix postfix/smtp[1]: ABCDEF: to=<a@b>, status=sent (ok)",
            "Dec 15 07:46:27é phoenix postfix/smtp[1]: ABCDEF: to=<a@b>, status=sent (ok)",
        ] {
            assert!(decode(line, None, &s, &mut state).is_err(), "{line}");
        }
    }
}
