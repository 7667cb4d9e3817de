//! Parity with the Python `bt.Axon`: the same raw requests (odd nonces, every HTTP method, hotkeys
//! that are not SS58, odd timeouts and versions) get the same status, message and
//! `bt_header_axon_uuid`.

use super::*;

/// What a parity comparison looks at in an answer.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: u16,
    /// `message` of an error body (an `Internal Server Error #<id>` without the id; a nonce age
    /// replaced by `<age>`), or `detail` (Starlette's 405), or `None` for a synapse (200).
    message: Option<String>,
    has_axon_uuid: bool,
    /// `allow`, sorted.
    allow: Option<String>,
    content_type: Option<String>,
    /// For a HEAD answer, its `content-length` (there is no body to compare).
    head_length: Option<String>,
    /// The nonce age in the message, compared with slack (each axon has its own clock).
    #[allow(dead_code)]
    age: Option<f64>,
}

impl Seen {
    fn same_as(&self, other: &Seen) -> bool {
        let ages = match (self.age, other.age) {
            (Some(a), Some(b)) => (a - b).abs() <= 60.0 + a.abs().max(b.abs()) * 1e-12,
            (a, b) => a == b,
        };
        Seen { age: None, ..self.clone() } == Seen { age: None, ..other.clone() } && ages
    }
}

fn normalise(message: &str) -> (String, Option<f64>) {
    if let Some(i) = message.find("Internal Server Error #") {
        return (message[..i + "Internal Server Error #".len()].to_string(), None);
    }
    if let (Some(a), Some(b)) = (message.find("request was "), message.rfind(" seconds old")) {
        let start = a + "request was ".len();
        let age = message[start..b].parse::<f64>().ok();
        return (format!("{}<age>{}", &message[..start], &message[b..]), age);
    }
    (message.to_string(), None)
}

/// Send `request` on a fresh connection (`Connection: close`) and read the answer.
fn ask(addr: SocketAddr, request: &[u8], head: bool) -> Seen {
    let mut c = connect(addr);
    c.write_all(request).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut bytes = Vec::new();
    let _ = c.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head_text, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head_text.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let raw_message = json.get("message").or_else(|| json.get("detail")).and_then(Value::as_str);
    let (message, age) = match raw_message {
        Some(m) => {
            let (m, age) = normalise(m);
            (Some(m), age)
        }
        None => (None, None),
    };
    Seen {
        status,
        message,
        has_axon_uuid: headers.contains_key("bt_header_axon_uuid"),
        // a Python set: its order changes with the process's hash seed
        allow: headers.get("allow").map(|a| {
            let mut methods: Vec<&str> = a.split(',').map(str::trim).collect();
            methods.sort_unstable();
            methods.join(", ")
        }),
        content_type: headers.get("content-type").cloned(),
        head_length: if head { headers.get("content-length").cloned() } else { None },
        age,
    }
}

/// A request as a dendrite would send it, with every part replaceable.
struct Req<'a> {
    method: &'a str,
    path: &'a str,
    hotkey: Option<&'a str>,
    /// The nonce header as sent, and the number it stands for (what is signed).
    nonce: Option<(String, String)>,
    timeout: Option<&'a str>,
    version: &'a str,
    sign: bool,
}

impl Req<'_> {
    fn check() -> Req<'static> {
        Req {
            method: "POST",
            path: "/PatCheckSynapse",
            hotkey: Some(DENDRITE_HOTKEY),
            nonce: Some(now_nonce()),
            timeout: Some("12.0"),
            version: "10003001",
            sign: true,
        }
    }

    fn bytes(&self, key: &Hotkey, uuid: &str, host: &str) -> Vec<u8> {
        let name = self.path.trim_start_matches('/');
        let body = json!({"name": name, "timeout": 12.0, "dendrite": {"hotkey": DENDRITE_HOTKEY}}).to_string();
        let mut h = format!(
            "{} {} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.method,
            self.path,
            body.len()
        );
        h += &format!("name: {name}\r\n");
        if let Some(t) = self.timeout {
            h += &format!("timeout: {t}\r\n");
        }
        h += &format!(
            "bt_header_axon_ip: 127.0.0.1\r\nbt_header_axon_port: 8091\r\nbt_header_axon_hotkey: {VALIDATOR_HOTKEY}\r\n"
        );
        h += &format!("bt_header_dendrite_ip: 127.0.0.1\r\nbt_header_dendrite_version: {}\r\n", self.version);
        if let Some((sent, _)) = &self.nonce {
            h += &format!("bt_header_dendrite_nonce: {sent}\r\n");
        }
        h += &format!("bt_header_dendrite_uuid: {uuid}\r\n");
        if let Some(hk) = self.hotkey {
            h += &format!("bt_header_dendrite_hotkey: {hk}\r\n");
        }
        if self.sign {
            let n = self.nonce.as_ref().map_or("None", |(_, v)| v.as_str());
            let hk = self.hotkey.unwrap_or("None");
            let msg = format!("{n}.{hk}.{VALIDATOR_HOTKEY}.{uuid}.{EMPTY_BODY_HASH}");
            h += &format!("bt_header_dendrite_signature: {}\r\n", key.sign_hex(msg.as_bytes()));
        }
        h += &format!("header_size: 0\r\ntotal_size: 0\r\ncomputed_body_hash: {EMPTY_BODY_HASH}\r\n\r\n");
        h += &body;
        h.into_bytes()
    }
}

