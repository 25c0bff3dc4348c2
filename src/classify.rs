//! Classifying delivery events, and the `classify` command's line format.
//!
//! `bouncelens classify` reads lines, each a raw reply text or a JSON
//! delivery record, and writes one JSON object per line. A line that cannot
//! be read gives an object with `error` on that line; the command goes on.

use std::io::{BufRead, Write};

use serde::Serialize;
use serde_json::Value;

use crate::event::{DeliveryEvent, EventView, Outcome};
use crate::taxonomy::codes::EnhancedCode;
use crate::taxonomy::{Classifier, Reply, Severity, Verdict};

/// The classification columns of one event; all `None` for a delivery.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventClass {
    pub category: Option<String>,
    pub reason: Option<String>,
    pub severity: Option<&'static str>,
    pub rule: Option<&'static str>,
    pub matched: Option<String>,
}

/// Classifies an event if it failed.
pub fn classify_event(classifier: &Classifier, event: &DeliveryEvent) -> EventClass {
    let Some(verdict) = verdict_of(classifier, &event.view()) else {
        return EventClass::default();
    };
    EventClass {
        category: Some(verdict.category().to_string()),
        reason: verdict.reason_id().map(str::to_string),
        severity: Some(verdict.severity.as_str()),
        rule: Some(verdict.rule.as_str()),
        matched: verdict.matched.to_option_string(),
    }
}

/// The classifier's verdict on an event, `None` for a delivery.
pub fn verdict_of<'t>(
    classifier: &'t Classifier,
    event: &EventView<'_>,
) -> Option<Verdict<'t>> {
    event.outcome.is_failure().then(|| {
        classifier.classify(&reply_of(
            event.reply.unwrap_or(""),
            event.smtp_code,
            event.enhanced_code,
            Some(event.outcome),
        ))
    })
}

fn reply_of<'a>(
    text: &'a str,
    smtp_code: Option<u16>,
    enhanced: Option<&str>,
    outcome: Option<Outcome>,
) -> Reply<'a> {
    Reply {
        text,
        reply_code: smtp_code.filter(|c| (200..600).contains(c)),
        enhanced_code: enhanced.and_then(EnhancedCode::parse),
        outcome_severity: match outcome {
            Some(Outcome::Deferred) => Some(Severity::Soft),
            Some(Outcome::Bounced | Outcome::Expired | Outcome::Rejected) => {
                Some(Severity::Hard)
            }
            _ => None,
        },
    }
}

/// One output line of `classify`.
#[derive(Serialize)]
struct ClassifyLine<'a> {
    line: usize,
    category: &'a str,
    reason: Option<&'a str>,
    severity: &'a str,
    matched: Option<String>,
    rule: &'a str,
    label_en: Option<&'a str>,
    label_zh: Option<&'a str>,
    advice_en: Option<&'a str>,
    advice_zh: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    line: usize,
    error: &'a str,
    input: String,
}

/// Reads lines from `input`, writes one JSON object per line to `out`.
/// Returns (lines classified, lines in error).
pub fn classify_lines(
    classifier: &Classifier,
    input: impl BufRead,
    mut out: impl Write,
) -> std::io::Result<(usize, usize)> {
    let (mut ok, mut bad) = (0, 0);
    let mut buf = Vec::new();
    let mut reader = input;
    let mut n = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        n += 1;
        let line = match std::str::from_utf8(&buf) {
            Ok(s) => s.trim(),
            Err(e) => {
                let msg = format!("line is not UTF-8 (bad byte at {})", e.valid_up_to());
                write_error(&mut out, n, &msg, &String::from_utf8_lossy(&buf))?;
                bad += 1;
                continue;
            }
        };
        if line.is_empty() {
            continue;
        }
        match classify_line(classifier, line) {
            Ok(verdict) => {
                write_verdict(&mut out, n, &verdict)?;
                ok += 1;
            }
            Err(msg) => {
                write_error(&mut out, n, &msg, line)?;
                bad += 1;
            }
        }
    }
    out.flush()?;
    Ok((ok, bad))
}

/// The fields of a JSON line that may carry the reply text, in order.
const TEXT_FIELDS: [&str; 4] = ["reply", "diagnostic", "response", "text"];

fn classify_line<'t>(
    classifier: &'t Classifier,
    line: &str,
) -> Result<Verdict<'t>, String> {
    if !line.starts_with('{') {
        return Ok(classifier.classify(&Reply::text(line)));
    }
    let value: Value = serde_json::from_str(line)
        .map_err(|e| format!("line looks like JSON but does not parse: {e}"))?;
    let obj = value.as_object().ok_or("expected a JSON object")?;
    let text = TEXT_FIELDS.iter().find_map(|k| match obj.get(*k) {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str),
        _ => None,
    });
    let code = obj.get("smtp_code").and_then(|v| match v {
        Value::Number(n) => n.as_u64().and_then(|c| u16::try_from(c).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    let enhanced = obj.get("enhanced_code").and_then(Value::as_str);
    if text.is_none() && code.is_none() && enhanced.is_none() {
        let present: Vec<&str> = TEXT_FIELDS
            .into_iter()
            .chain(["smtp_code", "enhanced_code"])
            .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
            .collect();
        return Err(if present.is_empty() {
            "JSON record has none of `reply`, `smtp_code`, `enhanced_code`".to_string()
        } else {
            format!(
                "JSON record has {} but not as expected: `reply` is text, `smtp_code` a number such as 550, `enhanced_code` text such as \"5.1.1\"",
                present.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            )
        });
    }
    let outcome = obj.get("outcome").and_then(Value::as_str).and_then(Outcome::parse);
    Ok(classifier.classify(&reply_of(text.unwrap_or(""), code, enhanced, outcome)))
}

fn write_verdict(
    out: &mut impl Write,
    line: usize,
    v: &Verdict<'_>,
) -> std::io::Result<()> {
    let record = ClassifyLine {
        line,
        category: v.category(),
        reason: v.reason_id(),
        severity: v.severity.as_str(),
        matched: v.matched.to_option_string(),
        rule: v.rule.as_str(),
        label_en: v.reason.map(|r| r.label_en.as_str()),
        label_zh: v.reason.map(|r| r.label_zh.as_str()),
        advice_en: v.reason.map(|r| r.advice_en.as_str()),
        advice_zh: v.reason.map(|r| r.advice_zh.as_str()),
    };
    serde_json::to_writer(&mut *out, &record)?;
    out.write_all(b"\n")
}

fn write_error(
    out: &mut impl Write,
    line: usize,
    error: &str,
    input: &str,
) -> std::io::Result<()> {
    let input: String = input.chars().take(200).collect();
    serde_json::to_writer(&mut *out, &ErrorLine { line, error, input })?;
    out.write_all(b"\n")
}
