use super::*;
use crate::wallet::Hotkey;
use crate::wire::{EMPTY_BODY_HASH, VERSION_AS_INT, signed_message};

const AXON: &str = "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi";

fn signed(key: &Hotkey, nonce: u64, uuid: &str, axon: &str) -> RequestHeaders {
    let msg = signed_message(nonce, key.ss58(), axon, uuid, EMPTY_BODY_HASH);
    RequestHeaders {
        timeout: Some(12.0),
        version: Some(PyInt::from_u64(VERSION_AS_INT)),
        nonce: Some(PyInt::from_u64(nonce)),
        uuid: Some(uuid.into()),
        hotkey: Some(key.ss58().into()),
        signature: Some(key.sign_hex(msg.as_bytes())),
        computed_body_hash: Some(EMPTY_BODY_HASH.into()),
        input_obj_fields: vec![],
    }
}

const NOW: u64 = 1_800_000_000_000_000_000;

#[test]
fn accepts_fresh_rejects_replay_and_lower() {
    let k = Hotkey::from_seed(&[9; 32]);
    let t = NonceTracker::default();
    let h = signed(&k, NOW - 1_000_000, "u1", AXON);
    verify_request(&h, AXON, &t, NOW, true).unwrap();
    assert_eq!(verify_request(&h, AXON, &t, NOW, true), Err(VerifyError::NonceNotNewer));
    let lower = signed(&k, NOW - 2_000_000, "u1", AXON);
    assert_eq!(verify_request(&lower, AXON, &t, NOW, true), Err(VerifyError::NonceNotNewer));
    // after first contact only monotonicity counts
    let later_old = signed(&k, NOW + 1, "u1", AXON);
    verify_request(&later_old, AXON, &t, NOW + 100_000_000_000, true).unwrap();
}

#[test]
fn window_is_four_seconds_plus_timeout() {
    let k = Hotkey::from_seed(&[9; 32]);
    let t = NonceTracker::default();
    let old = signed(&k, NOW - 60_000_000_000, "u2", AXON);
    let e = verify_request(&old, AXON, &t, NOW, true).unwrap_err();
    assert_eq!(e.to_string(), "Nonce is too old: acceptable delta is 16.00 seconds but request was 60.00 seconds old");
    let mut wide = signed(&k, NOW - 60_000_000_000, "u3", AXON);
    wide.timeout = Some(120.0);
    verify_request(&wide, AXON, &t, NOW, true).unwrap();
    // far future accepted (no upper bound, like Python)
    verify_request(&signed(&k, NOW + 3_600_000_000_000, "u4", AXON), AXON, &t, NOW, true).unwrap();
    // legacy version: no window
    let mut legacy = signed(&k, 1, "u5", AXON);
    legacy.version = Some(PyInt::from_u64(7_001_000));
    verify_request(&legacy, AXON, &t, NOW, true).unwrap();
}

#[test]
fn signature_failures() {
    let k = Hotkey::from_seed(&[9; 32]);
    let t = NonceTracker::default();
    let other_axon = signed(&k, NOW, "u6", "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV");
    assert!(matches!(verify_request(&other_axon, AXON, &t, NOW, true), Err(VerifyError::SignatureMismatch { .. })));
    let mut nohex = signed(&k, NOW, "u7", AXON);
    nohex.signature = nohex.signature.map(|s| s[2..].to_string());
    assert_eq!(verify_request(&nohex, AXON, &t, NOW, true), Err(VerifyError::BadSignatureFormat));
    let mut unsigned = signed(&k, NOW, "u8", AXON);
    unsigned.signature = None;
    assert_eq!(verify_request(&unsigned, AXON, &t, NOW, true), Err(VerifyError::MissingSignature));
    verify_request(&unsigned, AXON, &t, NOW, false).unwrap();
    let mut nononce = signed(&k, NOW, "u9", AXON);
    nononce.nonce = None;
    assert_eq!(verify_request(&nononce, AXON, &t, NOW, true), Err(VerifyError::MissingNonce));
    // only the one accepted request (unsigned, require=false) recorded a nonce
    assert_eq!(t.len(), 1);
}

#[test]
fn header_parsing() {
    let h = RequestHeaders::parse([
        ("Timeout", b"15.0".as_slice()),
        ("BT_HEADER_DENDRITE_NONCE", b"42"),
        ("bt_header_input_obj_github_access_token", b"IiI="),
    ])
    .unwrap();
    assert_eq!(h.timeout, Some(15.0));
    assert_eq!(h.nonce, Some(PyInt::from_u64(42)));
    assert_eq!(h.input_obj_fields, vec!["github_access_token"]);
    assert!(RequestHeaders::parse([("header_size", b"abc".as_slice())]).is_err());
}

