//! Synthetic delivery traffic: a deterministic load generator that writes
//! canonical delivery events (`schemas/delivery-event.schema.json`) as
//! NDJSON, one event a line, for load tests of the stream job and for demo
//! data.
//!
//! This module owns the synthetic world and how it behaves:
//!
//! - organisations of very different sizes (Zipf-like weights), each with a
//!   domain, users, sending IPs and a list quality that scales its failure
//!   rate; some send mostly to Chinese mailboxes, the others mostly abroad;
//! - recipient domains: the big providers (gmail.com, outlook.com,
//!   yahoo.com, qq.com, 163.com, icloud.com, ...) take most of the mail, a
//!   long tail of generated domains the rest;
//! - time: events are spread over `days` days from `start_date` (UTC), more
//!   in business hours, fewer at night and at weekends, written in time
//!   order;
//! - messages of one to more than a thousand recipients, with message and
//!   queue ids, and retries: a deferred attempt is followed by later
//!   attempts (attempt 2, 3, ..., Postfix-like backoff) of the same message
//!   and recipient, ending delivered, bounced or expired;
//! - the outcome mix: about 92% delivered, 4% deferred, 3.5% bounced and
//!   0.5% expired events;
//! - reply texts that are real ones: the diagnostic texts of
//!   `tests/fixtures/sisimai-dev.tsv` (with the test mailboxes they name
//!   replaced by the event's recipient; the host names and paths they
//!   name are kept), the phrases of the built-in taxonomy
//!   inside realistic SMTP replies, Postfix's own deferral wordings and the
//!   big providers' acceptance replies;
//! - the cases the reports look for: CAC spam-channel codes (SDN3, SDN4,
//!   SDN13, SDN14, SDN51), blocklisted sending IPs (with `sending_ip` and
//!   `remote_host`), viruses, an organisation over its outgoing limit
//!   (`org out rcpt count is exceeded`) on some afternoons, users over the
//!   sending limits and messages of more than 400 recipients (a newsletter
//!   of the largest organisation every day, and a few more). Most users
//!   send a few dozen messages a day; the largest organisation sends its
//!   transactional mail from one `noreply` address, well over 1,000 a day
//!   once there are some 50,000 events a day, and on about half of the
//!   days a hijacked account sends about 45 messages a minute for 15
//!   minutes, past 500 once the volume gives it the slots (some 100,000
//!   events a day).
//!
//! `smtp_code` and `enhanced_code` are read from the reply text with the
//! taxonomy's own code finders, so they always agree with it. The same
//! options give byte-identical output on one platform (`SmallRng` differs
//! between 32- and 64-bit targets). Organisation domains use the reserved
//! `.example` top-level domain; every IP address is from the documentation
//! ranges (RFC 5737).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::io::{self, Write};

use chrono::{Datelike, NaiveDate, Weekday};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::event::Outcome;
use crate::formats::ACCEPTED_YEARS;
use crate::taxonomy::codes::{find_enhanced_code, find_reply_code};
use crate::taxonomy::{Severity, Taxonomy};

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// How many events (lines) to write.
    pub events: u64,
    /// How many organisations (at least one is used).
    pub orgs: u32,
    /// Over how many days, from `start_date` (at least one is used).
    pub days: u32,
    /// The same seed, with the same other options, gives the same bytes.
    pub seed: u64,
    /// The first day; it starts at 00:00 UTC.
    pub start_date: NaiveDate,
}

/// The most organisations [`generate`] makes (each costs memory whatever
/// the number of events).
pub const MAX_GENERATED_ORGS: u32 = 100_000;
/// The most days [`generate`] spreads events over (ten years).
pub const MAX_GENERATED_DAYS: u32 = 3_660;

impl GenerateOptions {
    /// Why these options cannot be generated, if they cannot: too many
    /// organisations or days, or days outside the years that `ingest`
    /// accepts timestamps from (1970 to 2199).
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_GENERATED_ORGS).contains(&self.orgs) {
            return Err(format!(
                "{} organisations: give 1 to {MAX_GENERATED_ORGS}",
                self.orgs
            ));
        }
        if !(1..=MAX_GENERATED_DAYS).contains(&self.days) {
            return Err(format!("{} days: give 1 to {MAX_GENERATED_DAYS}", self.days));
        }
        let last =
            self.start_date.checked_add_days(chrono::Days::new(u64::from(self.days - 1)));
        let accepted = |day: NaiveDate| ACCEPTED_YEARS.contains(&day.year());
        if !accepted(self.start_date) || !last.is_some_and(accepted) {
            return Err(format!(
                "{} days from {}: events must fall within the years {} to {} (what ingest accepts), so choose another start day or fewer days",
                self.days,
                self.start_date,
                ACCEPTED_YEARS.start(),
                ACCEPTED_YEARS.end()
            ));
        }
        Ok(())
    }
}

/// Writes `opts.events` canonical delivery events to `out` as NDJSON and
/// returns how many were written; options that [`GenerateOptions::check`]
/// refuses are an [`io::ErrorKind::InvalidInput`] error.
pub fn generate(opts: &GenerateOptions, out: &mut impl Write) -> io::Result<u64> {
    opts.check().map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
    Generator::new(opts).run(out)
}

const SISIMAI_TSV: &str = include_str!("../tests/fixtures/sisimai-dev.tsv");

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;
/// Bytes buffered before a write to the output.
const FLUSH_AT: usize = 1 << 16;
/// Multi-recipient messages being sent at the same time.
const MAX_OPEN: usize = 12;

// The outcome mix. Per recipient, a first attempt is delivered, bounced, or
// deferred 1-3 times (mean 1.5) and then delivered or bounced, or deferred
// 3-5 times (mean 4) and then expired. With E events per recipient and the
// targets 92 / 4 / 3.5 / 0.5 % of events: E = 1 / 0.96; expired chains are
// 0.5% * E of recipients and give 2% * E in deferrals; the other 2% * E
// come from chains that end delivered or bounced (2% * E / 1.5 of the
// recipients, split 85 / 15). An organisation's list quality scales all of
// these, with a traffic-weighted mean of 1.
const P_BOUNCE: f64 = 0.034_358;
const P_DEFER_THEN_DELIVER: f64 = 0.011_806;
const P_DEFER_THEN_BOUNCE: f64 = 0.002_083;
const P_DEFER_THEN_EXPIRE: f64 = 0.005_208;

/// Traffic by hour of day (UTC), in relative units.
const HOURLY: [u64; 24] = [
    12, 8, 6, 5, 5, 7, 14, 30, 62, 92, 100, 96, 78, 84, 97, 100, 92, 75, 52, 42, 38, 33,
    25, 17,
];

/// The big mailbox providers: domain, MX host, reply style, Chinese or not,
/// and percent of the mail of a Chinese / an international organisation.
const PROVIDERS: [(&str, &str, Style, bool, u32, u32); 10] = [
    ("gmail.com", "gmail-smtp-in.l.google.com", Style::Google, false, 4, 34),
    (
        "outlook.com",
        "outlook-com.olc.protection.outlook.com",
        Style::Microsoft,
        false,
        3,
        10,
    ),
    (
        "hotmail.com",
        "hotmail-com.olc.protection.outlook.com",
        Style::Microsoft,
        false,
        1,
        7,
    ),
    ("yahoo.com", "mta5.am0.yahoodns.net", Style::Yahoo, false, 1, 8),
    ("icloud.com", "mx01.mail.icloud.com", Style::Apple, false, 2, 6),
    ("qq.com", "mx3.qq.com", Style::Tencent, true, 34, 2),
    ("163.com", "163mx01.mxmail.netease.com", Style::Netease, true, 18, 1),
    ("126.com", "126mx01.mxmail.netease.com", Style::Netease, true, 7, 0),
    ("foxmail.com", "mx1.qq.com", Style::Tencent, true, 3, 0),
    ("sina.com", "freemx1.sinamail.sina.com.cn", Style::Sina, true, 3, 0),
];
/// Recipients are people `0..PEOPLE`; those of one message are spread
/// over it by a stride coprime with it, so no two are the same.
const PEOPLE: u64 = 10_000_000;
const PEOPLE_STRIDE: u64 = 3_276_427;
/// Generated long-tail recipient domains.
const TAIL_DOMAINS: u32 = 4000;

const SYLLABLES: [&str; 32] = [
    "ka", "lo", "mi", "ra", "ten", "vor", "sel", "dan", "mar", "kin", "tor", "bel",
    "fen", "gar", "hal", "jun", "lin", "mei", "nor", "pra", "qui", "ros", "sun", "tai",
    "ven", "wen", "xin", "yan", "zho", "bri", "cal", "dor",
];
const TLDS_GLOBAL: [&str; 16] = [
    "com", "com", "com", "com", "com", "net", "net", "org", "de", "co.uk", "fr", "jp",
    "com.au", "edu", "io", "nl",
];
const TLDS_CN: [&str; 6] = ["cn", "cn", "com.cn", "com.cn", "com", "net.cn"];

