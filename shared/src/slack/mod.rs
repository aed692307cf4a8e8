//! Everything Slack: request signatures, the reply shape, mrkdwn formatting, the Web API client
//! (slack-morphism), the outbox that delivers messages with retries, and Socket Mode (commands
//! over an outbound WebSocket, for bots Slack cannot reach).

pub mod late;
pub mod outbox;
pub mod signature;
pub mod socket;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

/// The metadata `event_type` of messages the outbox posts; the payload carries `outbox_id`.
pub const OUTBOX_EVENT: &str = "bg_outbox";

/// Who sees a reply to a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Only the person who typed the command (errors, usage, read-only answers).
    Ephemeral,
    /// Everyone in the channel (successful lock, unlock, preserve).
    InChannel,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    pub label: String,
    pub action_id: String,
    pub value: String,
    pub primary: bool,
}

/// A message the bots write: mrkdwn text, optionally with buttons. Rendered as Block Kit for Slack
/// and as plain text for `exec` and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub visibility: Visibility,
    pub text: String,
    pub buttons: Vec<Button>,
}

/// Slack's limit for the text of one section block.
const SECTION_LIMIT: usize = 3000;

impl Reply {
    pub fn ephemeral(text: impl Into<String>) -> Self {
        Reply {
            visibility: Visibility::Ephemeral,
            text: text.into(),
            buttons: vec![],
        }
    }

    pub fn in_channel(text: impl Into<String>) -> Self {
        Reply {
            visibility: Visibility::InChannel,
            text: text.into(),
            buttons: vec![],
        }
    }

    pub fn with_button(mut self, label: &str, action_id: &str, value: &str, primary: bool) -> Self {
        self.buttons.push(Button {
            label: label.to_string(),
            action_id: action_id.to_string(),
            value: value.to_string(),
            primary,
        });
        self
    }

    /// Block Kit: the text in sections of at most 3,000 characters (split at line ends), then the
    /// buttons.
    pub fn blocks(&self) -> Vec<SlackBlock> {
        let mut blocks: Vec<SlackBlock> = split_sections(&self.text)
            .into_iter()
            .map(|chunk| SlackSectionBlock::new().with_text(md!(chunk)).into())
            .collect();
        if !self.buttons.is_empty() {
            let elements = self
                .buttons
                .iter()
                .map(|b| {
                    let mut button = SlackBlockButtonElement::new(pt!(b.label.clone()))
                        .with_action_id(b.action_id.clone().into())
                        .with_value(b.value.clone());
                    if b.primary {
                        button = button.with_style(SlackBlockButtonStyle::Primary);
                    }
                    SlackActionBlockElement::Button(button)
                })
                .collect();
            blocks.push(SlackActionsBlock::new(elements).into());
        }
        blocks
    }

    /// The JSON body answering a slash command.
    pub fn command_response(&self) -> serde_json::Value {
        json!({
            "response_type": match self.visibility {
                Visibility::Ephemeral => "ephemeral",
                Visibility::InChannel => "in_channel",
            },
            "text": fallback_text(&self.text),
            "blocks": self.blocks(),
        })
    }

    /// What a terminal shows: Slack markup resolved to its plain fallbacks, buttons in brackets.
    pub fn plain(&self) -> String {
        let mut out = mrkdwn::to_plain(&self.text);
        if !self.buttons.is_empty() {
            out.push('\n');
            let labels: Vec<String> = self.buttons.iter().map(|b| format!("[{}]", b.label)).collect();
            out.push_str(&labels.join(" "));
        }
        out
    }
}

