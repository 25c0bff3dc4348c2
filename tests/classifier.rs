//! The classifier against the platform FAQ's table and real bounces.
//!
//! - every FAQ phrase, alone and inside a realistic reply, gives its
//!   group's category, or the documented resolution;
//! - the overlaps the FAQ creates are resolved as documented;
//! - accuracy on the Sisimai development set is printed and held to the
//!   95.6% measured.

use std::collections::HashMap;

use bouncelens::taxonomy::codes::EnhancedCode;
use bouncelens::taxonomy::{Classifier, Reply, Rule, Severity, Taxonomy};

const FAQ: &str = include_str!("fixtures/faq-phrases.tsv");
const DEV: &str = include_str!("fixtures/sisimai-dev.tsv");
const REASON_MAP: &str = include_str!("fixtures/sisimai-reason-map.tsv");

/// FAQ phrases deliberately classified outside their FAQ group, and why
/// (each has a `note` in `schemas/taxonomy.toml`).
const RESOLUTIONS: &[(&str, &str)] = &[
    // Listed under both 收件人找不到 and 邮箱到期或锁定: a suspended
    // account exists but is locked, and the locked advice is actionable.
    ("User suspended", "mailbox_expired_or_locked"),
    // Gmail's 552-5.2.2 mailbox-over-quota reply, not a size limit.
    ("tried to reach is over quota", "mailbox_full"),
    // Postfix's 554 5.7.1 relay refusal, not a network fault.
    ("Relay access denied", "relay_denied"),
    // Listed under 中继问题 with the too-many-failed-logins advice.
    ("smtp auth error limit exceed", "authentication"),
    // The platform's own delivery-state notes, by what they say.
    ("state=bounced, User not exist", "recipient_unknown"),
    ("state=bounced, User is suspended", "mailbox_expired_or_locked"),
    ("state=bounced, Quota exceeded", "mailbox_full"),
];

fn faq_rows() -> Vec<(&'static str, &'static str)> {
    FAQ.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_once('\t').expect("category<TAB>phrase"))
        .collect()
}

