//! `patrol doctor`'s question about a target — can patrol reach it? — answered without sending a
//! message: Discord, a `GET` of the webhook URL (Discord describes the webhook, or says it does
//! not exist); Telegram, the Bot API's `getMe` with the URL's token; anything else (and the ping),
//! a TCP (+ TLS for https) connection to the host, as a `HEAD /` of the host's root, never of the
//! URL's secret path.

use crate::config::TargetKind;
use crate::secret::HookUrl;

/// Reachable, and what says so; or why not (every text without the URL's secret).
pub async fn reachable(client: &reqwest::Client, kind: TargetKind, url: &HookUrl) -> Result<String, String> {
    let scrub = |t: String| url.scrub(&t);
    let err = |e: reqwest::Error| scrub(e.without_url().to_string());
    match kind {
        TargetKind::Discord => {
            let r = client.get(url.expose()).send().await.map_err(err)?;
            match r.status().as_u16() {
                200 => Ok("the webhook exists (GET 200)".into()),
                401 | 404 => Err(format!(
                    "Discord says this webhook does not exist (HTTP {}): it was deleted, or the URL is wrong",
                    r.status().as_u16()
                )),
                s => Err(format!("GET of the webhook answered HTTP {s}")),
            }
        }
        TargetKind::Telegram => {
            let base = url.expose().split('?').next().unwrap_or_default();
            let me = match base.rsplit_once('/') {
                Some((bot, _method)) if bot.contains("/bot") => format!("{bot}/getMe"),
                _ => return Err("the URL is not https://api.telegram.org/bot<token>/sendMessage?chat_id=<id>".into()),
            };
            let r = client.get(&me).send().await.map_err(err)?;
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            match (status, body.get("ok").and_then(|o| o.as_bool())) {
                (200, Some(true)) => {
                    let name = body.pointer("/result/username").and_then(|u| u.as_str()).unwrap_or("?");
                    Ok(format!("the bot token works (getMe: @{})", super::event::short(name)))
                }
                (401 | 404, _) => Err(format!("Telegram refuses the bot token (getMe: HTTP {status})")),
                _ => Err(format!("getMe answered HTTP {status}")),
            }
        }
        _ => {
            let parsed = reqwest::Url::parse(url.expose()).map_err(|_| "not a URL".to_string())?;
            let host = parsed.host_str().ok_or("no host in the URL")?;
            let root = match parsed.port() {
                Some(p) => format!("{}://{host}:{p}/", parsed.scheme()),
                None => format!("{}://{host}/", parsed.scheme()),
            };
            let r = client.head(&root).send().await.map_err(err)?;
            let how = if parsed.scheme() == "https" { "TCP and TLS" } else { "TCP" };
            Ok(format!(
                "{how} connect to {}{} (its root answered HTTP {})",
                host,
                parsed.port().map(|p| format!(":{p}")).unwrap_or_default(),
                r.status().as_u16()
            ))
        }
    }
}
