//! GitHub webhooks: the signature is checked by an extractor before anything parses the body;
//! deliveries are stored (deduplicated by `X-GitHub-Delivery`) and acknowledged at once, and a
//! processor (`crate::deliveries`) works through the stored ones, so a crash between the two loses
//! nothing. Decoding a stored payload into the [`Event`] Gandalf acts on lives here, pure.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Sha256;
use shared::github::{CommitSha, PrNumber, RepoName};

use crate::drop_reason::PrChange;

/// The processor moved to `crate::deliveries`; `app` starts it from here.
pub use crate::deliveries::process_deliveries;

/// GitHub caps payloads at 25 MB; ours are comments and PR events, far smaller.
pub const MAX_WEBHOOK_BODY: usize = 2 * 1024 * 1024;

#[derive(Clone)]
pub struct WebhookSecret(pub Option<Arc<SecretString>>);

/// Computes `X-Hub-Signature-256` for a body (what GitHub sends; tests sign with it).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks an `X-Hub-Signature-256` header against the body, in constant time. Pure, so the fuzzer
/// (fuzz/fuzz_targets/github_webhook.rs) can hammer it without an HTTP server; the error says why.
pub fn verify(secret: &str, signature: Option<&str>, body: &[u8]) -> Result<(), &'static str> {
    let Some(hex_sig) = signature.and_then(|s| s.strip_prefix("sha256=")) else {
        return Err("missing X-Hub-Signature-256");
    };
    let expected = hex::decode(hex_sig).map_err(|_| "bad signature")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    // Constant-time comparison.
    mac.verify_slice(&expected).map_err(|_| "signature does not match")
}

/// Replaces every NUL character in the payload's strings and keys with U+FFFD. JSON may carry
/// `\u0000` and GitHub signs whatever its users typed, but Postgres's `jsonb` refuses it: stored
/// as is, an authentic delivery was answered 500 (and retried forever) and its commands were lost.
pub fn replace_nul(v: &mut Value) {
    const NUL: char = '\0';
    match v {
        Value::String(s) if s.contains(NUL) => *s = s.replace(NUL, "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(fields) => {
            if fields.keys().any(|k| k.contains(NUL)) {
                *fields = std::mem::take(fields)
                    .into_iter()
                    .map(|(k, v)| (k.replace(NUL, "\u{FFFD}"), v))
                    .collect();
            }
            fields.values_mut().for_each(replace_nul);
        }
        _ => {}
    }
}

/// What a delivery asks of Gandalf, read from its JSON payload. Decoding is pure (no database,
/// no GitHub) so that it can be fuzzed; the ids are parsed here, and a delivery whose repository,
/// number or SHA is missing or malformed is [`Event::Ignored`], never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new comment by a person on a pull request: it may carry `@gandalf` commands.
    Comment {
        repo: RepoName,
        number: PrNumber,
        author: String,
        body: String,
    },
    /// A pull request changed in a way that may take it out of the queue.
    PullRequest {
        repo: RepoName,
        number: PrNumber,
        change: PrChange,
    },
    /// A review was submitted, dismissed or edited: approvals may have changed.
    Reviewed { repo: RepoName, number: PrNumber },
    /// CI reported on a commit (`check_run`, `status`), or a check suite changed
    /// (`check_suite`: `report` is `None`, and the waiter asks GitHub): `required_checks`, §5.7.
    Ci {
        repo: RepoName,
        sha: CommitSha,
        report: Option<shared::github::CiReport>,
    },
    /// ping, a comment on an issue, our own comment, a PR opened or relabelled…: nothing to do.
    Ignored,
}

impl Event {
    /// The pull request it is about, where a reply goes.
    pub fn pull(&self) -> Option<(&RepoName, PrNumber)> {
        match self {
            Event::Comment { repo, number, .. }
            | Event::PullRequest { repo, number, .. }
            | Event::Reviewed { repo, number } => Some((repo, *number)),
            Event::Ci { .. } | Event::Ignored => None,
        }
    }
}

