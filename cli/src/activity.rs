//! What waits, and why: the lines `plumb status` and `plumb dev` print below the posture.
//!
//! A fleet whose verdicts stand still looks broken unless something says what it waits for: a
//! spent GitHub quota (evaluations parked until it renews), the content-creation budget (fixes
//! queued until the window refills), a sweep deferring entities to leave a quota's reserve.
//! These lines come from `GetPosture` (the services record them in Postgres), so they say the
//! same whichever replica is doing the waiting.

use chrono::{DateTime, Utc};
use plumbline_proto::v1::{GetPostureResponse, SweepProgress, Wait, WaitCause, WaitStage};

use crate::output::datetime as at;

/// "52 min", "40 s", "3.5 h": a span in the unit a person reads.
fn span(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{:.1} h", s as f64 / 3600.0),
    }
}

/// "10:41:07 UTC (in 52 min)" or "(3 min ago)": the clock time, and how far it is from `now`
/// (with the date when it is not today's).
fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let rel = match secs {
        0 => "now".to_string(),
        s if s > 0 => format!("in {}", span(s)),
        s => format!("{} ago", span(-s)),
    };
    let clock = if t.date_naive() == now.date_naive() {
        t.format("%H:%M:%S UTC").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    };
    format!("{clock} ({rel})")
}

fn stage_noun(w: &Wait, n: u64) -> &'static str {
    let plural = n != 1;
    match WaitStage::try_from(w.stage).unwrap_or(WaitStage::Unspecified) {
        WaitStage::Remediation if plural => "fixes or alerts",
        WaitStage::Remediation => "fix or alert",
        _ if plural => "evaluations",
        _ => "evaluation",
    }
}

fn wait_line(w: &Wait, now: DateTime<Utc>) -> String {
    let cause = WaitCause::try_from(w.cause)
        .ok()
        .and_then(WaitCause::to_domain)
        .map(|c| c.describe())
        .unwrap_or("a limit");
    let until = match (at(w.first_until.as_ref()), at(w.last_until.as_ref())) {
        (Some(first), Some(last)) if (last - first).num_seconds() >= 1 => {
            format!("between {} and {}", when(first, now), when(last, now))
        }
        (_, Some(last)) => format!("until {}", when(last, now)),
        _ => String::new(),
    };
    format!(
        "waiting: {} {} {until}: {cause} ({})",
        w.entities,
        stage_noun(w, w.entities),
        crate::output::printable(&w.reason)
    )
}

fn sweep_line(p: &SweepProgress, now: DateTime<Utc>) -> String {
    let mut line = format!("sweep: {}/{} entities", p.done, p.entities);
    let updated = at(p.updated_at.as_ref());
    match (at(p.expected_finish.as_ref()), updated) {
        (Some(f), _) if p.done < p.entities => {
            line.push_str(&format!(", expected to finish {}", when(f, now)));
            if let Some(u) = updated {
                line.push_str(&format!(", last progress {}", when(u, now)));
            }
        }
        (_, Some(u)) => line.push_str(&format!(", done {}", when(u, now))),
        _ => {}
    }
    if p.deferred > 0 {
        line.push_str(&format!(
            "; {} deferred to the next sweep: their credential's GitHub quota is at its reserve",
            p.deferred
        ));
        if let Some(u) = at(p.deferred_until.as_ref()) {
            line.push_str(&format!(" until {}", when(u, now)));
        }
    }
    line
}

/// Every line worth printing below a project's posture (none when nothing waits and no sweep
/// ran yet).
pub fn lines(p: &GetPostureResponse, now: DateTime<Utc>) -> Vec<String> {
    let mut out: Vec<String> = p.waits.iter().map(|w| wait_line(w, now)).collect();
    for q in &p.quotas {
        let observed = at(q.observed_at.as_ref())
            .map(|o| format!(" (read {})", when(o, now)))
            .unwrap_or_default();
        let resets = at(q.resets_at.as_ref());
        if resets.is_some_and(|r| r <= now) {
            // What was read belongs to a window that has ended.
            out.push(format!(
                "quota: {} had {}/{} GitHub requests left{observed}; its window has renewed since",
                crate::output::printable(&q.credential),
                q.remaining,
                q.limit
            ));
            continue;
        }
        let mut line = format!(
            "quota: {} has {}/{} GitHub requests left{observed}",
            crate::output::printable(&q.credential),
            q.remaining,
            q.limit
        );
        if let Some(r) = resets {
            line.push_str(&format!(", renews {}", when(r, now)));
        }
        if let Some(l) = at(q.limited_until.as_ref()).filter(|l| *l > now) {
            line.push_str(&format!("; limited by GitHub until {}", when(l, now)));
        }
        out.push(line);
    }
    if let Some(s) = &p.sweep {
        out.push(sweep_line(s, now));
    }
    out
}

/// Rules passing, and rules in all, across the project's posture counts.
pub fn passing(p: &GetPostureResponse) -> (u64, u64) {
    p.counts.iter().fold((0, 0), |(pass, all), c| {
        let yes = c.status == plumbline_proto::v1::EvalStatus::Pass as i32;
        (pass + if yes { c.count } else { 0 }, all + c.count)
    })
}