fn split_sections(text: &str) -> Vec<String> {
    let mut chunks = vec![];
    let mut current = String::new();
    for line in text.lines() {
        let line: String = line.chars().take(SECTION_LIMIT - 1).collect();
        if !current.is_empty() && current.len() + line.len() + 1 > SECTION_LIMIT {
            chunks.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(if current.is_empty() { " ".into() } else { current });
    }
    chunks
}

/// Notification text (shown in push notifications and by clients without Block Kit): the first line.
fn fallback_text(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    first.chars().take(300).collect()
}

/// mrkdwn building blocks. User-supplied text always goes through [`mrkdwn::escape`] so nobody can
/// smuggle `<!channel>` pings or fake links into a bot message.
pub mod mrkdwn {
    use super::*;

    /// Escapes the three characters Slack treats as control characters.
    pub fn escape(s: &str) -> String {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
    }

    /// A time every reader sees in their own timezone, with a UTC fallback.
    pub fn date(t: DateTime<Utc>) -> String {
        format!(
            "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
            t.timestamp(),
            t.format("%Y-%m-%d %H:%M UTC")
        )
    }

    /// A mention of a Slack user, or the escaped name of a non-Slack actor such as Gandalf.
    pub fn user(id: &str) -> String {
        if id.parse::<crate::ids::SlackUserId>().is_ok() {
            format!("<@{id}>")
        } else {
            escape(id)
        }
    }

    /// Inline code; backticks inside are replaced so the span cannot be broken out of, and control
    /// characters (a NUL, a newline) by U+FFFD so that what someone typed is echoed visibly and
    /// nothing invisible reaches Slack.
    pub fn code(s: &str) -> String {
        let clean: String = s
            .chars()
            .map(|c| match c {
                '`' => '\'',
                c if c.is_control() => '\u{FFFD}',
                c => c,
            })
            .collect();
        format!("`{}`", escape(&clean))
    }

    /// Resolves Slack markup to plain text: `<!date^…|fallback>` → fallback, `<@U1>` → `@U1`,
    /// entities unescaped.
    pub fn to_plain(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find('<') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            match after.find('>') {
                Some(end) => {
                    let inner = &after[..end];
                    if let Some((_, label)) = inner.split_once('|') {
                        out.push_str(label);
                    } else if let Some(id) = inner.strip_prefix('@') {
                        out.push('@');
                        out.push_str(id);
                    } else {
                        out.push_str(inner);
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    }
}

/// Why a Slack call failed, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again (5xx, 429, network); `after` is Slack's `Retry-After` when it gave one.
    #[error("{message}")]
    Transient {
        message: String,
        after: Option<std::time::Duration>,
    },
    /// Will fail the same way again (unknown channel, bad token).
    #[error("{0}")]
    Permanent(String),
}

fn classify(e: SlackClientError) -> SendError {
    match e {
        SlackClientError::RateLimitError(r) => SendError::Transient {
            message: "rate limited by Slack".into(),
            after: r.retry_after,
        },
        SlackClientError::HttpError(h) if h.status_code.is_server_error() || h.status_code.as_u16() == 429 => {
            SendError::Transient {
                message: format!("Slack answered HTTP {}", h.status_code),
                after: None,
            }
        }
        SlackClientError::HttpError(h) => SendError::Permanent(format!("Slack answered HTTP {}", h.status_code)),
        SlackClientError::ApiError(a) => match a.code.as_str() {
            "ratelimited" | "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                SendError::Transient {
                    message: format!("Slack API error {}", a.code),
                    after: None,
                }
            }
            code => SendError::Permanent(format!("Slack API error {code}")),
        },
        other => SendError::Transient {
            message: format!("Slack unreachable: {}", first_line(&other.to_string())),
            after: None,
        },
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

/// The Slack Web API as the bots use it. Without a bot token, messages are logged instead of sent,
/// so a bot runs (and can be tried with `exec`) before it is installed in a workspace.
#[derive(Clone)]
pub struct SlackApi {
    client: Arc<SlackClient<SlackClientHyperHttpsConnector>>,
    token: Option<SlackApiToken>,
}

impl SlackApi {
    pub fn new(token: Option<&SecretString>, api_url: &str) -> Self {
        // http too, so SLACK_API_URL can point at a proxy or a test fake on loopback.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let connector = SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url);
        SlackApi {
            client: Arc::new(SlackClient::new(connector)),
            token: token.map(|t| SlackApiToken::new(SlackApiTokenValue::new(t.expose_secret().to_string()))),
        }
    }

    pub fn is_configured(&self) -> bool {
        self.token.is_some()
    }

    /// Posts a message; returns its `ts` (None when only logged).
    pub async fn post(&self, channel: &str, reply: &Reply) -> Result<Option<String>, SendError> {
        self.post_in_thread(channel, None, reply).await
    }

    /// Posts a message, as a reply in the thread of the message `thread_ts` when given.
    pub async fn post_in_thread(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        reply: &Reply,
    ) -> Result<Option<String>, SendError> {
        self.post_message(channel, thread_ts, reply, None).await
    }

    /// Posts an outbox message, tagged with its outbox id in the message's metadata so that
    /// [`SlackApi::find_tagged`] can tell later whether Slack has it (SPEC §8: delivered once).
    pub async fn post_tagged(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        reply: &Reply,
        outbox_id: i64,
    ) -> Result<Option<String>, SendError> {
        self.post_message(channel, thread_ts, reply, Some(outbox_id)).await
    }

    async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        reply: &Reply,
        outbox_id: Option<i64>,
    ) -> Result<Option<String>, SendError> {
        let Some(token) = &self.token else {
            tracing::info!(channel, text = %reply.plain(), "Slack is not configured (no SLACK_BOT_TOKEN); message logged instead");
            return Ok(None);
        };
        let mut content = SlackMessageContent::new()
            .with_text(fallback_text(&reply.text))
            .with_blocks(reply.blocks());
        if let Some(id) = outbox_id {
            content = content.with_metadata(SlackMessageMetadata {
                event_type: OUTBOX_EVENT.into(),
                event_payload: Some([("outbox_id".to_string(), id.to_string())].into()),
            });
        }
        let mut request = SlackApiChatPostMessageRequest::new(SlackChannelId::new(channel.to_string()), content);
        if let Some(ts) = thread_ts {
            request = request.with_thread_ts(SlackTs::new(ts.to_string()));
        }
        let response = self
            .client
            .open_session(token)
            .chat_post_message(&request)
            .await
            .map_err(classify)?;
        Ok(Some(response.ts.0))
    }

    /// The `ts` of the message tagged with `outbox_id` that was posted to `channel` (in the thread
    /// of `thread_ts`, when given) since `since`, if Slack has one. Reads `conversations.history`
    /// (or `conversations.replies`) with metadata; a DM to a user id is looked up in the DM's
    /// own channel (`conversations.open`).
    pub async fn find_tagged(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        outbox_id: i64,
        since: DateTime<Utc>,
    ) -> Result<Option<String>, SendError> {
        let Some(token) = &self.token else {
            return Ok(None);
        };
        let session = self.client.open_session(token);
        let channel = if channel.starts_with(['U', 'W']) {
            let open = SlackApiConversationsOpenRequest::new()
                .with_users(vec![SlackUserId::new(channel.to_string())])
                .with_return_im(false);
            session.conversations_open(&open).await.map_err(classify)?.channel.id
        } else {
            SlackChannelId::new(channel.to_string())
        };
        // Slack's clock and ours may differ a little: look a minute further back.
        let oldest = (since - chrono::Duration::minutes(1)).timestamp().max(0);
        let oldest = format!("{oldest}.000000");
        let wanted = outbox_id.to_string();
        let mut cursor: Option<String> = None;
        for _page in 0..10 {
            let mut params: Vec<(&str, Option<String>)> = vec![
                ("channel", Some(channel.0.clone())),
                ("oldest", Some(oldest.clone())),
                ("limit", Some("200".into())),
                ("include_all_metadata", Some("true".into())),
                ("cursor", cursor.clone()),
            ];
            let method = match thread_ts {
                Some(ts) => {
                    params.push(("ts", Some(ts.to_string())));
                    "conversations.replies"
                }
                None => "conversations.history",
            };
            let params: Vec<(&str, Option<&String>)> = params.iter().map(|(k, v)| (*k, v.as_ref())).collect();
            let page: SlackApiConversationsHistoryResponse = session
                .http_session_api
                .http_get(method, &params, None)
                .await
                .map_err(classify)?;
            let found = page.messages.iter().find(|m| {
                m.content.metadata.as_ref().is_some_and(|md| {
                    md.event_type == OUTBOX_EVENT
                        && md.event_payload.as_ref().and_then(|p| p.get("outbox_id")) == Some(&wanted)
                })
            });
            if let Some(m) = found {
                return Ok(Some(m.origin.ts.0.clone()));
            }
            cursor = page
                .response_metadata
                .and_then(|r| r.next_cursor)
                .map(|c| c.0)
                .filter(|c| !c.is_empty());
            if cursor.is_none() {
                break;
            }
        }
        Ok(None)
    }

    /// Replaces the text of the message `ts` in `channel` (`chat.update`).
    pub async fn update(&self, channel: &str, ts: &str, reply: &Reply) -> Result<(), SendError> {
        let Some(token) = &self.token else {
            tracing::info!(channel, ts, text = %reply.plain(), "Slack is not configured (no SLACK_BOT_TOKEN); edit logged instead");
            return Ok(());
        };
        let request = SlackApiChatUpdateRequest::new(
            SlackChannelId::new(channel.to_string()),
            SlackMessageContent::new()
                .with_text(fallback_text(&reply.text))
                .with_blocks(reply.blocks()),
            SlackTs::new(ts.to_string()),
        );
        self.client
            .open_session(token)
            .chat_update(&request)
            .await
            .map(|_| ())
            .map_err(classify)
    }

    /// `apps.connections.open` with the app-level token: the URL of a new Socket Mode connection.
    /// Works without a bot token (Socket Mode only needs the app token to listen).
    pub async fn open_socket(&self, app_token: &SecretString) -> Result<url::Url, SendError> {
        let token = SlackApiToken::new(SlackApiTokenValue::new(app_token.expose_secret().to_string()));
        let response = self
            .client
            .open_session(&token)
            .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
            .await
            .map_err(classify)?;
        Ok(response.url.0)
    }

    /// Answers an interaction or a slow command through its `response_url`, visible only to the
    /// person who acted (Slack's default for `response_url`). Replies meant for the whole channel
    /// go through the outbox instead.
    pub async fn respond(&self, response_url: &str, reply: &Reply) -> Result<(), SendError> {
        let url: url::Url = response_url
            .parse()
            .map_err(|_| SendError::Permanent("bad response_url".into()))?;
        let request = SlackApiPostWebhookMessageRequest::new(
            SlackMessageContent::new()
                .with_text(fallback_text(&reply.text))
                .with_blocks(reply.blocks()),
        )
        .with_replace_original(false);
        self.client
            .respond_to_event(&SlackResponseUrl::new(url), &request)
            .await
            .map(|_| ())
            .map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by tests/tests/e2e/hostile_input.rs: `/bobby lock env-1<NUL>` echoed the NUL to Slack.
    #[test]
    fn code_spans_show_control_characters_visibly() {
        assert_eq!(mrkdwn::code("env-1\u{0}"), "`env-1\u{FFFD}`");
        assert_eq!(mrkdwn::code("a`b\nc<d>"), "`a'b\u{FFFD}c&lt;d&gt;`");
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(
            mrkdwn::escape("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
        assert_eq!(mrkdwn::code("a`b<c"), "`a'b&lt;c`");
    }

    #[test]
    fn plain_rendering_resolves_markup() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let text = format!(
            "{} holds env-1 until {} &lt;ok&gt;",
            mrkdwn::user("U0ALICE"),
            mrkdwn::date(t)
        );
        assert_eq!(
            mrkdwn::to_plain(&text),
            "@U0ALICE holds env-1 until 2026-11-22 10:00 UTC <ok>"
        );
        assert!(mrkdwn::date(t).starts_with("<!date^1795341600^"));
    }

    #[test]
    fn long_text_is_split_into_sections_within_slacks_limit() {
        let text = (0..400)
            .map(|i| format!("line {i} with some words"))
            .collect::<Vec<_>>()
            .join("\n");
        let reply = Reply::ephemeral(text).with_button("Join waitlist", "wait", "env-1", true);
        let v = reply.command_response();
        let blocks = v["blocks"].as_array().unwrap();
        assert!(blocks.len() > 2);
        for b in &blocks[..blocks.len() - 1] {
            assert_eq!(b["type"], "section");
            assert!(b["text"]["text"].as_str().unwrap().len() <= SECTION_LIMIT);
        }
        let actions = blocks.last().unwrap();
        assert_eq!(actions["type"], "actions");
        assert_eq!(actions["elements"][0]["action_id"], "wait");
        assert_eq!(actions["elements"][0]["value"], "env-1");
        assert_eq!(v["response_type"], "ephemeral");
    }
}