/// Decodes a stored delivery of type `event` into the [`Event`] Gandalf acts on.
pub fn decode(event: &str, p: &Value, bot_login: &str) -> Event {
    let str_at = |ptr: &str| p.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string();
    let number_at = |ptr: &str| p.pointer(ptr).and_then(Value::as_u64).and_then(PrNumber::new);
    let Ok(repo) = str_at("/repository/full_name").parse::<RepoName>() else {
        return Event::Ignored;
    };
    match event {
        "issue_comment" => {
            let on_pull = p.pointer("/issue/pull_request").is_some();
            let action = str_at("/action");
            let author = str_at("/comment/user/login");
            let is_bot = p.pointer("/comment/user/type").and_then(Value::as_str) == Some("Bot")
                || author.eq_ignore_ascii_case(bot_login);
            match number_at("/issue/number") {
                Some(number) if on_pull && action == "created" && !is_bot => Event::Comment {
                    repo,
                    number,
                    author,
                    body: str_at("/comment/body"),
                },
                _ => Event::Ignored,
            }
        }
        "pull_request" => {
            let Some(number) = number_at("/pull_request/number") else {
                return Event::Ignored;
            };
            let change = match str_at("/action").as_str() {
                "synchronize" => match str_at("/pull_request/head/sha").parse::<CommitSha>() {
                    Ok(head) => PrChange::Pushed { head },
                    Err(_) => return Event::Ignored,
                },
                "closed" => PrChange::Closed {
                    merged: p
                        .pointer("/pull_request/merged")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                },
                "edited" if p.pointer("/changes/base").is_some() => PrChange::Retargeted,
                _ => return Event::Ignored,
            };
            Event::PullRequest { repo, number, change }
        }
        "pull_request_review" => match (str_at("/action").as_str(), number_at("/pull_request/number")) {
            ("submitted" | "dismissed" | "edited", Some(number)) => Event::Reviewed { repo, number },
            _ => Event::Ignored,
        },
        // SPEC §5.7: what the repository's CI says about a commit. Gandalf's own check is not a
        // required check of anything, so its runs and statuses are ignored here.
        "check_run" => {
            let run = p.get("check_run").cloned().unwrap_or_default();
            match (
                run.get("head_sha")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<CommitSha>().ok()),
                shared::github::CiReport::from_check_run(&run),
            ) {
                (Some(sha), Some(report)) if report.name != crate::checks::CHECK_NAME => Event::Ci {
                    repo,
                    sha,
                    report: Some(report),
                },
                _ => Event::Ignored,
            }
        }
        "status" => match (
            str_at("/sha").parse::<CommitSha>(),
            shared::github::CiReport::from_status(p),
        ) {
            (Ok(sha), Some(report)) if report.name != crate::checks::CHECK_NAME => Event::Ci {
                repo,
                sha,
                report: Some(report),
            },
            _ => Event::Ignored,
        },
        "check_suite" => match str_at("/check_suite/head_sha").parse::<CommitSha>() {
            Ok(sha) => Event::Ci {
                repo,
                sha,
                report: None,
            },
            Err(_) => Event::Ignored,
        },
        _ => Event::Ignored,
    }
}

/// A delivery whose signature checked out, with its event name and delivery id.
pub struct SignedDelivery {
    pub event: String,
    pub delivery: String,
    pub body: Bytes,
}

pub struct Rejection(StatusCode, &'static str);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        if self.0 == StatusCode::UNAUTHORIZED {
            tracing::warn!(reason = self.1, "refused a GitHub delivery");
        }
        (self.0, self.1).into_response()
    }
}