/// One clause for `plumb dev`'s posture line: what waits, in a few words ("" when nothing).
pub fn short(p: &GetPostureResponse, now: DateTime<Utc>) -> String {
    let mut parts: Vec<String> = p
        .waits
        .iter()
        .map(|w| {
            let what = match WaitCause::try_from(w.cause).unwrap_or(WaitCause::Unspecified) {
                WaitCause::ProviderQuota => "the GitHub quota",
                WaitCause::ContentBudget => "the content budget",
                WaitCause::ActionLease => "another replica",
                _ => "a dependency",
            };
            let until = at(w.last_until.as_ref())
                .map(|u| format!(" until {}", when(u, now)))
                .unwrap_or_default();
            let verb = if w.entities == 1 { "waits" } else { "wait" };
            format!(
                "{} {} {verb} for {what}{until}",
                w.entities,
                stage_noun(w, w.entities)
            )
        })
        .collect();
    if let Some(s) = p.sweep.as_ref().filter(|s| s.deferred > 0) {
        parts.push(format!("{} deferred by the sweep", s.deferred));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_proto::v1::CredentialQuota;
    use plumbline_proto::Timestamp;

    fn ts(t: DateTime<Utc>) -> Option<Timestamp> {
        Some(Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        })
    }

    #[test]
    fn waits_quotas_and_the_sweep_read_as_sentences() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let renew = now + chrono::Duration::minutes(52);
        let p = GetPostureResponse {
            counts: vec![],
            waits: vec![
                Wait {
                    stage: WaitStage::Evaluation as i32,
                    cause: WaitCause::ProviderQuota as i32,
                    entities: 4980,
                    first_until: ts(renew),
                    last_until: ts(renew),
                    reason: "rate limited".into(),
                },
                Wait {
                    stage: WaitStage::Remediation as i32,
                    cause: WaitCause::ContentBudget as i32,
                    entities: 1,
                    first_until: ts(now + chrono::Duration::seconds(40)),
                    last_until: ts(now + chrono::Duration::seconds(40)),
                    reason: "content-creation budget spent".into(),
                },
            ],
            quotas: vec![CredentialQuota {
                credential: "own".into(),
                remaining: 0,
                limit: 5000,
                resets_at: ts(renew),
                limited_until: ts(renew),
                observed_at: ts(now),
            }],
            sweep: Some(SweepProgress {
                started_at: ts(now - chrono::Duration::minutes(5)),
                entities: 5000,
                done: 2300,
                deferred: 2300,
                deferred_until: ts(renew),
                expected_finish: ts(now + chrono::Duration::minutes(49)),
                updated_at: ts(now),
            }),
        };
        let l = lines(&p, now);
        assert_eq!(
            l[0],
            "waiting: 4980 evaluations until 08:52:00 UTC (in 52 min): the GitHub quota of its credential is spent (rate limited)"
        );
        assert_eq!(
            l[1],
            "waiting: 1 fix or alert until 08:00:40 UTC (in 40 s): the content-creation budget is spent (content-creation budget spent)"
        );
        assert_eq!(
            l[2],
            "quota: own has 0/5000 GitHub requests left (read 08:00:00 UTC (now)), renews 08:52:00 UTC (in 52 min); limited by GitHub until 08:52:00 UTC (in 52 min)"
        );
        assert_eq!(
            l[3],
            "sweep: 2300/5000 entities, expected to finish 08:49:00 UTC (in 49 min), last progress 08:00:00 UTC (now); 2300 deferred to the next sweep: their credential's GitHub quota is at its reserve until 08:52:00 UTC (in 52 min)"
        );
        assert_eq!(
            short(&p, now),
            "; 4980 evaluations wait for the GitHub quota until 08:52:00 UTC (in 52 min); 1 fix or alert waits for the content budget until 08:00:40 UTC (in 40 s); 2300 deferred by the sweep"
        );
        // Past times say so; a window that ended is not shown as current; the server's text
        // never reaches the terminal as control characters.
        let later = now + chrono::Duration::hours(2);
        let mut old = p.clone();
        old.waits.clear();
        old.waits.push(Wait {
            reason: "x\u{1b}[2Jy".into(),
            ..p.waits[0].clone()
        });
        if let Some(s) = old.sweep.as_mut() {
            s.done = s.entities;
        }
        let l = lines(&old, later);
        assert!(l[0].ends_with("(x [2Jy)"), "{}", l[0]);
        assert!(
            l[0].contains("(1.1 h ago)") || l[0].contains("68 min ago"),
            "{}",
            l[0]
        );
        assert_eq!(
            l[1],
            "quota: own had 0/5000 GitHub requests left (read 08:00:00 UTC (2.0 h ago)); its window has renewed since"
        );
        assert!(
            l[2].starts_with("sweep: 5000/5000 entities, done 08:00:00 UTC (2.0 h ago)"),
            "{}",
            l[2]
        );
        let tomorrow = now + chrono::Duration::days(1);
        assert!(when(now, tomorrow).starts_with("2027-01-15 08:00:00 UTC"));
        assert!(lines(&GetPostureResponse::default(), now).is_empty());
        assert_eq!(short(&GetPostureResponse::default(), now), "");
    }
}