fn int(s: &str) -> PyInt {
    PyInt::parse(s).unwrap_or_else(|| panic!("{s:?} is an int"))
}

#[test]
fn python_int_parsing_and_order() {
    // what int() accepts (checked against CPython 3.11 through the real axon)
    for (text, canonical) in [
        ("18446744073709551615", "18446744073709551615"),
        ("-5", "-5"),
        ("1180591620717411303424", "1180591620717411303424"),
        (" +007 ", "7"),
        ("\t1_000\x0b", "1000"),
        ("-0", "0"),
        ("0_0", "0"),
    ] {
        assert_eq!(int(text).to_string(), canonical, "{text:?}");
    }
    for bad in ["", " ", "+", "-", "1__5", "_15", "15_", "+-5", "1.0", "1e19", "0x10", "١٢٣", "5\u{0}"] {
        assert_eq!(PyInt::parse(bad), None, "{bad:?}");
    }
    assert!(PyInt::parse(&"9".repeat(4300)).is_some());
    assert!(PyInt::parse(&"9".repeat(4301)).is_none(), "CPython's int_max_str_digits");
    let mut v =
        [int("5"), int("-10"), int("0"), int("100000000000000000000000"), int("-2"), int("-100000000000000000000")];
    v.sort();
    assert_eq!(
        v.iter().map(PyInt::to_string).collect::<Vec<_>>(),
        ["-100000000000000000000", "-10", "-2", "0", "5", "100000000000000000000000"]
    );
    assert_eq!(int("1000").sub(&int("1")).to_string(), "999");
    assert_eq!(int("5").sub(&int("-99999999999999999999")).to_string(), "100000000000000000004");
    assert_eq!(int("-5").sub(&int("-5")).to_string(), "0");
    assert_eq!(int("3").sub(&int("10")).to_string(), "-7");
    assert_eq!(int("18446744073709551615").to_u64(), Some(u64::MAX));
    assert_eq!(int("18446744073709551616").to_u64(), None);
    assert!(int("1").le_float(1.5) && !int("2").le_float(1.5) && int("-2").le_float(-1.5));
    assert!(!int("0").le_float(f64::NAN) && int("9").le_float(f64::INFINITY) && !int("9").le_float(f64::NEG_INFINITY));
    assert!(int(&format!("{:.0}", 1e300)).le_float(1e300) && !int(&format!("1{:.0}", 1e300)).le_float(1e300));
}

#[test]
fn python_float_parsing() {
    for (text, want) in
        [("12", 12.0), (" 12 ", 12.0), ("12.", 12.0), ("+5", 5.0), ("1_0", 10.0), ("1e400", f64::INFINITY)]
    {
        assert_eq!(py_float_parse(text), Some(want), "{text:?}");
    }
    assert!(py_float_parse("nan").is_some_and(f64::is_nan) && py_float_parse("NaN").is_some_and(f64::is_nan));
    assert_eq!(py_float_parse("Infinity"), Some(f64::INFINITY));
    for bad in ["", "0x1", "1__0", "_1", "1_.5", "abc", "１２"] {
        assert_eq!(py_float_parse(bad), None, "{bad:?}");
    }
    assert_eq!(py_fixed2(f64::NEG_INFINITY), "-inf");
    assert_eq!(py_fixed2(0.125), "0.12");
}