impl<S> FromRequest<S> for SignedDelivery
where
    S: Send + Sync,
    WebhookSecret: FromRef<S>,
{
    type Rejection = Rejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let WebhookSecret(secret) = WebhookSecret::from_ref(state);
        let Some(secret) = secret else {
            // 401, not 503 (SPEC §8): nothing can be authenticated; `/readyz` says why.
            return Err(Rejection(
                StatusCode::UNAUTHORIZED,
                "this bot has no GITHUB_WEBHOOK_SECRET, so it cannot accept GitHub deliveries",
            ));
        };
        let (signature, event, delivery) = {
            let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
            (h("x-hub-signature-256"), h("x-github-event"), h("x-github-delivery"))
        };
        let body = shared::http::read_body(req.into_body(), MAX_WEBHOOK_BODY)
            .await
            .map_err(|e| match e {
                shared::http::BodyError::TooLarge => Rejection(StatusCode::PAYLOAD_TOO_LARGE, "payload too large"),
                shared::http::BodyError::Unreadable => Rejection(StatusCode::BAD_REQUEST, "unreadable body"),
            })?;
        verify(secret.expose_secret(), signature.as_deref(), &body)
            .map_err(|why| Rejection(StatusCode::UNAUTHORIZED, why))?;
        let (Some(event), Some(delivery)) = (event, delivery) else {
            return Err(Rejection(
                StatusCode::BAD_REQUEST,
                "missing X-GitHub-Event or X-GitHub-Delivery",
            ));
        };
        Ok(SignedDelivery { event, delivery, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verify_takes_only_the_right_signature_of_this_body() {
        let body = br#"{"zen":"Keep it simple."}"#;
        let good = sign("s3cret", body);
        assert_eq!(verify("s3cret", Some(&good), body), Ok(()));
        assert_eq!(
            verify(
                "s3cret",
                Some(&good.to_uppercase().replacen("SHA256", "sha256", 1)),
                body
            ),
            Ok(())
        );
        for bad in [
            None,
            Some(""),
            Some("sha256="),
            Some("sha256=zz"),
            Some(&good[..good.len() - 2]),
            Some(good.trim_start_matches("sha256=")),
        ] {
            assert!(verify("s3cret", bad, body).is_err(), "{bad:?}");
        }
        assert!(verify("other", Some(&good), body).is_err());
        assert!(verify("s3cret", Some(&good), b"{}").is_err());
    }

    #[test]
    fn decode_ignores_what_is_not_a_person_commenting_on_a_pull_request() {
        let comment = |login: &str, kind: &str, on_pull: bool, number: Value| {
            let mut p = json!({
                "action": "created",
                "issue": { "number": number },
                "comment": { "body": "@gandalf merge", "user": { "login": login, "type": kind } },
                "repository": { "full_name": "acme/api" },
            });
            if on_pull {
                p["issue"]["pull_request"] = json!({});
            }
            p
        };
        assert_eq!(
            decode("issue_comment", &comment("alice", "User", true, json!(7)), "gandalf"),
            Event::Comment {
                repo: "acme/api".parse().unwrap(),
                number: PrNumber::new(7).unwrap(),
                author: "alice".into(),
                body: "@gandalf merge".into()
            }
        );
        for p in [
            comment("alice", "User", false, json!(7)),
            comment("GANDALF", "User", true, json!(7)),
            comment("dependabot", "Bot", true, json!(7)),
            comment("alice", "User", true, json!(0)),
            comment("alice", "User", true, json!(-7)),
            comment("alice", "User", true, json!("7")),
            json!([]),
            json!(null),
        ] {
            assert_eq!(decode("issue_comment", &p, "gandalf"), Event::Ignored, "{p}");
        }
        assert_eq!(decode("ping", &json!({}), "gandalf"), Event::Ignored);
        // Without a repository, a number or a SHA there is nothing to act on.
        assert_eq!(
            decode("pull_request", &json!("not an object"), "gandalf"),
            Event::Ignored
        );
    }

    #[test]
    fn decode_reads_what_happened_to_a_pull_request() {
        let pr = |action: &str, extra: Value| {
            let mut p = json!({
                "action": action,
                "pull_request": { "number": 7, "merged": false, "head": { "sha": "b".repeat(40) } },
                "repository": { "full_name": "acme/api" },
            });
            if let (Some(o), Some(e)) = (p.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            decode("pull_request", &p, "gandalf")
        };
        let changed = |change| Event::PullRequest {
            repo: "acme/api".parse().unwrap(),
            number: PrNumber::new(7).unwrap(),
            change,
        };
        assert_eq!(
            pr("synchronize", json!({})),
            changed(PrChange::Pushed {
                head: "b".repeat(40).parse().unwrap()
            })
        );
        assert_eq!(pr("closed", json!({})), changed(PrChange::Closed { merged: false }));
        assert_eq!(
            pr("edited", json!({ "changes": { "base": {} } })),
            changed(PrChange::Retargeted)
        );
        assert_eq!(pr("edited", json!({ "changes": { "title": {} } })), Event::Ignored);
        assert_eq!(pr("opened", json!({})), Event::Ignored);
        assert_eq!(
            pr(
                "synchronize",
                json!({ "pull_request": { "number": 7, "head": { "sha": "nope" } } })
            ),
            Event::Ignored
        );
    }

    #[test]
    fn decode_reads_reviews_that_may_change_approvals() {
        let review = |action: &str, number: Value| {
            let p = json!({
                "action": action,
                "review": { "state": "approved", "user": { "login": "bob" } },
                "pull_request": { "number": number },
                "repository": { "full_name": "acme/api" },
            });
            decode("pull_request_review", &p, "gandalf")
        };
        let reviewed = Event::Reviewed {
            repo: "acme/api".parse().unwrap(),
            number: PrNumber::new(7).unwrap(),
        };
        for action in ["submitted", "dismissed", "edited"] {
            assert_eq!(review(action, json!(7)), reviewed, "{action}");
        }
        assert_eq!(
            reviewed.pull().map(|(r, n)| (r.to_string(), n.get())),
            Some(("acme/api".into(), 7))
        );
        assert_eq!(review("requested", json!(7)), Event::Ignored);
        assert_eq!(review("submitted", json!(0)), Event::Ignored);
        assert_eq!(review("submitted", json!("7")), Event::Ignored);
        assert_eq!(Event::Ignored.pull(), None);
    }

    #[test]
    fn decode_reads_what_ci_says_about_a_commit() {
        let sha = "c".repeat(40);
        let repo: RepoName = "acme/api".parse().unwrap();
        let run = json!({
            "action": "completed",
            "check_run": { "name": "build", "head_sha": sha, "status": "completed", "conclusion": "failure",
                           "html_url": "https://github.com/acme/api/runs/1" },
            "repository": { "full_name": "acme/api" },
        });
        assert_eq!(
            decode("check_run", &run, "gandalf"),
            Event::Ci {
                repo: repo.clone(),
                sha: sha.parse().unwrap(),
                report: Some(shared::github::CiReport {
                    name: "build".into(),
                    status: "completed".into(),
                    conclusion: Some("failure".into()),
                    url: Some("https://github.com/acme/api/runs/1".into()),
                }),
            }
        );
        let status = json!({
            "sha": sha, "context": "ci/unit", "state": "pending", "target_url": null,
            "repository": { "full_name": "acme/api" },
        });
        assert!(matches!(
            decode("status", &status, "gandalf"),
            Event::Ci { report: Some(ref r), .. } if r.name == "ci/unit" && r.status == "in_progress" && r.conclusion.is_none()
        ));
        let suite = json!({ "action": "completed", "check_suite": { "head_sha": sha }, "repository": { "full_name": "acme/api" } });
        assert_eq!(
            decode("check_suite", &suite, "gandalf"),
            Event::Ci {
                repo,
                sha: sha.parse().unwrap(),
                report: None
            }
        );
        // Our own check, a bad SHA, a run without a name: nothing to act on.
        let mut own = run.clone();
        own["check_run"]["name"] = json!("gandalf");
        let mut bad = run.clone();
        bad["check_run"]["head_sha"] = json!("nope");
        let mut nameless = run.clone();
        nameless["check_run"].as_object_mut().unwrap().remove("name");
        for p in [own, bad, nameless] {
            assert_eq!(decode("check_run", &p, "gandalf"), Event::Ignored, "{p}");
        }
        assert_eq!(
            decode(
                "status",
                &json!({ "sha": sha, "state": "weird", "context": "x", "repository": { "full_name": "acme/api" } }),
                "gandalf"
            ),
            Event::Ignored
        );
    }

    /// Postgres's jsonb refuses `\u0000`; the route replaces NULs in strings and keys first.
    #[test]
    fn replace_nul_leaves_nothing_jsonb_refuses() {
        let mut v: Value = serde_json::from_str(r#"{"a\u0000":["x\u0000y",{"b":"\u0000"}],"n":1}"#).unwrap();
        replace_nul(&mut v);
        assert_eq!(v, json!({ "a\u{FFFD}": ["x\u{FFFD}y", { "b": "\u{FFFD}" }], "n": 1 }));
    }
}