fn now_nonce() -> (String, String) {
    let n = patrol::wire::now_ns().to_string();
    (n.clone(), n)
}

fn nonce(sent: &str, value: &str) -> Option<(String, String)> {
    Some((sent.to_string(), value.to_string()))
}

/// The cases, each a fresh dendrite uuid: (label, request). Unsigned ones are compared with our
/// hardenings off only.
fn parity_cases() -> Vec<(String, Req<'static>)> {
    let now = patrol::wire::now_ns();
    let mut cases: Vec<(String, Req<'static>)> = Vec::new();
    let big = |s: String| Some((s.clone(), s));
    for sign in [true, false] {
        let tag = if sign { "signed" } else { "unsigned" };
        for (label, n) in [
            ("nonce u64::MAX", nonce("18446744073709551615", "18446744073709551615")),
            ("nonce -5", nonce("-5", "-5")),
            ("nonce 2**70", nonce("1180591620717411303424", "1180591620717411303424")),
            ("nonce 10**40", big(format!("1{}", "0".repeat(40)))),
            ("nonce -10**30", big(format!("-1{}", "0".repeat(30)))),
            ("nonce -10**400 (age overflows a float)", big(format!("-1{}", "0".repeat(400)))),
            ("nonce of 4301 digits", big("9".repeat(4301))),
            ("nonce ' +00<now> '", nonce(&format!(" +00{now} "), &now.to_string())),
            ("nonce 1_<now> (underscore)", nonce(&format!("1_{now}"), &format!("1{now}"))),
            ("nonce 1__5", nonce("1__5", "15")),
            ("nonce <now>.0", nonce(&format!("{now}.0"), &now.to_string())),
            ("nonce 0x10", nonce("0x10", "16")),
            ("nonce empty", nonce("", "")),
            ("nonce -0", nonce("-0", "0")),
            ("no nonce", None),
        ] {
            cases.push((format!("{tag} {label}"), Req { nonce: n, sign, ..Req::check() }));
        }
        for method in ["GET", "PUT", "DELETE", "BREW", "HEAD", "OPTIONS", "PATCH"] {
            cases.push((format!("{tag} {method} /PatCheckSynapse"), Req { method, sign, ..Req::check() }));
            cases.push((format!("{tag} {method} /Synapse"), Req { method, path: "/Synapse", sign, ..Req::check() }));
            cases.push((format!("{tag} {method} /Nope"), Req { method, path: "/Nope", sign, ..Req::check() }));
        }
        for (label, timeout, age_s) in [
            ("timeout -100, nonce now", "-100", 0i64),
            ("timeout -100, nonce 97 s ahead", "-100", -97),
            ("timeout nan, nonce 1000 s old", "nan", 1000),
            ("timeout inf, nonce 10**6 s old", "inf", 1_000_000),
            ("timeout 1_0, nonce 12 s old", "1_0", 12),
            ("timeout ' 12 ', nonce 10 s old", " 12 ", 10),
            ("timeout 0, nonce 5 s old", "0", 5),
            ("timeout 0x1", "0x1", 0),
            ("timeout -1e308, nonce now", "-1e308", 0),
        ] {
            let n = (i128::from(now) - i128::from(age_s) * 1_000_000_000).to_string();
            cases.push((
                format!("{tag} {label}"),
                Req { timeout: Some(timeout), nonce: Some((n.clone(), n)), sign, ..Req::check() },
            ));
        }
        let ten_s_old = (now - 10_000_000_000).to_string();
        cases.push((
            format!("{tag} no timeout header, nonce 10 s old"),
            Req { timeout: None, nonce: Some((ten_s_old.clone(), ten_s_old)), sign, ..Req::check() },
        ));
        for version in ["-5", "7001999", "+10003001", "1_0003001", "abc"] {
            cases.push((
                format!("{tag} version {version:?}, nonce 1"),
                Req { version, nonce: nonce("1", "1"), sign, ..Req::check() },
            ));
        }
    }
    // hotkeys that are not SS58 (unsigned: there is no key to sign with)
    for hk in [
        "nope-hotkey",
        "notregistered",
        "511111111111111111111111111111111111111111111111",
        "",
        "Doawa5eXTJfCetbdJcXy5s1S1FamyLoNt7SiZfKLHdKBQtJ8",
        "5d2rNjFTwSwbr5Rb2xQ27yCb1TrfUKAhQz1x7caeKWZCLK2v",
    ] {
        for path in ["/Synapse", "/PatCheckSynapse"] {
            cases.push((
                format!("unsigned hotkey {hk:?} on {path}"),
                Req { hotkey: Some(hk), path, sign: false, ..Req::check() },
            ));
            cases.push((
                format!("unsigned hotkey {hk:?} on {path}, no nonce"),
                Req { hotkey: Some(hk), path, nonce: None, sign: false, ..Req::check() },
            ));
        }
    }
    // the dendrite's key in Polkadot's address format: the same key to the Python axon
    cases.push((
        "unsigned Polkadot-format hotkey on /Synapse".into(),
        Req {
            hotkey: Some("12bzRJfh7arnnfPPUZHeJUaE62QLEwhK48QnH9LXeK2m1iZU"),
            path: "/Synapse",
            sign: false,
            ..Req::check()
        },
    ));
    cases
}

/// The same raw requests to the real `bt.Axon` and to ours (hardenings off, and on for the
/// signed ones): the same status, message, `bt_header_axon_uuid` presence, `allow` and content type.
#[test]
fn odd_nonces_methods_hotkeys_and_timeouts_get_the_python_axons_answers() {
    let py = PyAxon::start();
    let rt = runtime();
    let miners = vec![RegisteredMiner { uid: 0, hotkey: DENDRITE_HOTKEY.into(), stake: 100.0 }];
    let gh = github_options(&nowhere(), patrol::github::Mode::Fixed, Duration::from_secs(2));
    let upstream = AxonConfig { require_signature: false, require_body_hotkey_match: false, ..AxonConfig::default() };
    let ours = rt.block_on(start_in_process(miners.clone(), gh.clone(), upstream));
    let hardened = rt.block_on(start_in_process(miners, gh, AxonConfig::default()));
    let key = dendrite_key();
    let mut differences = Vec::new();
    let mut seen_statuses = BTreeMap::new();
    let n = parity_cases().len();
    for i in 0..n {
        // each case built just before it is sent: its nonce ages ("10 s old") count from now, not
        // from the first case (on a loaded machine the whole table takes seconds)
        let (label, req) = parity_cases().swap_remove(i);
        let uuid = format!("parity-{i}-{}", std::process::id());
        let bytes = req.bytes(&key, &uuid, "127.0.0.1");
        let head = req.method == "HEAD";
        let python = ask(py.addr(), &bytes, head);
        let mine = ask(ours.addr, &bytes, head);
        *seen_statuses.entry(python.status).or_insert(0) += 1;
        if !python.same_as(&mine) {
            differences.push(format!("{label}:\n  python: {python:?}\n  patrol: {mine:?}"));
        }
        if req.sign {
            let h = ask(hardened.addr, &req.bytes(&key, &format!("{uuid}-h"), "127.0.0.1"), head);
            if !python.same_as(&h) {
                differences.push(format!("{label} (hardened):\n  python: {python:?}\n  patrol: {h:?}"));
            }
        } else if python.status == 200 || python.status == 405 {
            // hardening 1: unsigned requests that Python serves are refused
            let h = ask(hardened.addr, &req.bytes(&key, &format!("{uuid}-h"), "127.0.0.1"), head);
            let unsigned =
                "Not Verified with error: Missing signature: unsigned requests are refused by this validator";
            // a HEAD answer has no body to read the message from
            let refused = h.status == 401 && (head || h.message.as_deref() == Some(unsigned));
            if !refused {
                differences.push(format!("{label} (hardened, unsigned): {h:?}"));
            }
        }
    }
    assert!(differences.is_empty(), "{} differences:\n{}\n{}", differences.len(), differences.join("\n"), py.stderr());
    // the cases cover every kind of answer
    for status in [200, 401, 403, 404, 405, 500] {
        assert!(seen_statuses.contains_key(&status), "no case answered {status}: {seen_statuses:?}");
    }
}