const ORG_FIRST: [&str; 32] = [
    "blue", "north", "silver", "red", "east", "golden", "bright", "green", "swift",
    "river", "harbor", "summit", "cedar", "maple", "pine", "coral", "iron", "star",
    "sun", "lake", "stone", "oak", "jade", "lotus", "pearl", "cloud", "dragon",
    "phoenix", "tiger", "crane", "amber", "delta",
];
const ORG_SECOND: [&str; 32] = [
    "peak",
    "logistics",
    "trading",
    "tech",
    "media",
    "health",
    "foods",
    "motors",
    "capital",
    "studio",
    "labs",
    "travel",
    "textiles",
    "energy",
    "retail",
    "software",
    "consulting",
    "printing",
    "education",
    "realty",
    "pharma",
    "finance",
    "insurance",
    "games",
    "fashion",
    "robotics",
    "bio",
    "marine",
    "design",
    "works",
    "hotels",
    "auto",
];
const WEST_FIRST: [&str; 20] = [
    "james", "mary", "john", "linda", "david", "sarah", "michael", "emma", "daniel",
    "laura", "peter", "anna", "thomas", "julia", "mark", "sophie", "paul", "claire",
    "kevin", "olivia",
];
const WEST_LAST: [&str; 20] = [
    "smith", "johnson", "brown", "taylor", "miller", "wilson", "moore", "clark", "lewis",
    "walker", "hall", "young", "king", "wright", "scott", "green", "baker", "adams",
    "nelson", "hill",
];
const CN_GIVEN: [&str; 20] = [
    "wei", "fang", "na", "min", "jing", "li", "qiang", "lei", "yang", "jun", "yong",
    "yan", "jie", "tao", "ming", "chao", "xiuying", "xia", "hua", "ping",
];
const CN_FAMILY: [&str; 20] = [
    "wang", "li", "zhang", "liu", "chen", "yang", "huang", "zhao", "wu", "zhou", "xu",
    "sun", "ma", "zhu", "hu", "guo", "he", "gao", "lin", "luo",
];
/// Mailboxes every organisation has; named users follow.
const ROLE_USERS: [&str; 5] = ["noreply", "newsletter", "sales", "support", "info"];
const USER_NOREPLY: u32 = 0;
const USER_NEWSLETTER: u32 = 1;
const USER_SALES: u32 = 2;

const VIRUS_NAMES: [&str; 8] = [
    "Win.Trojan.Agent-1388596",
    "Doc.Downloader.Emotet-6983612",
    "Xls.Dropper.Agent-7418201",
    "Win.Malware.Qakbot-9951421",
    "Eicar-Signature",
    "Js.Trojan.Nemucod-6317485",
    "Win.Ransomware.Locky-6329942",
    "Pdf.Exploit.CVE_2018_4993-6583154",
];

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const HEX_UPPER: &[u8] = b"0123456789ABCDEF";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// How a receiving server words its acceptance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Google,
    Microsoft,
    Yahoo,
    Tencent,
    Netease,
    Apple,
    Sina,
    Postfix,
    Exim,
    Plain,
}

struct Org {
    id: String,
    domain: String,
    /// Mails mostly to Chinese mailboxes.
    cn: bool,
    /// Size of the pool of senders: every user but the newsletter.
    users: u32,
    /// Scales the failure probabilities; traffic-weighted mean 1.
    fail_mult: f64,
    /// Sends content that the CAC spam channel often catches.
    spammy: bool,
    /// Its sending IPs: a range of `World::sending_ips`.
    ips: (u32, u32),
}

struct Domain {
    name: String,
    mx: String,
    ip: String,
    cn: bool,
    style: Style,
}

/// A failure reply built from a taxonomy phrase.
struct Phrase {
    text: String,
    category: &'static str,
    /// The phrase carries its own reply code (or is a platform line): it is
    /// the whole reply.
    verbatim: bool,
    /// `Recipient address rejected: <phrase>` reads well.
    rcpt_form: bool,
    smtp: u16,
    enhanced: String,
}

/// Phrases of one category, split so Chinese wording goes to Chinese
/// mailboxes.
#[derive(Default)]
struct PhrasePool {
    ascii: Vec<usize>,
    other: Vec<usize>,
}