#[test]
fn python_nonce_window_arithmetic() {
    let k = Hotkey::from_seed(&[9; 32]);
    let t = NonceTracker::default();
    let with = |nonce: &str, timeout: Option<f64>, uuid: &str| {
        let mut h = signed(&k, 1, uuid, AXON);
        h.nonce = Some(int(nonce));
        h.timeout = timeout;
        h.signature = None;
        h
    };
    let too_old = |h: &RequestHeaders| t.check(h, NOW).map_err(|e| e.to_string());
    // u64::MAX and 2**70 are far-future nonces, accepted; -5 is too old
    assert_eq!(too_old(&with("18446744073709551615", Some(12.0), "a")), Ok(()));
    assert_eq!(too_old(&with("1180591620717411303424", Some(12.0), "b")), Ok(()));
    assert_eq!(
        too_old(&with("-5", Some(12.0), "c")),
        Err("Nonce is too old: acceptable delta is 16.00 seconds but request was 1800000000.00 seconds old".into())
    );
    // no timeout header: None, i.e. 0 (not the class default of 12 s)
    let ten_s_old = (NOW - 10_000_000_000).to_string();
    assert_eq!(
        too_old(&with(&ten_s_old, None, "d")),
        Err("Nonce is too old: acceptable delta is 4.00 seconds but request was 10.00 seconds old".into())
    );
    // a negative timeout moves the window into the future; NaN and inf disable it
    let now = NOW.to_string();
    assert_eq!(
        too_old(&with(&now, Some(-100.0), "e")),
        Err("Nonce is too old: acceptable delta is -96.00 seconds but request was 0.00 seconds old".into())
    );
    assert_eq!(too_old(&with("1", Some(f64::NAN), "f")), Ok(()));
    assert_eq!(too_old(&with("-1", Some(f64::INFINITY), "g")), Ok(()));
    assert_eq!(
        too_old(&with(&now, Some(-1e308), "h")),
        Err("Nonce is too old: acceptable delta is -inf seconds but request was 0.00 seconds old".into())
    );
    // zero timeout: 4 s, integer arithmetic
    let five_s_old = (NOW - 5_000_000_000).to_string();
    assert_eq!(
        too_old(&with(&five_s_old, Some(0.0), "i")),
        Err("Nonce is too old: acceptable delta is 4.00 seconds but request was 5.00 seconds old".into())
    );
    // an age beyond a float: Python's OverflowError text
    let huge = format!("-1{}", "0".repeat(400));
    assert_eq!(too_old(&with(&huge, Some(12.0), "j")), Err("integer division result too large for a float".into()));
    // 10**30 in the past: int/int true division, correctly rounded
    let far = format!("-1{}", "0".repeat(30));
    assert_eq!(
        too_old(&with(&far, Some(12.0), "k")),
        Err(
            "Nonce is too old: acceptable delta is 16.00 seconds but request was 1000000000001800011776.00 seconds old"
                .into()
        )
    );
}

#[test]
fn hotkeys_are_read_like_bittensor_keypair() {
    let k = Hotkey::from_seed(&[0x11; 32]);
    assert_eq!(keypair_public(k.ss58()).ok(), wallet::ss58_decode(k.ss58()).ok());
    // the same key in other address formats (Polkadot 0, Kusama 2, a two-byte prefix) is that key
    for other in [
        "12pWV6LvG4iAfNpFNTvvkWy3H9H8wtCkjiXupAzo2BCmPViM",
        "EPq15Rj2eTcyVdBBXgyWKVta7Zj4FTo7beB3YHPwtPjxEkr",
        "Zp2xxJJaL8u6HQtPbUZwvT17RTLbFhD9cJaC1Xvd7iFgUsPat",
    ] {
        assert_eq!(keypair_public(other).ok(), keypair_public(k.ss58()).ok(), "{other}");
    }
    // the texts of bittensor_wallet 4.0.1's Keypair
    for (addr, why) in [
        ("", "Length is bad"),
        ("nope-hotkey", "Base 58 requirement is violated"),
        ("notregistered", "Length is bad"),
        ("511111111111111111111111111111111111111111111111", "Invalid checksum"),
        ("Doawa5eXTJfCetbdJcXy5s1S1FamyLoNt7SiZfKLHdKBQtJ8", "Invalid SS58 prefix byte."),
        ("Kds3UDaR3maQXgRGCAKmd6HoyEfmhMX2PhVupC8wQZrDhKMBx", "Length is bad"),
        ("5d2rNjFTwSwbr5Rb2xQ27yCb1TrfUKAhQz1x7caeKWZCLK2v", "Disallowed SS58 Address Format for this datatype."),
    ] {
        assert_eq!(keypair_public(addr), Err(why), "{addr:?}");
    }
    // Python builds the keypair before it looks at the nonce
    let t = NonceTracker::default();
    let mut h = signed(&k, NOW, "z", AXON);
    h.hotkey = Some("nope-hotkey".into());
    h.nonce = None;
    assert_eq!(
        verify_request(&h, AXON, &t, NOW, false).map_err(|e| e.to_string()),
        Err("Invalid SS58 address: Base 58 requirement is violated".into())
    );
    h.hotkey = None;
    assert_eq!(verify_request(&h, AXON, &t, NOW, false), Err(VerifyError::MissingHotkey));
}

#[test]
fn a_signed_odd_nonce_is_verified_over_its_canonical_form() {
    let k = Hotkey::from_seed(&[9; 32]);
    let t = NonceTracker::default();
    let big = "1180591620717411303424";
    let msg = format!("{big}.{}.{AXON}.u.{EMPTY_BODY_HASH}", k.ss58());
    let mut h = signed(&k, 1, "u", AXON);
    h.nonce = Some(int(&format!(" +{big} ")));
    h.signature = Some(k.sign_hex(msg.as_bytes()));
    verify_request(&h, AXON, &t, NOW, true).unwrap();
    assert_eq!(verify_request(&h, AXON, &t, NOW, true), Err(VerifyError::NonceNotNewer));
}
