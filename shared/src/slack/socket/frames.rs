//! What travels over a Socket Mode WebSocket, parsed and written without any I/O: Slack's frames
//! (`hello`, `disconnect`, envelopes) and our acknowledgements.
//!
//! Slack's format (<https://api.slack.com/apis/socket-mode>): every frame is a JSON text message.
//! An envelope carries an `envelope_id`, a `type` (`slash_commands`, `interactive`, `events_api`)
//! and a `payload` that is what Slack would have POSTed over HTTP (as a JSON object instead of a
//! form). It is acknowledged with `{"envelope_id": …}`, plus a `payload` when the envelope says
//! `accepts_response_payload` (a slash command's reply goes there, as it would in the HTTP
//! response).

use serde::Deserialize;
use serde_json::{Value, json};

/// One frame from Slack.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// The connection is ready. `approximate_connection_time` (seconds) is how long Slack means to
    /// keep it before asking for a refresh.
    Hello {
        approximate_connection_time: Option<u64>,
    },
    /// Slack will close this connection (`refresh_requested`, `warning`, `link_disabled`…).
    Disconnect {
        reason: String,
    },
    Envelope(Envelope),
    /// A frame of a type we do not know; logged and ignored.
    Other {
        kind: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: String,
    pub kind: EnvelopeKind,
    pub payload: Value,
    pub accepts_response_payload: bool,
    /// Slack's retry counter: 0 the first time it sends this envelope.
    pub retry_attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeKind {
    SlashCommand,
    Interactive,
    EventsApi,
    Other(String),
}

impl EnvelopeKind {
    fn parse(s: &str) -> Self {
        match s {
            "slash_commands" => EnvelopeKind::SlashCommand,
            "interactive" => EnvelopeKind::Interactive,
            "events_api" => EnvelopeKind::EventsApi,
            other => EnvelopeKind::Other(other.to_string()),
        }
    }

    /// The label in metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            EnvelopeKind::SlashCommand => "slash_commands",
            EnvelopeKind::Interactive => "interactive",
            EnvelopeKind::EventsApi => "events_api",
            EnvelopeKind::Other(_) => "other",
        }
    }
}

#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    envelope_id: Option<String>,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    accepts_response_payload: bool,
    #[serde(default)]
    retry_attempt: Option<u32>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    debug_info: Option<DebugInfo>,
}

#[derive(Deserialize)]
struct DebugInfo {
    #[serde(default)]
    approximate_connection_time: Option<u64>,
}

/// Parses one text frame. An error is a frame that is not Slack's (not JSON, no `type`, an
/// envelope without an id): the caller logs it and carries on.
pub fn parse(text: &str) -> Result<Frame, String> {
    let raw: RawFrame = serde_json::from_str(text).map_err(|e| format!("not a Socket Mode frame: {e}"))?;
    Ok(match raw.kind.as_str() {
        "hello" => Frame::Hello {
            approximate_connection_time: raw.debug_info.and_then(|d| d.approximate_connection_time),
        },
        "disconnect" => Frame::Disconnect {
            reason: raw.reason.unwrap_or_else(|| "unspecified".into()),
        },
        kind => match raw.envelope_id {
            Some(id) if !id.is_empty() => Frame::Envelope(Envelope {
                id,
                kind: EnvelopeKind::parse(kind),
                payload: raw.payload.unwrap_or(Value::Null),
                accepts_response_payload: raw.accepts_response_payload,
                retry_attempt: raw.retry_attempt.unwrap_or(0),
            }),
            Some(_) => return Err(format!("a `{kind}` envelope with an empty envelope_id")),
            None => Frame::Other { kind: kind.to_string() },
        },
    })
}

/// The acknowledgement of `envelope_id`, carrying `payload` when there is one.
pub fn ack(envelope_id: &str, payload: Option<&Value>) -> String {
    match payload {
        Some(p) => json!({ "envelope_id": envelope_id, "payload": p }),
        None => json!({ "envelope_id": envelope_id }),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_carries_the_connection_time() {
        let f = parse(r#"{"type":"hello","num_connections":1,"debug_info":{"host":"applink-1","approximate_connection_time":18060},"connection_info":{"app_id":"A1"}}"#).unwrap();
        assert_eq!(
            f,
            Frame::Hello {
                approximate_connection_time: Some(18060)
            }
        );
    }

    #[test]
    fn disconnect_carries_its_reason() {
        let f = parse(r#"{"type":"disconnect","reason":"refresh_requested","debug_info":{"host":"h"}}"#).unwrap();
        assert_eq!(
            f,
            Frame::Disconnect {
                reason: "refresh_requested".into()
            }
        );
        assert_eq!(
            parse(r#"{"type":"disconnect"}"#).unwrap(),
            Frame::Disconnect {
                reason: "unspecified".into()
            }
        );
    }

    #[test]
    fn a_slash_command_envelope() {
        let f = parse(
            r#"{"envelope_id":"e-1","type":"slash_commands","accepts_response_payload":true,
                "payload":{"command":"/bobby","text":"lock env-1","user_id":"U1"}}"#,
        )
        .unwrap();
        let Frame::Envelope(e) = f else { panic!("{f:?}") };
        assert_eq!(e.id, "e-1");
        assert_eq!(e.kind, EnvelopeKind::SlashCommand);
        assert!(e.accepts_response_payload);
        assert_eq!(e.retry_attempt, 0);
        assert_eq!(e.payload["text"], "lock env-1");
    }

    #[test]
    fn retries_and_unknown_kinds_are_kept() {
        let Frame::Envelope(e) = parse(
            r#"{"envelope_id":"e-2","type":"interactive","payload":{},"retry_attempt":2,"retry_reason":"timeout"}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (e.kind, e.retry_attempt, e.accepts_response_payload),
            (EnvelopeKind::Interactive, 2, false)
        );
        let Frame::Envelope(e) = parse(r#"{"envelope_id":"e-3","type":"brand_new"}"#).unwrap() else {
            panic!()
        };
        assert_eq!(e.kind, EnvelopeKind::Other("brand_new".into()));
        assert_eq!(
            parse(r#"{"type":"brand_new"}"#).unwrap(),
            Frame::Other {
                kind: "brand_new".into()
            }
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse("").is_err());
        assert!(parse("[1,2]").is_err());
        assert!(parse(r#"{"no_type":1}"#).is_err());
        assert!(parse(r#"{"type":"slash_commands","envelope_id":""}"#).is_err());
    }

    #[test]
    fn acknowledgements() {
        let v: Value = serde_json::from_str(&ack("e-1", None)).unwrap();
        assert_eq!(v, json!({ "envelope_id": "e-1" }));
        let v: Value = serde_json::from_str(&ack("e-1", Some(&json!({ "text": "hi" })))).unwrap();
        assert_eq!(v, json!({ "envelope_id": "e-1", "payload": { "text": "hi" } }));
    }
}