struct ReplyBook {
    phrases: Vec<Phrase>,
    /// Per category: its weight and its pool.
    bounce: Vec<(&'static str, u32, PhrasePool)>,
    defer: Vec<(&'static str, u32, PhrasePool)>,
    sisimai_bounce: Vec<&'static str>,
    sisimai_defer: Vec<&'static str>,
    sisimai_expired: Vec<&'static str>,
}

/// Everything that does not change while generating.
struct World {
    orgs: Vec<Org>,
    org_cum: Vec<f64>,
    domains: Vec<Domain>,
    /// Cumulative weights over `PROVIDERS` then the tail, per region.
    region_cum: [[u32; PROVIDERS.len() + 1]; 2],
    tail_cn: Vec<u32>,
    tail_global: Vec<u32>,
    sending_ips: Vec<String>,
    listed_ips: Vec<bool>,
    replies: ReplyBook,
    /// Per day: `YYYY-MM-DDT` and `YYYYMMDD`.
    day_iso: Vec<String>,
    day_compact: Vec<String>,
    day_weight: Vec<u64>,
    start_epoch_secs: i64,
    burst_org: u32,
    quota_org: u32,
}

/// One message, as every attempt to each of its recipients sees it.
#[derive(Clone, Copy, Debug)]
struct Msg {
    org: u32,
    user: u32,
    start: i64,
    queue: u64,
    nrcpt: u32,
    size: u64,
    campaign: u32,
    /// Its first recipient in the population of `PEOPLE`.
    people: u64,
    /// A sender over the sending limits, whom receivers throttle.
    heavy: bool,
    /// Sent by the hijacked account of the day's burst.
    burst: bool,
}

struct OpenMsg {
    msg: Msg,
    remaining: u32,
}

/// A later attempt of a deferred delivery.
struct Pending {
    due: i64,
    seq: u64,
    msg: Msg,
    rcpt: String,
    domain: u32,
    attempt: u32,
    /// Deferrals still to come before `last`.
    left: u8,
    last: Outcome,
    defer_reply: String,
    defer_remote: bool,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

enum Fate {
    Delivered,
    Bounced,
    Deferred { left: u8, last: Outcome },
}

/// Per-day happenings, in milliseconds from the start of the window.
struct DayPlan {
    blast_at: i64,
    blast_done: bool,
    burst_from: i64,
    burst_to: i64,
    over_quota_from: i64,
}

struct Generator {
    world: World,
    rng: SmallRng,
    seed: u64,
    events: u64,
    days: u32,
    written: u64,
    buf: Vec<u8>,
    offsets: Vec<u32>,
    open: Vec<OpenMsg>,
    retries: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    messages: u64,
    campaigns: u32,
    plan: DayPlan,
    /// Share of the slots of the current minute that a burst takes.
    burst_share: f64,
    rcpt: String,
    reply: String,
    scratch: String,
}

impl Generator {
    fn new(opts: &GenerateOptions) -> Self {
        let mut rng = SmallRng::seed_from_u64(opts.seed);
        let days = opts.days.max(1);
        let world =
            World::new(&mut rng, opts.orgs.max(1), days, opts.start_date, opts.events);
        Self {
            world,
            rng,
            seed: opts.seed,
            events: opts.events,
            days,
            written: 0,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            offsets: Vec::new(),
            open: Vec::new(),
            retries: BinaryHeap::new(),
            seq: 0,
            messages: 0,
            campaigns: 0,
            plan: DayPlan {
                blast_at: i64::MAX,
                blast_done: true,
                burst_from: 0,
                burst_to: 0,
                over_quota_from: i64::MAX,
            },
            burst_share: 0.0,
            rcpt: String::with_capacity(64),
            reply: String::with_capacity(512),
            scratch: String::with_capacity(128),
        }
    }

    fn run(mut self, out: &mut impl Write) -> io::Result<u64> {
        let minute_sum: u64 = (0..1440).map(minute_weight).sum();
        let total: u128 =
            self.world.day_weight.iter().map(|&w| u128::from(w * minute_sum)).sum();
        let mut cum: u128 = 0;
        let mut done: u64 = 0;
        for day in 0..self.days {
            self.plan_day(day);
            let day_w = self.world.day_weight[day as usize];
            for minute in 0..1440 {
                cum += u128::from(day_w * minute_weight(minute));
                let target = (u128::from(self.events) * cum / total) as u64;
                let budget = target - done;
                done = target;
                if budget == 0 {
                    continue;
                }
                // A burst sends about 45 messages a minute, when there are
                // slots enough.
                self.burst_share = (45.0 / budget as f64).min(0.7);
                self.offsets.clear();
                for _ in 0..budget {
                    self.offsets.push(self.rng.random_range(0..MINUTE_MS as u32));
                }
                self.offsets.sort_unstable();
                let base = i64::from(day) * DAY_MS + minute as i64 * MINUTE_MS;
                for k in 0..self.offsets.len() {
                    let t = base + i64::from(self.offsets[k]);
                    self.slot(t);
                    if self.buf.len() >= FLUSH_AT {
                        out.write_all(&self.buf)?;
                        self.buf.clear();
                    }
                }
            }
        }
        out.write_all(&self.buf)?;
        self.buf.clear();
        out.flush()?;
        Ok(self.written)
    }

    fn plan_day(&mut self, day: u32) {
        let start = i64::from(day) * DAY_MS;
        let rng = &mut self.rng;
        let hour = 3_600_000;
        let blast_at =
            start + 9 * hour + 30 * MINUTE_MS + rng.random_range(0..90) * MINUTE_MS;
        let burst = day == 0 || rng.random_bool(0.5);
        let burst_from = start + 13 * hour + rng.random_range(0..240) * MINUTE_MS;
        let over_quota = day + 1 == self.days || rng.random_bool(0.4);
        let over_quota_from = start + 15 * hour + rng.random_range(0..240) * MINUTE_MS;
        self.plan = DayPlan {
            blast_at,
            blast_done: false,
            burst_from: if burst { burst_from } else { 0 },
            burst_to: if burst { burst_from + 15 * MINUTE_MS } else { 0 },
            over_quota_from: if over_quota { over_quota_from } else { i64::MAX },
        };
    }

    /// Fills one event slot at time `t`: a retry that is due, else the next
    /// recipient of a message being sent, else a new message.
    fn slot(&mut self, t: i64) {
        if self.retries.peek().is_some_and(|Reverse(p)| p.due <= t) {
            if let Some(Reverse(p)) = self.retries.pop() {
                self.retry(p, t);
            }
            return;
        }
        let blast = !self.plan.blast_done && t >= self.plan.blast_at;
        let burst = t >= self.plan.burst_from
            && t < self.plan.burst_to
            && self.rng.random_bool(self.burst_share);
        let open_new = blast
            || burst
            || self.open.is_empty()
            || (self.open.len() < MAX_OPEN && self.rng.random_bool(0.5));
        let i = if open_new {
            let msg = self.new_message(t, blast, burst);
            self.open.push(OpenMsg { msg, remaining: msg.nrcpt });
            self.open.len() - 1
        } else {
            self.rng.random_range(0..self.open.len())
        };
        let msg = self.open[i].msg;
        let ordinal = msg.nrcpt - self.open[i].remaining;
        self.open[i].remaining -= 1;
        if self.open[i].remaining == 0 {
            self.open.swap_remove(i);
        }
        self.first_attempt(msg, ordinal, t);
    }

    fn new_message(&mut self, t: i64, blast: bool, burst: bool) -> Msg {
        self.messages += 1;
        let queue = mix64(self.seed ^ mix64(self.messages));
        let rng = &mut self.rng;
        let (org, user, nrcpt, size, campaign, heavy);
        if blast {
            // The daily newsletter of the largest organisation.
            self.plan.blast_done = true;
            org = 0;
            user = USER_NEWSLETTER;
            nrcpt = rng.random_range(401..=1200);
            size = log_uniform(rng, 20_000.0, 180_000.0);
            campaign = true;
            heavy = false;
        } else if burst {
            // A hijacked account sending spam as fast as it can.
            org = self.world.burst_org;
            user = USER_SALES;
            nrcpt = 1;
            size = log_uniform(rng, 3_000.0, 12_000.0);
            campaign = false;
            heavy = true;
        } else {
            let r: f64 = rng.random();
            let x = r * self.world.org_cum[self.world.org_cum.len() - 1];
            org = self
                .world
                .org_cum
                .partition_point(|&c| c <= x)
                .min(self.world.orgs.len() - 1) as u32;
            // Any user but the newsletter, the busiest sending at most a
            // few hundred messages a day: index k of the pool is drawn with
            // a density in proportion to k^(-1/3).
            let pool = f64::from(self.world.orgs[org as usize].users);
            let u: f64 = rng.random();
            let k = ((pool * u.powf(1.5)) as u32).min(pool as u32 - 1);
            let pooled = if k == 0 { USER_NOREPLY } else { k + 1 };
            let r: f64 = rng.random();
            if r < 0.30 {
                // Transactional mail; the largest organisation sends all of
                // it from one address, far over the daily limit.
                user = if org == 0 { USER_NOREPLY } else { pooled };
                nrcpt = if rng.random_bool(0.02) { rng.random_range(2..=3) } else { 1 };
                size = log_uniform(rng, 3_000.0, 60_000.0);
                campaign = false;
                heavy = org == 0;
            } else if r < 0.3025 {
                user = USER_NEWSLETTER;
                nrcpt = if rng.random_bool(0.05) {
                    rng.random_range(401..=1500)
                } else {
                    log_uniform(rng, 20.0, 400.0) as u32
                };
                size = log_uniform(rng, 20_000.0, 180_000.0);
                campaign = true;
                heavy = false;
            } else {
                user = pooled;
                let r: f64 = rng.random();
                nrcpt = if r < 0.85 {
                    1
                } else if r < 0.97 {
                    rng.random_range(2..=5)
                } else {
                    rng.random_range(6..=30)
                };
                size = if rng.random_bool(0.12) {
                    log_uniform(rng, 300_000.0, 26_000_000.0)
                } else {
                    log_uniform(rng, 2_000.0, 300_000.0)
                };
                campaign = false;
                heavy = false;
            }
        }
        let campaign = if campaign {
            self.campaigns += 1;
            self.campaigns
        } else {
            0
        };
        let people = self.rng.random_range(0..PEOPLE);
        Msg { org, user, start: t, queue, nrcpt, size, campaign, people, heavy, burst }
    }

    fn fate(&mut self, mult: f64) -> Fate {
        let r: f64 = self.rng.random();
        let bounce = P_BOUNCE * mult;
        let then_deliver = bounce + P_DEFER_THEN_DELIVER * mult;
        let then_bounce = then_deliver + P_DEFER_THEN_BOUNCE * mult;
        let then_expire = then_bounce + P_DEFER_THEN_EXPIRE * mult;
        let short = |rng: &mut SmallRng| {
            let r: f64 = rng.random();
            if r < 0.6 {
                0
            } else if r < 0.9 {
                1
            } else {
                2
            }
        };
        if r < bounce {
            Fate::Bounced
        } else if r < then_deliver {
            Fate::Deferred { left: short(&mut self.rng), last: Outcome::Delivered }
        } else if r < then_bounce {
            Fate::Deferred { left: short(&mut self.rng), last: Outcome::Bounced }
        } else if r < then_expire {
            Fate::Deferred { left: self.rng.random_range(2..=4), last: Outcome::Expired }
        } else {
            Fate::Delivered
        }
    }

    /// The first attempt to recipient `ordinal` (from 0) of a message.
    fn first_attempt(&mut self, msg: Msg, ordinal: u32, t: i64) {
        let w = &self.world;
        let org = &w.orgs[msg.org as usize];
        let domain = pick_domain(w, &mut self.rng, org.cn);
        // Recipients of one message are different people.
        let person = (msg.people + u64::from(ordinal) * PEOPLE_STRIDE) % PEOPLE;
        make_recipient(&w.domains[domain as usize], person, &mut self.rcpt);
        let mult = org.fail_mult;
        match self.fate(mult) {
            Fate::Delivered => {
                self.delivered_reply(&msg, domain, t);
                self.write_event(t, &msg, domain, 1, Outcome::Delivered, true);
            }
            Fate::Bounced => {
                let remote = self.failure_reply(Outcome::Bounced, &msg, domain, t);
                self.write_event(t, &msg, domain, 1, Outcome::Bounced, remote);
            }
            Fate::Deferred { left, last } => {
                let remote = self.failure_reply(Outcome::Deferred, &msg, domain, t);
                self.write_event(t, &msg, domain, 1, Outcome::Deferred, remote);
                self.seq += 1;
                let due = t + backoff(&mut self.rng, 1);
                self.retries.push(Reverse(Pending {
                    due,
                    seq: self.seq,
                    msg,
                    rcpt: self.rcpt.clone(),
                    domain,
                    attempt: 2,
                    left,
                    last,
                    defer_reply: self.reply.clone(),
                    defer_remote: remote,
                }));
            }
        }
    }

    fn retry(&mut self, mut p: Pending, t: i64) {
        self.rcpt.clear();
        self.rcpt.push_str(&p.rcpt);
        if p.left > 0 {
            self.reply.clear();
            self.reply.push_str(&p.defer_reply);
            self.write_event(
                t,
                &p.msg,
                p.domain,
                p.attempt,
                Outcome::Deferred,
                p.defer_remote,
            );
            p.left -= 1;
            p.due = t + backoff(&mut self.rng, p.attempt);
            p.attempt += 1;
            self.seq += 1;
            p.seq = self.seq;
            self.retries.push(Reverse(p));
            return;
        }
        match p.last {
            Outcome::Delivered => {
                self.delivered_reply(&p.msg, p.domain, t);
                self.write_event(
                    t,
                    &p.msg,
                    p.domain,
                    p.attempt,
                    Outcome::Delivered,
                    true,
                );
            }
            Outcome::Expired => {
                let pool = &self.world.replies.sisimai_expired;
                let remote = if pool.is_empty() || self.rng.random_bool(0.6) {
                    self.reply.clear();
                    self.reply.push_str(&p.defer_reply);
                    p.defer_remote
                } else {
                    self.reply.clear();
                    let text = pool[self.rng.random_range(0..pool.len())];
                    push_addressed_to(&mut self.reply, text, &self.rcpt);
                    false
                };
                self.write_event(
                    t,
                    &p.msg,
                    p.domain,
                    p.attempt,
                    Outcome::Expired,
                    remote,
                );
            }
            _ => {
                let remote = self.failure_reply(Outcome::Bounced, &p.msg, p.domain, t);
                self.write_event(
                    t,
                    &p.msg,
                    p.domain,
                    p.attempt,
                    Outcome::Bounced,
                    remote,
                );
            }
        }
    }

    /// The sending IP of a message to a domain: stable across retries.
    fn sending_ip(&self, msg: &Msg, domain: u32) -> usize {
        let (start, len) = self.world.orgs[msg.org as usize].ips;
        (start + (mix64(msg.queue ^ u64::from(domain)) % u64::from(len)) as u32) as usize
    }

    /// Writes an acceptance reply in the receiving server's style to
    /// `self.reply`.
    fn delivered_reply(&mut self, msg: &Msg, domain: u32, t: i64) {
        let w = &self.world;
        let rng = &mut self.rng;
        let s = &mut self.reply;
        s.clear();
        match w.domains[domain as usize].style {
            Style::Google => {
                let epoch = w.start_epoch_secs + t / 1000;
                let _ = write!(s, "250 2.0.0 OK  {epoch} ");
                push_gsmtp_id(rng, s);
            }
            Style::Microsoft => {
                s.push_str("250 2.6.0 <");
                push_message_id(s, w, msg);
                let _ = write!(
                    s,
                    "> [InternalId={}] Queued mail for delivery",
                    rng.random_range(10_000_000_000_000u64..99_999_999_999_999)
                );
            }
            Style::Yahoo => s.push_str("250 ok dirdel"),
            Style::Tencent => s.push_str("250 OK: queued as."),
            Style::Netease => {
                let _ = write!(s, "250 Mail OK queued as mx{},", rng.random_range(1..40));
                push_alnum(rng, s, 20, ALNUM);
            }
            Style::Apple | Style::Postfix => {
                s.push_str("250 2.0.0 Ok: queued as ");
                push_alnum(rng, s, 10, HEX_UPPER);
            }
            Style::Sina => {
                let _ = write!(
                    s,
                    "250 ok queue id {}",
                    rng.random_range(100_000_000..999_999_999u64)
                );
            }
            Style::Exim => {
                s.push_str("250 OK id=");
                push_alnum(rng, s, 6, ALNUM);
                s.push('-');
                push_alnum(rng, s, 6, ALNUM);
                s.push('-');
                push_alnum(rng, s, 2, ALNUM);
            }
            Style::Plain => match rng.random_range(0..3) {
                0 => {
                    let _ = write!(
                        s,
                        "250 ok:  Message {} accepted",
                        rng.random_range(10_000_000..999_999_999u64)
                    );
                }
                1 => s.push_str("250 Thanks"),
                _ => {
                    let _ = write!(
                        s,
                        "250 MFD{} Message accepted for delivery",
                        rng.random_range(10_000..99_999)
                    );
                }
            },
        }
    }

    /// Writes a failure reply for `outcome` (bounced or deferred) to
    /// `self.reply`; returns whether the event names the remote host (a
    /// DNS failure or a local error has none).
    fn failure_reply(
        &mut self,
        outcome: Outcome,
        msg: &Msg,
        domain: u32,
        t: i64,
    ) -> bool {
        let ip = self.sending_ip(msg, domain);
        let w = &self.world;
        let rng = &mut self.rng;
        let s = &mut self.reply;
        let rcpt = self.rcpt.as_str();
        let d = &w.domains[domain as usize];
        let org = &w.orgs[msg.org as usize];
        let sending_ip = w.sending_ips[ip].as_str();
        let epoch = w.start_epoch_secs + t / 1000;
        s.clear();
        if outcome == Outcome::Deferred {
            if w.listed_ips[ip] && rng.random_bool(0.35) {
                blocklist_deferral(rng, s, d, sending_ip);
                return true;
            }
            if msg.heavy && rng.random_bool(0.4) {
                let texts = [
                    "451 4.7.1 Sender frequency limited, please try again later",
                    "421 4.7.0 HL:IFC too many messages from this sender, slow down",
                    "450 4.7.1 Receiving mail at a rate that prevents additional \
                     messages from being delivered",
                    "451 RP:QRC rate limited, try again later",
                ];
                s.push_str(texts[rng.random_range(0..texts.len())]);
                return true;
            }
            let local = if d.style == Style::Postfix
                || d.style == Style::Exim
                || d.style == Style::Plain
            {
                0.45
            } else {
                0.08
            };
            let r: f64 = rng.random();
            if r < local {
                return postfix_deferral(rng, s, d);
            }
            let pool = &w.replies.sisimai_defer;
            if r < local + 0.12 && !pool.is_empty() {
                push_addressed_to(s, pool[rng.random_range(0..pool.len())], rcpt);
                return true;
            }
            phrase_reply(rng, s, &w.replies, &w.replies.defer, d, rcpt, epoch);
            return true;
        }
        // Bounced.
        if msg.org == w.quota_org
            && t >= self.plan.over_quota_from
            && rng.random_bool(0.9)
        {
            s.push_str("550 5.7.1 org out rcpt count is exceeded");
            return false;
        }
        if w.listed_ips[ip] && rng.random_bool(0.5) {
            blocklist_bounce(rng, s, d, sending_ip);
            return true;
        }
        if msg.heavy && rng.random_bool(0.3) {
            let texts = [
                "550 5.7.1 Sender spam message rate limit exceeded",
                "554 5.7.1 Sender frequency limited",
                "550 RP:TRC too many messages from this sender",
            ];
            s.push_str(texts[rng.random_range(0..texts.len())]);
            return true;
        }
        if msg.nrcpt > 400 && rng.random_bool(0.1) {
            s.push_str("550 5.5.3 Too many recipients");
            return true;
        }
        let sdn = if org.spammy || msg.burst { 0.3 } else { 0.03 };
        if rng.random_bool(sdn) {
            let code = if rng.random_bool(0.1) {
                "SDN51"
            } else if d.cn {
                ["SDN3", "SDN4"][rng.random_range(0..2)]
            } else {
                ["SDN13", "SDN14"][rng.random_range(0..2)]
            };
            let _ = match rng.random_range(0..3) {
                0 => write!(
                    s,
                    "550 5.7.1 {code} Message rejected by the spam channel, please \
                     contact your administrator"
                ),
                1 => write!(
                    s,
                    "554 {code} Mail rejected: suspected spam, see the spam channel \
                     report"
                ),
                _ => write!(s, "550 {code} <{rcpt}>: message refused by spam channel"),
            };
            return true;
        }
        if rng.random_bool(0.012) {
            virus_bounce(rng, s);
            return true;
        }
        let pool = &w.replies.sisimai_bounce;
        if rng.random_bool(0.25) && !pool.is_empty() {
            push_addressed_to(s, pool[rng.random_range(0..pool.len())], rcpt);
            return true;
        }
        phrase_reply(rng, s, &w.replies, &w.replies.bounce, d, rcpt, epoch);
        true
    }

    /// Appends one event as a JSON line to the output buffer, with
    /// `self.rcpt` as recipient and `self.reply` as reply.
    fn write_event(
        &mut self,
        t: i64,
        msg: &Msg,
        domain: u32,
        attempt: u32,
        outcome: Outcome,
        remote: bool,
    ) {
        let ip = self.sending_ip(msg, domain);
        let w = &self.world;
        let org = &w.orgs[msg.org as usize];
        let d = &w.domains[domain as usize];
        let b = &mut self.buf;
        b.extend_from_slice(b"{\"timestamp\":\"");
        push_time(b, w, t);
        b.extend_from_slice(b"\",\"org_id\":");
        push_json_str(b, &org.id);
        b.extend_from_slice(b",\"sender\":");
        let s = &mut self.scratch;
        s.clear();
        push_local_part(s, org, msg.user);
        s.push('@');
        s.push_str(&org.domain);
        push_json_str(b, s);
        b.extend_from_slice(b",\"recipient\":");
        push_json_str(b, &self.rcpt);
        b.extend_from_slice(b",\"message_id\":");
        s.clear();
        push_message_id(s, w, msg);
        push_json_str(b, s);
        b.extend_from_slice(b",\"queue_id\":");
        s.clear();
        let _ = write!(s, "{:012X}", msg.queue & 0xFFFF_FFFF_FFFF);
        push_json_str(b, s);
        b.extend_from_slice(b",\"outcome\":\"");
        b.extend_from_slice(outcome.as_str().as_bytes());
        b.push(b'"');
        if let Some(code) = find_reply_code(&self.reply) {
            b.extend_from_slice(b",\"smtp_code\":");
            push_u64(b, u64::from(code));
        }
        if let Some(code) = find_enhanced_code(&self.reply) {
            s.clear();
            let _ = write!(s, "{code}");
            b.extend_from_slice(b",\"enhanced_code\":");
            push_json_str(b, s);
        }
        if !self.reply.is_empty() {
            b.extend_from_slice(b",\"reply\":");
            push_json_str(b, &self.reply);
        }
        if remote {
            b.extend_from_slice(b",\"remote_host\":");
            push_json_str(b, &d.mx);
            b.extend_from_slice(b",\"remote_ip\":");
            push_json_str(b, &d.ip);
        }
        b.extend_from_slice(b",\"sending_ip\":");
        push_json_str(b, &w.sending_ips[ip]);
        b.extend_from_slice(b",\"attempt\":");
        push_u64(b, u64::from(attempt));
        b.extend_from_slice(b",\"size\":");
        push_u64(b, msg.size);
        b.extend_from_slice(b",\"nrcpt\":");
        push_u64(b, u64::from(msg.nrcpt));
        if msg.campaign > 0 {
            s.clear();
            let _ = write!(s, "cmp-{:06}", msg.campaign);
            b.extend_from_slice(b",\"campaign_id\":");
            push_json_str(b, s);
        }
        b.extend_from_slice(b"}\n");
        self.written += 1;
    }
}

impl World {
    fn new(
        rng: &mut SmallRng,
        n_orgs: u32,
        days: u32,
        start_date: NaiveDate,
        events: u64,
    ) -> Self {
        // Organisations: Zipf-like sizes, readable unique names.
        let offset = rng.random_range(0..1024u64);
        let mut orgs = Vec::with_capacity(n_orgs as usize);
        let mut org_cum = Vec::with_capacity(n_orgs as usize);
        let mut total = 0.0;
        let weights: Vec<f64> =
            (0..n_orgs).map(|i| 1.0 / (f64::from(i) + 1.0).powf(1.1)).collect();
        let weight_sum: f64 = weights.iter().sum();
        let burst_org = 2.min(n_orgs - 1);
        let quota_org = 3.min(n_orgs - 1);
        for (i, &weight) in weights.iter().enumerate() {
            let combo = (i as u64 * 389 + offset) % 1024;
            let mut id = format!(
                "{}-{}",
                ORG_FIRST[(combo % 32) as usize],
                ORG_SECOND[(combo / 32) as usize]
            );
            if i >= 1024 {
                let _ = write!(id, "-{}", i / 1024 + 1);
            }
            let domain = format!("{id}.example");
            let share = weight / weight_sum;
            // About 25 messages a user a day (2.1 events a message).
            let daily_messages = events as f64 / f64::from(days) / 2.1 * share;
            let users = ((daily_messages / 25.0).ceil() as u32).max(8);
            let quality =
                [0.4, 0.7, 1.0, 1.0, 1.0, 1.3, 2.0, 3.0][rng.random_range(0..8)];
            let spammy =
                i as u32 == burst_org || (quality >= 2.0 && rng.random_bool(0.5));
            let ips = match i {
                0 => (0, 4),
                1 => (4, 4),
                2 if n_orgs > 3 => (8, 4),
                _ => (12, 16),
            };
            orgs.push(Org {
                id,
                domain,
                cn: rng.random_bool(0.55),
                users,
                fail_mult: quality,
                spammy,
                ips,
            });
            total += weight;
            org_cum.push(total);
        }
        let mean_quality: f64 =
            orgs.iter().zip(&weights).map(|(o, w)| o.fail_mult * w).sum::<f64>()
                / weight_sum;
        for org in &mut orgs {
            org.fail_mult /= mean_quality;
        }
        // Sending IPs: dedicated ranges for the three largest organisations,
        // a shared pool for the rest; three of them are on blocklists.
        let mut sending_ips = Vec::new();
        for base in [10, 20, 30] {
            for k in 0..4 {
                sending_ips.push(format!("203.0.113.{}", base + k));
            }
        }
        for k in 0..16 {
            sending_ips.push(format!("203.0.113.{}", 100 + k));
        }
        let listed: Vec<bool> = sending_ips
            .iter()
            .map(|ip| {
                matches!(ip.as_str(), "203.0.113.21" | "203.0.113.103" | "203.0.113.111")
            })
            .collect();

        // Recipient domains.
        let mut domains = Vec::with_capacity(PROVIDERS.len() + TAIL_DOMAINS as usize);
        let mut region_cum = [[0u32; PROVIDERS.len() + 1]; 2];
        let (mut cn_total, mut global_total) = (0, 0);
        for (k, &(name, mx, style, cn, w_cn, w_global)) in PROVIDERS.iter().enumerate() {
            domains.push(Domain {
                name: name.to_string(),
                mx: mx.to_string(),
                ip: doc_ip(mx),
                cn,
                style,
            });
            cn_total += w_cn;
            global_total += w_global;
            region_cum[0][k] = cn_total;
            region_cum[1][k] = global_total;
        }
        region_cum[0][PROVIDERS.len()] = 100;
        region_cum[1][PROVIDERS.len()] = 100;
        let (mut tail_cn, mut tail_global) = (Vec::new(), Vec::new());
        let perm = rng.random_range(0..32_768u64);
        for i in 0..u64::from(TAIL_DOMAINS) {
            let v = (i * 7919 + perm) % 32_768;
            let mut label = String::new();
            if v < 1024 {
                label.push_str(SYLLABLES[(v % 32) as usize]);
                label.push_str(SYLLABLES[(v / 32) as usize]);
            } else {
                label.push_str(SYLLABLES[(v % 32) as usize]);
                label.push_str(SYLLABLES[(v / 32 % 32) as usize]);
                label.push_str(SYLLABLES[(v / 1024) as usize]);
            }
            let h = mix64(v ^ 0xD0_0D);
            let cn = i.is_multiple_of(4);
            let tld = if cn {
                TLDS_CN[(h % TLDS_CN.len() as u64) as usize]
            } else {
                TLDS_GLOBAL[(h % TLDS_GLOBAL.len() as u64) as usize]
            };
            let name = format!("{label}.{tld}");
            let pick = (h >> 16) % 100;
            let (mx, style) = if cn && pick < 25 {
                ("mxbiz1.qq.com".to_string(), Style::Tencent)
            } else if cn && pick < 35 {
                ("qiye163mx01.mxmail.netease.com".to_string(), Style::Netease)
            } else if !cn && pick < 22 {
                (
                    format!(
                        "{label}-{}.mail.protection.outlook.com",
                        tld.replace('.', "-")
                    ),
                    Style::Microsoft,
                )
            } else if !cn && pick < 36 {
                ("aspmx.l.google.com".to_string(), Style::Google)
            } else {
                let host = ["mx1", "mx2", "mail", "smtp", "mx"][((h >> 24) % 5) as usize];
                let style = match (h >> 32) % 10 {
                    0..=5 => Style::Postfix,
                    6 | 7 => Style::Exim,
                    _ => Style::Plain,
                };
                (format!("{host}.{name}"), style)
            };
            let index = domains.len() as u32;
            if cn {
                tail_cn.push(index)
            } else {
                tail_global.push(index)
            }
            domains.push(Domain { name, ip: doc_ip(&mx), mx, cn, style });
        }

        let mut day_iso = Vec::with_capacity(days as usize);
        let mut day_compact = Vec::with_capacity(days as usize);
        let mut day_weight = Vec::with_capacity(days as usize);
        for d in 0..days {
            let date = start_date + chrono::Days::new(u64::from(d));
            day_iso.push(format!("{}T", date.format("%Y-%m-%d")));
            day_compact.push(date.format("%Y%m%d").to_string());
            day_weight.push(match date.weekday() {
                Weekday::Sat => 42,
                Weekday::Sun => 35,
                Weekday::Fri => 92,
                _ => 100,
            });
        }
        let start_epoch_secs =
            start_date.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp());

        Self {
            orgs,
            org_cum,
            domains,
            region_cum,
            tail_cn,
            tail_global,
            sending_ips,
            listed_ips: listed,
            replies: ReplyBook::new(),
            day_iso,
            day_compact,
            day_weight,
            start_epoch_secs,
            burst_org,
            quota_org,
        }
    }
}

impl ReplyBook {
    fn new() -> Self {
        let taxonomy = Taxonomy::builtin();
        let bounce_weights: [(&'static str, u32); 11] = [
            ("recipient_unknown", 460),
            ("mailbox_full", 90),
            ("message_too_large", 25),
            ("domain_error", 70),
            ("network_error", 15),
            ("blacklisted", 50),
            ("mailbox_expired_or_locked", 50),
            ("authentication", 10),
            ("relay_denied", 20),
            ("rejected_by_recipient", 130),
            ("other", 40),
        ];
        let defer_weights: [(&'static str, u32); 4] = [
            ("network_error", 450),
            ("mailbox_full", 200),
            ("blacklisted", 150),
            ("other", 200),
        ];
        // Reasons the generator words itself, in their own scenarios.
        let special = [
            "spam_channel_domestic",
            "spam_channel_overseas",
            "spam_channel_sdn51",
            "virus_detected",
            "org_send_limit_exceeded",
            "delivery_expired",
        ];
        let mut phrases = Vec::new();
        let mut bounce: Vec<(&'static str, u32, PhrasePool)> =
            bounce_weights.iter().map(|&(c, w)| (c, w, PhrasePool::default())).collect();
        let mut defer: Vec<(&'static str, u32, PhrasePool)> =
            defer_weights.iter().map(|&(c, w)| (c, w, PhrasePool::default())).collect();
        for reason in &taxonomy.reasons {
            if special.contains(&reason.id.as_str()) {
                continue;
            }
            for phrase in reason.all_phrases() {
                if phrase.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                let own_code = find_reply_code(phrase);
                let platform = phrase.starts_with("state=");
                let verbatim = own_code.is_some() || platform;
                let class = own_code.map(|c| c / 100);
                let lower = phrase.to_ascii_lowercase();
                let rcpt_form = !lower.contains("address rejected")
                    && matches!(
                        reason.category.as_str(),
                        "recipient_unknown"
                            | "mailbox_full"
                            | "mailbox_expired_or_locked"
                    );
                for (class_wanted, pools) in [(5u16, &mut bounce), (4u16, &mut defer)] {
                    if class.is_some_and(|c| c != class_wanted)
                        || (class_wanted == 4
                            && (platform || reason.severity != Severity::Soft))
                    {
                        continue;
                    }
                    let Some((category, _, pool)) =
                        pools.iter_mut().find(|(c, _, _)| *c == reason.category)
                    else {
                        continue;
                    };
                    let (smtp, enhanced) = codes_for(reason, category, class_wanted);
                    let index = phrases.len();
                    phrases.push(Phrase {
                        text: phrase.to_string(),
                        category,
                        verbatim,
                        rcpt_form,
                        smtp,
                        enhanced,
                    });
                    if phrase.is_ascii() {
                        pool.ascii.push(index);
                    } else {
                        pool.other.push(index);
                    }
                }
            }
        }
        bounce.retain(|(_, _, p)| !p.ascii.is_empty());
        defer.retain(|(_, _, p)| !p.ascii.is_empty());

        let (mut sisimai_bounce, mut sisimai_defer, mut sisimai_expired) =
            (Vec::new(), Vec::new(), Vec::new());
        for line in SISIMAI_TSV.lines().skip(1) {
            let fields: Vec<&str> = line.split('\t').collect();
            let [reason, _, status, _, text] = fields[..] else {
                continue;
            };
            let text = text.trim();
            // Leave out the few that hold nothing but addresses.
            if text.len() < 16
                || text.ends_with(':')
                || text.split_whitespace().all(|word| word.contains('@'))
            {
                continue;
            }
            if reason == "expired" {
                sisimai_expired.push(text);
                continue;
            }
            match find_reply_code(text).map(|c| c / 100) {
                Some(5) => sisimai_bounce.push(text),
                Some(4) => sisimai_defer.push(text),
                Some(_) => {}
                None if status.starts_with('4') => sisimai_defer.push(text),
                None => sisimai_bounce.push(text),
            }
        }
        Self { phrases, bounce, defer, sisimai_bounce, sisimai_defer, sisimai_expired }
    }
}

/// The reply code and enhanced code a reason's phrase is sent with, for a
/// class (4 or 5): the reason's own codes where they fit, else the usual
/// ones for its category.
fn codes_for(
    reason: &crate::taxonomy::Reason,
    category: &str,
    class: u16,
) -> (u16, String) {
    let smtp = reason
        .reply_codes
        .iter()
        .filter_map(|c| c.parse::<u16>().ok())
        .find(|c| c / 100 == class)
        .unwrap_or(match (class, category) {
            (5, "mailbox_full" | "message_too_large") => 552,
            (5, "network_error" | "blacklisted" | "relay_denied") => 554,
            (5, "authentication") => 530,
            (5, _) => 550,
            (_, "mailbox_full") => 452,
            (_, "network_error" | "blacklisted") => 421,
            (_, "other") => 451,
            _ => 450,
        });
    let enhanced = reason
        .enhanced_codes
        .iter()
        .find_map(|p| {
            let mut parts = p.split('.');
            let (c, s, d) = (parts.next()?, parts.next()?, parts.next()?);
            let class_ok = c == "x" || c == class.to_string();
            (class_ok && s != "x")
                .then(|| format!("{class}.{s}.{}", if d == "x" { "0" } else { d }))
        })
        .unwrap_or_else(|| {
            let rest = match category {
                "recipient_unknown" => "1.1",
                "mailbox_full" => "2.2",
                "message_too_large" => "3.4",
                "domain_error" if class == 4 => "4.3",
                "domain_error" => "1.2",
                "network_error" => "4.1",
                "mailbox_expired_or_locked" => "2.1",
                "authentication" => "7.0",
                "other" => "0.0",
                _ => "7.1",
            };
            format!("{class}.{rest}")
        });
    (smtp, enhanced)
}

/// Appends a real reply to `s` with every mail address in it replaced by
/// `rcpt`: the collected replies name the test mailboxes they were
/// recorded for, which would otherwise show up in reports about other
/// recipients.
fn push_addressed_to(s: &mut String, text: &str, rcpt: &str) {
    let local = |c: char| c.is_ascii_alphanumeric() || "._%+-=".contains(c);
    let host = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let start = rest[..at]
            .char_indices()
            .rev()
            .find(|(_, c)| !local(*c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let host_len =
            rest[at + 1..].find(|c: char| !host(c)).unwrap_or(rest.len() - at - 1);
        let domain = rest[at + 1..at + 1 + host_len].trim_end_matches(['.', '-']);
        if start == at || !domain.contains('.') {
            s.push_str(&rest[..=at]);
            rest = &rest[at + 1..];
            continue;
        }
        s.push_str(&rest[..start]);
        s.push_str(rcpt);
        rest = &rest[at + 1 + domain.len()..];
    }
    s.push_str(rest);
}

/// A reply around a taxonomy phrase of a category drawn by weight.
fn phrase_reply(
    rng: &mut SmallRng,
    s: &mut String,
    book: &ReplyBook,
    pools: &[(&'static str, u32, PhrasePool)],
    d: &Domain,
    rcpt: &str,
    epoch: i64,
) {
    let total: u32 = pools.iter().map(|(_, w, _)| w).sum();
    let mut x = rng.random_range(0..total.max(1));
    let mut chosen = &pools[0].2;
    for (_, w, pool) in pools {
        if x < *w {
            chosen = pool;
            break;
        }
        x -= w;
    }
    let native =
        !chosen.other.is_empty() && rng.random_bool(if d.cn { 0.45 } else { 0.01 });
    let list = if native { &chosen.other } else { &chosen.ascii };
    let p = &book.phrases[list[rng.random_range(0..list.len())]];
    if p.verbatim {
        s.push_str(&p.text);
        return;
    }
    let stage = match p.category {
        "recipient_unknown"
        | "mailbox_full"
        | "mailbox_expired_or_locked"
        | "relay_denied" => "RCPT TO",
        "authentication" | "blacklisted" => "MAIL FROM",
        _ => "end of DATA",
    };
    let (code, enh, text) = (p.smtp, p.enhanced.as_str(), p.text.as_str());
    let trailer = match rng.random_range(0..10) {
        0..=2 if p.rcpt_form => {
            let _ =
                write!(s, "{code} {enh} <{rcpt}>: Recipient address rejected: {text}");
            false
        }
        0..=4 => {
            let _ = write!(s, "{code} {enh} {text}");
            true
        }
        5..=7 => {
            let _ = write!(
                s,
                "host {}[{}] said: {code} {enh} {text} (in reply to {stage} command)",
                d.mx, d.ip
            );
            false
        }
        8 => {
            let _ = write!(s, "{code} {text}");
            true
        }
        _ => {
            let _ = write!(s, "smtp; {code} {enh} {text}");
            false
        }
    };
    if trailer {
        provider_trailer(rng, s, d, epoch);
    }
}

/// What some big providers put after the text of a reply: a tracking id.
fn provider_trailer(rng: &mut SmallRng, s: &mut String, d: &Domain, epoch: i64) {
    match d.style {
        Style::Google => {
            s.push(' ');
            push_gsmtp_id(rng, s);
        }
        Style::Microsoft => {
            s.push_str(" [");
            push_alnum(rng, s, 2, UPPER);
            let _ = write!(
                s,
                "{}PR{:02}MB{:04}.{}.prod.outlook.com]",
                rng.random_range(1..10),
                rng.random_range(1..20),
                rng.random_range(1000..10_000),
                ["namprd04", "eurprd07", "apcprd02", "jpnprd01"][rng.random_range(0..4)]
            );
        }
        Style::Netease => {
            let host = d.mx.split('.').next().unwrap_or("mx");
            let _ = write!(s, " {host},");
            push_alnum(rng, s, 22, ALNUM);
            let _ = write!(s, " {epoch}");
        }
        _ => {}
    }
}

/// Gmail's tracking id, `gk1si5712883pbc.166 - gsmtp`.
fn push_gsmtp_id(rng: &mut SmallRng, s: &mut String) {
    push_alnum(rng, s, 2, LOWER);
    let _ = write!(
        s,
        "{}si{}p{}.{} - gsmtp",
        rng.random_range(1..30),
        rng.random_range(1_000_000..99_999_999),
        ["ab", "ac", "ad", "bb", "bc", "db"][rng.random_range(0..6)],
        rng.random_range(1..250)
    );
}

/// Postfix's own deferral texts (from a real `mail.log`): no SMTP reply.
/// Returns whether a remote host was reached.
fn postfix_deferral(rng: &mut SmallRng, s: &mut String, d: &Domain) -> bool {
    let (mx, ip) = (&d.mx, &d.ip);
    let _ = match rng.random_range(0..10) {
        0..=2 => write!(s, "connect to {mx}[{ip}]:25: Connection timed out"),
        3 => write!(
            s,
            "delivery temporarily suspended: connect to {mx}[{ip}]:25: \
             Connection timed out"
        ),
        4 => write!(s, "connect to {mx}[{ip}]:25: Connection refused"),
        5 => write!(
            s,
            "lost connection with {mx}[{ip}] while receiving the initial server greeting"
        ),
        6 => write!(
            s,
            "conversation with {mx}[{ip}] timed out while receiving the initial \
             server greeting"
        ),
        7 => write!(s, "TLS is required, but was not offered by host {mx}[{ip}]"),
        8 => {
            let _ = write!(
                s,
                "Host or domain name not found. Name service error for name={} type=MX: \
                 Host not found, try again",
                d.name
            );
            return false;
        }
        _ => {
            s.push_str("mail transport unavailable");
            return false;
        }
    };
    true
}

fn blocklist_bounce(rng: &mut SmallRng, s: &mut String, d: &Domain, ip: &str) {
    let _ = if d.style == Style::Microsoft {
        write!(
            s,
            "550 5.7.606 Access denied, banned sending IP [{ip}]. To request removal \
             from \
             this list please visit https://sender.office.com/ and follow the directions."
        )
    } else {
        match rng.random_range(0..4) {
            0 => write!(
                s,
                "554 5.7.1 Service unavailable; Client host [{ip}] blocked using \
                 zen.spamhaus.org; https://www.spamhaus.org/query/ip/{ip}"
            ),
            1 => write!(
                s,
                "554 5.7.1 Service unavailable; Client host [{ip}] blocked using \
                 b.barracudacentral.org; \
                 https://www.barracudanetworks.com/reputation/?pr=1&ip={ip}"
            ),
            2 => write!(
                s,
                "521 5.7.1 Service unavailable; client [{ip}] blocked using \
                 dnsbl.sorbs.net"
            ),
            _ => write!(s, "554 IP in blacklist, {ip} is rejected by {}", d.mx),
        }
    };
}

fn blocklist_deferral(rng: &mut SmallRng, s: &mut String, d: &Domain, ip: &str) {
    let _ = match (d.style, rng.random_range(0..2)) {
        (Style::Yahoo, _) | (_, 0) => write!(
            s,
            "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected \
             volume or user complaints - 4.16.55.1; see \
             https://postmaster.yahooinc.com/error-codes"
        ),
        (Style::Google, _) => write!(
            s,
            "421-4.7.28 [{ip}] Our system has detected an unusual rate of unsolicited \
             mail originating from your IP address. To protect our users from spam, mail \
             sent from \
             your IP address has been temporarily rate limited."
        ),
        _ => write!(
            s,
            "450 4.7.1 Client host rejected: cannot find your reverse hostname, [{ip}]"
        ),
    };
}

fn virus_bounce(rng: &mut SmallRng, s: &mut String) {
    let name = VIRUS_NAMES[rng.random_range(0..VIRUS_NAMES.len())];
    let _ = match rng.random_range(0..5) {
        0 => write!(s, "550 5.7.1 Virus found: {name}"),
        1 => write!(s, "554 5.7.0 Message rejected: infected with {name}"),
        2 => write!(s, "550 5.7.1 Message contains a virus ({name})"),
        3 => write!(
            s,
            "553 Message filtered. Refer to the Troubleshooting page at \
             http://www.symanteccloud.com/troubleshooting for more information. (#5.7.1)"
        ),
        _ => write!(
            s,
            "554 email rejected due to security policies - MCSpamSignature.sa.2.2"
        ),
    };
}

fn pick_domain(w: &World, rng: &mut SmallRng, cn: bool) -> u32 {
    let cum = &w.region_cum[usize::from(!cn)];
    let x = rng.random_range(0..100);
    let k = cum.partition_point(|&c| c <= x);
    if k < PROVIDERS.len() {
        return k as u32;
    }
    let tail = if rng.random_bool(if cn { 0.6 } else { 0.1 }) {
        &w.tail_cn
    } else {
        &w.tail_global
    };
    tail[zipf_index(rng, tail.len())]
}

/// The address of a person at a domain, written to `s`: different people
/// have different addresses there.
fn make_recipient(d: &Domain, person: u64, s: &mut String) {
    s.clear();
    if d.name == "qq.com" && !person.is_multiple_of(4) {
        let _ = write!(s, "{}", 100_000 + person * 397);
    } else if d.cn {
        let given = CN_GIVEN[(person % 20) as usize];
        let family = CN_FAMILY[(person / 20 % 20) as usize];
        let _ = match person / 400 % 3 {
            0 => write!(s, "{family}{given}"),
            1 => write!(s, "{given}_{family}"),
            _ => write!(s, "{family}.{given}"),
        };
        push_nonzero(s, person / 1200);
    } else {
        let first = WEST_FIRST[(person % 20) as usize];
        let last = WEST_LAST[(person / 20 % 20) as usize];
        let _ = match person / 400 % 5 {
            0 => write!(s, "{first}.{last}"),
            1 => write!(s, "{first}{last}"),
            2 => write!(s, "{first}_{last}"),
            3 => write!(s, "{last}.{first}"),
            _ => write!(s, "{last}{first}"),
        };
        push_nonzero(s, person / 2000);
    }
    s.push('@');
    s.push_str(&d.name);
}

fn push_nonzero(s: &mut String, n: u64) {
    if n > 0 {
        let _ = write!(s, "{n}");
    }
}

fn push_local_part(s: &mut String, org: &Org, user: u32) {
    if let Some(role) = ROLE_USERS.get(user as usize) {
        s.push_str(role);
        return;
    }
    let k = (user as usize) - ROLE_USERS.len();
    let n = k / 400;
    if org.cn {
        s.push_str(CN_FAMILY[k / 20 % 20]);
        s.push_str(CN_GIVEN[k % 20]);
    } else {
        s.push_str(WEST_FIRST[k % 20]);
        s.push('.');
        s.push_str(WEST_LAST[k / 20 % 20]);
    }
    if n > 0 {
        let _ = write!(s, "{n}");
    }
}

/// `YYYYMMDDhhmmss.QUEUEID@domain`, as Postfix makes them.
fn push_message_id(s: &mut String, w: &World, msg: &Msg) {
    let day = (msg.start / DAY_MS) as usize;
    let secs = msg.start % DAY_MS / 1000;
    let _ = write!(
        s,
        "{}{:02}{:02}{:02}.{:012X}@{}",
        w.day_compact[day.min(w.day_compact.len() - 1)],
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        msg.queue & 0xFFFF_FFFF_FFFF,
        w.orgs[msg.org as usize].domain
    );
}

/// `YYYY-MM-DDThh:mm:ss.mmmZ` for `t` milliseconds from the window start.
fn push_time(b: &mut Vec<u8>, w: &World, t: i64) {
    let day = (t / DAY_MS) as usize;
    b.extend_from_slice(w.day_iso[day.min(w.day_iso.len() - 1)].as_bytes());
    let ms = (t % DAY_MS) as u64;
    let secs = ms / 1000;
    push_digits(b, secs / 3600, 2);
    b.push(b':');
    push_digits(b, secs / 60 % 60, 2);
    b.push(b':');
    push_digits(b, secs % 60, 2);
    b.push(b'.');
    push_digits(b, ms % 1000, 3);
    b.push(b'Z');
}

fn push_digits(b: &mut Vec<u8>, v: u64, width: u32) {
    for k in (0..width).rev() {
        b.push(b'0' + (v / 10u64.pow(k) % 10) as u8);
    }
}

fn push_u64(b: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    b.extend_from_slice(&tmp[i..]);
}

/// A JSON string literal: quotes, backslashes and control characters
/// escaped; other characters, UTF-8 included, as they are.
fn push_json_str(b: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    b.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let escape: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => &[],
            _ => continue,
        };
        b.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            b.extend_from_slice(b"\\u00");
            b.push(HEX[usize::from(c >> 4)]);
            b.push(HEX[usize::from(c & 0xf)]);
        } else {
            b.extend_from_slice(escape);
        }
        start = i + 1;
    }
    b.extend_from_slice(&bytes[start..]);
    b.push(b'"');
}

fn push_alnum(rng: &mut SmallRng, s: &mut String, n: usize, set: &[u8]) {
    for _ in 0..n {
        s.push(char::from(set[rng.random_range(0..set.len())]));
    }
}

/// Traffic weight of minute `m` of the day: the hourly profile, linearly
/// interpolated so that it has no steps.
fn minute_weight(m: u32) -> u64 {
    let (h, mm) = ((m / 60) as usize, u64::from(m % 60));
    HOURLY[h] * (60 - mm) + HOURLY[(h + 1) % 24] * mm
}

/// The delay before attempt `failed + 1`, Postfix-like: 5 minutes, doubling,
/// at most 4,000 seconds, with some jitter.
fn backoff(rng: &mut SmallRng, failed: u32) -> i64 {
    let base = (300_000i64 << failed.saturating_sub(1).min(4)).min(4_000_000);
    base + rng.random_range(0..base / 4)
}

/// An index in `0..n`, index k drawn about in proportion to 1/(k+1).
fn zipf_index(rng: &mut SmallRng, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let u: f64 = rng.random();
    let x = (n as f64 + 1.0).powf(u) - 1.0;
    (x as usize).min(n - 1)
}

fn log_uniform(rng: &mut SmallRng, lo: f64, hi: f64) -> u64 {
    let u: f64 = rng.random();
    (lo * (hi / lo).powf(u)) as u64
}

/// An address of the documentation ranges, fixed per host name.
fn doc_ip(host: &str) -> String {
    let h = host.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let net = if h & 1 == 0 { "192.0.2" } else { "198.51.100" };
    format!("{net}.{}", 1 + (h >> 8) % 254)
}

/// SplitMix64's finaliser: a fixed, well-mixed function of `z`.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::classify::classify_event;
    use crate::event::DeliveryEvent;
    use crate::formats::canonical::decode;
    use crate::formats::{DecodeSettings, Decoded};
    use crate::taxonomy::Classifier;

    #[test]
    fn collected_replies_name_the_recipient_not_the_test_mailbox() {
        let mut s = String::new();
        push_addressed_to(
            &mut s,
            "550 5.7.0 <virusdetected@libsisimai.net>: Recipient address rejected; mail from a@b, to kijitora@example.jp.",
            "li.wei@qq.com",
        );
        assert_eq!(
            s,
            "550 5.7.0 <li.wei@qq.com>: Recipient address rejected; mail from a@b, to li.wei@qq.com."
        );
        s.clear();
        push_addressed_to(&mut s, "收件人：用户@例子.中国 不存在 @x.cn", "u@v.cn");
        assert_eq!(
            s, "收件人：用户@例子.中国 不存在 @x.cn",
            "only ASCII addresses are replaced"
        );
        s.clear();
        push_addressed_to(&mut s, "收件人kitty@example.jp不存在", "u@v.cn");
        assert_eq!(s, "收件人u@v.cn不存在");
    }

    fn options(events: u64, orgs: u32, days: u32, seed: u64) -> GenerateOptions {
        GenerateOptions {
            events,
            orgs,
            days,
            seed,
            start_date: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
        }
    }

    fn bytes(opts: &GenerateOptions) -> Vec<u8> {
        let mut out = Vec::new();
        let n = generate(opts, &mut out).unwrap();
        assert_eq!(n, opts.events);
        out
    }

    fn events(opts: &GenerateOptions) -> Vec<DeliveryEvent> {
        let out = String::from_utf8(bytes(opts)).unwrap();
        let settings = DecodeSettings::default();
        out.lines()
            .map(|line| match decode(line, &settings) {
                Ok(Decoded::Events(mut events)) if events.len() == 1 => events.remove(0),
                other => panic!("{line} gave {other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let opts = options(5_000, 12, 2, 7);
        let (a, b) = (bytes(&opts), bytes(&opts));
        assert_eq!(a, b);
        assert_eq!(a.iter().filter(|&&c| c == b'\n').count(), 5_000);
    }

    #[test]
    fn different_seeds_give_different_bytes() {
        assert_ne!(bytes(&options(2_000, 12, 2, 1)), bytes(&options(2_000, 12, 2, 2)));
    }

    #[test]
    fn nothing_asked_nothing_written() {
        assert!(bytes(&options(0, 3, 1, 1)).is_empty());
        assert_eq!(
            bytes(&options(7, 1, 1, 1)).iter().filter(|&&c| c == b'\n').count(),
            7
        );
        for refused in [options(7, 0, 1, 1), options(7, 1, 0, 1), options(7, 1, 4000, 1)]
        {
            let err = generate(&refused, &mut Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        }
    }

    #[test]
    fn every_line_is_a_canonical_event_in_time_order_with_consistent_codes() {
        let opts = options(20_000, 30, 3, 42);
        let events = events(&opts);
        let start = opts.start_date.and_hms_opt(0, 0, 0).unwrap().and_utc();
        let end = start + chrono::Duration::days(3);
        let mut previous = start;
        for e in &events {
            assert!(e.event_time >= previous && e.event_time < end, "{e:?}");
            previous = e.event_time;
            let sender = e.sender.as_deref().unwrap();
            assert!(sender.ends_with(&format!("@{}.example", e.org_id)), "{e:?}");
            assert!(
                e.recipient.contains('@')
                    && e.message_id.is_some()
                    && e.queue_id.is_some()
            );
            let class = e.smtp_code.map(|c| c / 100);
            match e.outcome {
                Outcome::Delivered => assert_eq!(class, Some(2), "{e:?}"),
                Outcome::Deferred => assert!(class.is_none_or(|c| c == 4), "{e:?}"),
                Outcome::Bounced => assert!(class.is_none_or(|c| c == 5), "{e:?}"),
                Outcome::Expired => assert!(class.is_none_or(|c| c >= 4), "{e:?}"),
                Outcome::Rejected => panic!("no rejections are generated"),
            }
            if let (Some(code), Some(reply)) = (e.smtp_code, e.reply.as_deref()) {
                assert!(reply.contains(&code.to_string()), "{e:?}");
            }
            if let (Some(code), Some(reply)) =
                (e.enhanced_code.as_deref(), e.reply.as_deref())
            {
                assert!(reply.contains(code), "{e:?}");
            }
        }
        // Retries continue the same message to the same recipient.
        let mut first: HashMap<(&str, &str), u32> = HashMap::new();
        for e in &events {
            let key = (e.queue_id.as_deref().unwrap(), e.recipient.as_str());
            let attempt = e.attempt.unwrap();
            if attempt == 1 {
                first.insert(key, 1);
            } else if let Some(last) = first.get_mut(&key) {
                assert_eq!(attempt, *last + 1, "{e:?}");
                *last = attempt;
            }
        }
        assert!(events.iter().any(|e| e.attempt.unwrap() >= 3));
        // A message goes to different recipients.
        let mut seen = HashSet::new();
        for e in events.iter().filter(|e| e.attempt == Some(1)) {
            assert!(seen.insert((e.queue_id.as_deref(), e.recipient.as_str())), "{e:?}");
        }
    }

    #[test]
    fn the_outcome_mix_is_as_intended() {
        let events = events(&options(20_000, 25, 2, 3));
        let share = |o: Outcome| {
            events.iter().filter(|e| e.outcome == o).count() as f64 / events.len() as f64
        };
        let checks = [
            (Outcome::Delivered, 0.92, 0.02),
            (Outcome::Deferred, 0.04, 0.015),
            (Outcome::Bounced, 0.035, 0.015),
            (Outcome::Expired, 0.005, 0.004),
        ];
        for (outcome, want, tolerance) in checks {
            let got = share(outcome);
            assert!(
                (got - want).abs() <= tolerance,
                "{outcome:?}: {got:.4}, want {want}"
            );
        }
    }

    #[test]
    fn the_scenarios_the_reports_look_for_are_there() {
        let opts = options(60_000, 20, 1, 11);
        let events = events(&opts);
        let classifier = Classifier::builtin();
        let mut categories: HashMap<String, usize> = HashMap::new();
        let mut reasons: HashSet<String> = HashSet::new();
        let mut listed_ip_bounces = 0;
        let mut failures = 0;
        for e in events.iter().filter(|e| e.outcome.is_failure()) {
            failures += 1;
            let class = classify_event(&classifier, e);
            let category = class.category.unwrap();
            let ip = e.sending_ip.as_deref().unwrap();
            if category == "blacklisted" && e.reply.as_deref().unwrap().contains(ip) {
                assert!(e.remote_host.is_some(), "{e:?}");
                listed_ip_bounces += 1;
            }
            *categories.entry(category).or_default() += 1;
            reasons.extend(class.reason);
        }
        assert!(listed_ip_bounces > 0);
        for category in
            ["spam_channel", "virus", "blacklisted", "recipient_unknown", "other"]
        {
            assert!(categories.contains_key(category), "no {category}: {categories:?}");
        }
        for reason in [
            "org_send_limit_exceeded",
            "spam_channel_domestic",
            "spam_channel_overseas",
            "virus_detected",
        ] {
            assert!(reasons.contains(reason), "no {reason}");
        }
        let unclassified = categories.get("unclassified").copied().unwrap_or(0);
        assert!(
            unclassified * 20 < failures,
            "{unclassified} of {failures} unclassified"
        );

        let mut per_sender: HashMap<&str, HashSet<&str>> = HashMap::new();
        for e in events.iter().filter(|e| e.attempt == Some(1)) {
            per_sender
                .entry(e.sender.as_deref().unwrap())
                .or_default()
                .insert(e.message_id.as_deref().unwrap());
        }
        let busiest = per_sender.values().map(HashSet::len).max().unwrap();
        assert!(busiest > 1000, "busiest sender sent {busiest} messages");
        assert!(events.iter().any(|e| e.nrcpt.unwrap() > 400));
        assert!(
            events.iter().any(|e| e.extra.as_deref().is_some_and(|x| x.contains("cmp-")))
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        let text = "a\"b\\c\nd\u{1}é 空";
        let mut b = Vec::new();
        push_json_str(&mut b, text);
        let back: String = serde_json::from_slice(&b).unwrap();
        assert_eq!(back, text);
    }
}
