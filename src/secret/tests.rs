use super::*;

#[test]
fn trims_and_redacts() {
    let p = Pat::new("  ghp_abcdefghijklmnop1234\n").unwrap();
    assert_eq!(p.expose(), "ghp_abcdefghijklmnop1234");
    assert_eq!(p.redacted(), "***1234");
    assert_eq!(format!("{p:?}"), "Pat(***1234)");
    assert!(!format!("{p:?}").contains("abcdefgh"));
    assert!(Pat::new(" \n\t").is_none());
    assert_eq!(redact("short"), "***");
}

#[test]
fn redact_tokens_table() {
    let classic = "ghp_0123456789abcdefghijABCDEFGHIJ12WXYZ";
    let fine = "github_pat_11ABCDEFG0123456789abc_defghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdQRST";
    for (input, want) in [
        // nothing to redact
        ("", ""),
        ("cannot read config file /etc/patrol/config.toml", "cannot read config file /etc/patrol/config.toml"),
        (
            "ghp_ alone, gho_, github_pat_: prefixes without a token",
            "ghp_ alone, gho_, github_pat_: prefixes without a token",
        ),
        ("GHP_UPPERCASE0000000000000000000", "GHP_UPPERCASE0000000000000000000"),
        ("***WXYZ", "***WXYZ"),
        // every prefix, anywhere in the text
        (classic, "***WXYZ"),
        (fine, "***QRST"),
        ("gho_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01", "***aa01"),
        ("ghu_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa02", "***aa02"),
        ("ghs_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa03", "***aa03"),
        ("ghr_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa04", "***aa04"),
        // in a TOML excerpt, a path, a quoted value, glued to other text; ends at a non-token char
        ("2 | token = \"ghp_0123456789abcdefghijABCDEFGHIJ12WXYZ\"", "2 | token = \"***WXYZ\""),
        (
            "cannot read config file /home/m/ghp_0123456789abcdefghijABCDEFGHIJ12WXYZ.toml: os error 2",
            "cannot read config file /home/m/***WXYZ.toml: os error 2",
        ),
        ("x=ghp_0123456789abcdefghijABCDEFGHIJ12WXYZ", "x=***WXYZ"),
        ("tokenghp_0123456789abcdefghijABCDEFGHIJ12WXYZ!", "token***WXYZ!"),
        // two tokens, non-ASCII around them
        (
            "é ghp_0123456789abcdefghijABCDEFGHIJ12WXYZ → gho_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb99 ü",
            "é ***WXYZ → ***bb99 ü",
        ),
        // a short match shows no tail at all
        ("ghp_abc1234", "***"),
        ("ghp_abcdefghijk", "***"),
        ("ghp_abcdefghijkl", "***ijkl"),
    ] {
        let got = redact_tokens(input);
        assert_eq!(got, want, "redact_tokens({input:?})");
        assert_eq!(matches!(got, Cow::Borrowed(_)), input == want, "borrows iff unchanged: {input:?}");
    }
    assert!(!redact_tokens(&format!("a {classic} b")).contains("0123456789"));
}

/// Issue 22: webhook URLs and bot tokens are secrets wherever they are quoted.
#[test]
fn notification_urls_are_redacted() {
    for (input, want) in [
        (
            "POST https://discord.com/api/webhooks/123456789012345678/AbCdEf-GhIjKl_0123456789 failed",
            "POST https://discord.com/api/webhooks/*** failed",
        ),
        (
            "url = \"https://hooks.slack.com/services/T0001/B0002/abcdefghijklmnopqrstuvwx\"",
            "url = \"https://hooks.slack.com/services/***\"",
        ),
        (
            "https://api.telegram.org/bot123456789:AAHfake-token_0123456789abcdefghij/sendMessage?chat_id=42",
            "https://api.telegram.org/bot***/sendMessage?chat_id=42",
        ),
        (
            "a /bot without digits, /botanist, /bot12 without colon",
            "a /bot without digits, /botanist, /bot12 without colon",
        ),
        ("http://127.0.0.1:9/api/webhooks/1/t (x)", "http://127.0.0.1:9/api/webhooks/*** (x)"),
    ] {
        let got = redact_tokens(input);
        assert_eq!(got, want, "{input}");
        assert_eq!(matches!(got, Cow::Borrowed(_)), input == want);
    }
    let u = HookUrl::new(" https://:tk_secretsecret@ntfy.example.net:8443/my-private-topic?x=1\n").unwrap();
    assert_eq!(u.shown(), "https://ntfy.example.net:8443/***");
    assert_eq!(format!("{u:?}"), "HookUrl(https://ntfy.example.net:8443/***)");
    let msg = format!("error sending request for url ({}): my-private-topic refused tk_secretsecret", u.expose());
    let scrubbed = u.scrub(&msg);
    assert!(!scrubbed.contains("my-private-topic") && !scrubbed.contains("tk_secretsecret"), "{scrubbed}");
    assert!(scrubbed.contains("https://ntfy.example.net:8443/***"), "{scrubbed}");
    assert!(HookUrl::new("  ").is_none());
}