fn expected_for(group: &'static str, phrase: &str) -> &'static str {
    RESOLUTIONS.iter().find(|(p, _)| *p == phrase).map_or(group, |(_, c)| c)
}

#[test]
fn the_builtin_taxonomy_is_valid_and_has_every_category() {
    let t = Taxonomy::builtin();
    t.validate().unwrap();
    for id in bouncelens::taxonomy::CATEGORY_IDS {
        assert!(t.category(id).is_some(), "{id}");
    }
}

#[test]
fn every_faq_phrase_is_in_the_taxonomy_verbatim() {
    let t = Taxonomy::builtin();
    let listed: Vec<&str> =
        t.reasons.iter().flat_map(|r| r.faq_phrases.iter().map(String::as_str)).collect();
    for (_, phrase) in faq_rows() {
        assert!(
            listed.iter().any(|p| p.eq_ignore_ascii_case(phrase)),
            "FAQ phrase {phrase:?} is not in any reason's faq_phrases"
        );
    }
}

#[test]
fn every_faq_phrase_alone_gives_its_category() {
    let c = Classifier::builtin();
    let mut wrong = Vec::new();
    for (group, phrase) in faq_rows() {
        let v = c.classify(&Reply::text(phrase));
        let want = expected_for(group, phrase);
        if v.category() != want {
            wrong.push(format!(
                "{phrase:?}: got {} ({:?}), want {want}",
                v.category(),
                v.matched
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} phrases misclassified:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_faq_phrase_inside_a_realistic_reply_gives_its_category() {
    let c = Classifier::builtin();
    let templates = [
        "host mx1.example.net[192.0.2.25] said: 550 {} (in reply to RCPT TO command)",
        "SMTP; 550-5.0.0 <someone@example.org>... {}\n550 5.0.0 see the help page",
        "{}",
    ];
    // The wrappers alone must not decide by phrase.
    for t in templates {
        let v = c.classify(&Reply::text(&t.replace("{}", "")));
        assert_ne!(v.rule, Rule::Phrase, "template {t:?} matched {:?}", v.matched);
    }
    let mut wrong = Vec::new();
    for (group, phrase) in faq_rows() {
        // A FAQ "phrase" that is a bare code stands where a code stands.
        let code_only = [
            "host mx1.example.net[192.0.2.25] said: {} (in reply to end of DATA command)",
        ];
        let is_code = phrase.len() == 3 && phrase.bytes().all(|b| b.is_ascii_digit());
        for t in if is_code { &code_only[..] } else { &templates[..] } {
            let reply = t.replace("{}", phrase);
            let v = c.classify(&Reply::text(&reply));
            let want = expected_for(group, phrase);
            if v.category() != want {
                wrong.push(format!(
                    "{reply:?}: got {} ({:?}), want {want}",
                    v.category(),
                    v.matched
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} replies misclassified:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Named overlap cases: the rule that resolves each.
#[test]
fn overlapping_phrases_resolve_as_documented() {
    let c = Classifier::builtin();
    let cases: &[(&str, &str, &str)] = &[
        (
            "specific_beats_generic_address_rejected",
            "550 5.1.1 <a@example.com>: Recipient address rejected: User unknown in local recipient table",
            "recipient_unknown",
        ),
        (
            "longer_554_service_unavailable_beats_network",
            "554 Service unavailable",
            "blacklisted",
        ),
        (
            "plain_service_unavailable_is_network",
            "421 Service unavailable, try later",
            "network_error",
        ),
        (
            "local_user_only_inside_requested_action",
            "550 Requested action not taken: Local user only",
            "other",
        ),
        ("plain_local_user_only_is_network", "Local user only", "network_error"),
        (
            "over_quota_inside_tried_to_reach",
            "tried to reach is over quota",
            "mailbox_full",
        ),
        (
            "gmail_over_quota_is_not_a_missing_recipient",
            "552-5.2.2 The email account that you tried to reach is over quota. Please direct\n552-5.2.2 the recipient to https://support.google.com/mail/?p=OverQuotaTemp",
            "mailbox_full",
        ),
        (
            "gmail_missing_account_folded_over_lines",
            "550-5.1.1 The email account that you tried to\n550-5.1.1 reach does not exist. Please try\n550 5.1.1 double-checking the recipient's email address",
            "recipient_unknown",
        ),
        ("user_suspended_is_locked", "550 User suspended", "mailbox_expired_or_locked"),
        (
            "spam_channel_code_beats_content_words",
            "550 mail content denied SDN3",
            "spam_channel",
        ),
        ("sdn3_is_not_sdn31", "550 rejected SDN31", "rejected_by_recipient"),
        (
            "weak_phrase_yields_to_a_subject_code",
            "550 5.1.1 Address rejected",
            "recipient_unknown",
        ),
        (
            "weak_phrase_beats_a_bare_class",
            "550 5.0.0 Address rejected",
            "rejected_by_recipient",
        ),
        (
            "sdn13_is_overseas",
            "554 SDN13 message delivered to overseas spam channel",
            "spam_channel",
        ),
        ("bare_554_is_a_reply_code", "554", "other"),
        ("chinese_no_such_user", "550 用户不存在", "recipient_unknown"),
        ("chinese_mailbox_full", "552 邮箱空间已满", "mailbox_full"),
        ("chinese_spam", "554 邮件被识别为垃圾邮件", "rejected_by_recipient"),
        ("chinese_blacklist", "554 发件IP在黑名单中", "blacklisted"),
        ("case_and_spaces_folded", "550   USER    UNKNOWN", "recipient_unknown"),
        ("a_not_found_needs_a_token_start", "554 DATA not found in cache", "other"),
    ];
    let mut wrong = Vec::new();
    for (name, reply, want) in cases {
        let v = c.classify(&Reply::text(reply));
        if v.category() != *want {
            wrong.push(format!(
                "{name}: {reply:?} got {} ({:?}, {:?}), want {want}",
                v.category(),
                v.reason_id(),
                v.matched
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn spam_channel_reasons_tell_domestic_from_overseas() {
    let c = Classifier::builtin();
    let reason = |r: &str| c.classify(&Reply::text(r)).reason_id().unwrap().to_string();
    assert_eq!(reason("550 SDN3"), reason("550 SDN4"));
    assert_eq!(reason("550 SDN13"), reason("550 SDN14"));
    assert_ne!(reason("550 SDN3"), reason("550 SDN13"));
    assert_ne!(reason("550 SDN13"), reason("550 SDN51"));
}

#[test]
fn fallbacks_record_which_rule_decided() {
    let c = Classifier::builtin();
    let v = c.classify(&Reply::text("550 5.1.1 qwertyuiop"));
    assert_eq!((v.category(), v.rule), ("recipient_unknown", Rule::EnhancedCode));
    assert_eq!(v.matched.to_option_string().as_deref(), Some("5.1.1"));
    let v = c.classify(&Reply {
        text: "zzz",
        enhanced_code: EnhancedCode::parse("4.2.2"),
        ..Reply::default()
    });
    assert_eq!(
        (v.category(), v.rule, v.severity),
        ("mailbox_full", Rule::EnhancedCode, Severity::Soft)
    );
    let v = c.classify(&Reply::text("552 qwertyuiop"));
    assert_eq!(v.rule, Rule::ReplyCode);
    let v = c.classify(&Reply::text("qwertyuiop"));
    assert_eq!((v.category(), v.rule), ("unclassified", Rule::None));
    assert_eq!(v.matched.to_option_string(), None);
}

#[test]
fn severity_follows_the_reply_code_class() {
    let c = Classifier::builtin();
    assert_eq!(
        c.classify(&Reply::text("452 4.2.2 Mailbox full")).severity,
        Severity::Soft
    );
    assert_eq!(
        c.classify(&Reply::text("552 5.2.2 Mailbox full")).severity,
        Severity::Hard
    );
}

/// Records that passed through Sisimai carry its X.0.9YY pseudo status
/// codes; with no phrase, each names its reason.
#[test]
fn sisimai_pseudo_status_codes_name_their_reason() {
    let c = Classifier::builtin();
    let cases = [
        ("5.0.911", "recipient_unknown"),
        ("5.0.912", "domain_error"),
        ("5.0.921", "mailbox_expired_or_locked"),
        ("5.0.922", "mailbox_full"),
        ("5.0.934", "message_too_large"),
        ("4.0.944", "network_error"),
        ("5.0.909", "relay_denied"),
        ("5.0.971", "blacklisted"),
        ("5.0.918", "rejected_by_recipient"),
    ];
    // 5.0.900, "undefined", says nothing: the reply code decides.
    let undefined = c.classify(&Reply {
        text: "Unable to deliver message",
        reply_code: Some(550),
        enhanced_code: EnhancedCode::parse("5.0.900"),
        outcome_severity: None,
    });
    assert_eq!(undefined.rule.as_str(), "reply_code");
    for (code, category) in cases {
        let v = c.classify(&Reply {
            text: "Unable to deliver message",
            reply_code: Some(550),
            enhanced_code: EnhancedCode::parse(code),
            outcome_severity: None,
        });
        assert_eq!(v.category(), category, "{code}");
        assert_eq!(v.rule.as_str(), "enhanced_code", "{code}");
    }
}

/// Accuracy on the Sisimai development set: the share of rows whose
/// category is one the reason map accepts. Printed, and held to the
/// measured 95.6% (240 of 251). Most of the 11 rows still missed carry
/// labels that contradict their text (one multi-reply transcript under
/// three reasons, a "User Unknown" labelled mailbox-full) or a generic
/// phrase that outweighs the cause (a host name that "does not exist").
#[test]
fn accuracy_on_the_sisimai_development_set() {
    let c = Classifier::builtin();
    let allowed: HashMap<&str, Vec<&str>> = REASON_MAP
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .map(|(r, cats)| (r, cats.split('|').collect()))
        .collect();
    let (mut ok, mut total, mut unclassified) = (0, 0, 0);
    let mut misses = Vec::new();
    for line in DEV.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (reason, status, code, text) = (cols[0], cols[2], cols[3], cols[4]);
        let v = c.classify(&Reply {
            text,
            reply_code: code.parse().ok(),
            enhanced_code: EnhancedCode::parse(status),
            outcome_severity: None,
        });
        total += 1;
        if v.category() == "unclassified" {
            unclassified += 1;
        }
        if allowed[reason].contains(&v.category()) {
            ok += 1;
        } else {
            misses.push(format!(
                "{reason} -> {} ({:?}): {}",
                v.category(),
                v.matched,
                &text[..text.len().min(140)]
            ));
        }
    }
    let pct = 100.0 * ok as f64 / total as f64;
    println!(
        "sisimai-dev accuracy: {ok}/{total} = {pct:.1}%, unclassified {unclassified}"
    );
    for m in &misses {
        println!("  miss: {m}");
    }
    assert_eq!(unclassified, 0, "no row may be unclassified");
    assert!(
        pct >= 95.6,
        "accuracy {pct:.1}% is below the 95.6% measured:\n{}",
        misses.join("\n")
    );
}