#[test]
fn foreign_text_is_redacted_escaped_and_capped() {
    let pat = "ghp_0123456789abcdefghijABCDEFGHIJ12WXYZ";
    let reason = format!(
        "1 validation error [type=string_type, input_value='{pat}', input_type=str]\x1b[2J\r\nfake line\x1b]0;pwned\x07 \u{202e}txt.exe \u{9b}31m\x7f"
    );
    let clean = foreign_text(&reason);
    assert_eq!(
        clean,
        "1 validation error [type=string_type, input_value='***WXYZ', input_type=str]\\u{1b}[2J\\r\\nfake line\\u{1b}]0;pwned\\u{7} \\u{202e}txt.exe \\u{9b}31m\\u{7f}"
    );
    assert!(!clean.chars().any(|c| c.is_control()));
    // plain text, including non-ASCII, is kept as it is
    assert_eq!(foreign_text("GitHub identity is locked — réessayez"), "GitHub identity is locked — réessayez");
    // the cap counts characters, after escaping, and a cut ends in `…`
    let exact = "é".repeat(FOREIGN_TEXT_MAX);
    assert_eq!(foreign_text(&exact), exact);
    let long = foreign_text(&format!("{exact}x"));
    assert_eq!(long.chars().count(), FOREIGN_TEXT_MAX);
    assert!(long.ends_with("é…"));
    let escapes = foreign_text(&"\x1b".repeat(1000));
    assert_eq!(escapes.chars().count(), 1 + 6 * ((FOREIGN_TEXT_MAX - 1) / 6));
    assert!(escapes.ends_with("\\u{1b}…"), "an escape is never cut in half");
    // 63 KB with a token at the very end: the token is redacted before the cut
    let big = foreign_text(&format!("{}{pat}", "a".repeat(63 * 1024)));
    assert!(big.chars().count() <= FOREIGN_TEXT_MAX && !big.contains("0123456789"));
}

#[test]
fn secret_urls_show_no_credentials() {
    for (url, shown) in [
        ("wss://entrypoint-finney.opentensor.ai:443", "wss://entrypoint-finney.opentensor.ai:443"),
        ("ws://127.0.0.1:9944", "ws://127.0.0.1:9944"),
        ("wss://user:TOKEN1234@host.example/ws?apikey=KEY5678&x=1#frag", "wss://host.example/ws"),
        ("wss://tok3n-only-user@host.example:9944/", "wss://host.example:9944/"),
        (
            "wss://api-bittensor-mainnet.dwellir.com/51a1b1c4-1a2b-4c3d-9e8f-0123456789ab",
            "wss://api-bittensor-mainnet.dwellir.com/***",
        ),
        ("wss://host.example/v3/ws", "wss://host.example/v3/ws"),
    ] {
        let u = SecretUrl::new(url);
        assert_eq!(u.shown(), shown, "{url}");
        assert_eq!(u.to_string(), shown);
        assert_eq!(format!("{u:?}"), format!("SecretUrl({shown})"));
        assert_eq!(u.expose(), url);
    }
    let u = SecretUrl::new("wss://user:TOKEN1234@host.example/ws?apikey=KEY5678");
    assert_eq!(
        u.scrub("error connecting to wss://user:TOKEN1234@host.example/ws?apikey=KEY5678: 401 for apikey=KEY5678, user TOKEN1234"),
        "error connecting to wss://host.example/ws: 401 for ***, user ***"
    );
    assert_ne!(u.tag(), SecretUrl::new("wss://user:TOKEN1234@host.example/ws?apikey=OTHER99").tag());
    assert_eq!(u.tag().len(), 16);
}

#[test]
fn fingerprint_is_stable_and_distinct() {
    let a = Pat::new("ghp_aaaaaaaaaaaaaaaaaaaa").unwrap();
    let b = Pat::new("ghp_aaaaaaaaaaaaaaaaaaab").unwrap();
    assert_eq!(a.fingerprint(), Pat::new("ghp_aaaaaaaaaaaaaaaaaaaa\n").unwrap().fingerprint());
    assert_ne!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.fingerprint().len(), 16);
    assert!(!a.fingerprint().contains("aaaa"));
}
