//! Bittensor hotkeys: loading wallet keyfiles, SS58 addresses and sr25519 signatures.
//!
//! Follows `bittensor-wallet` 4.x (docs/bittensor-wire-protocol.md §10): keyfiles are JSON, usually
//! unencrypted; the signing context is `b"substrate"`; addresses use SS58 prefix 42. The loader
//! prefers `privateKey` over `secretSeed` because the wallet writes a corrupt `secretSeed` whenever the
//! seed bytes happen to be valid UTF-8 (§12.14) while `privateKey` is always right.

use std::fmt;
use std::path::{Path, PathBuf};

use blake2::{Blake2b512, Digest};
use schnorrkel::{ExpansionMode, Keypair, MiniSecretKey, PublicKey, SecretKey, Signature};
use serde::Deserialize;

/// SS58 address prefix of Bittensor (generic Substrate).
pub const SS58_PREFIX: u8 = 42;
const SIGNING_CONTEXT: &[u8] = b"substrate";

/// Largest hotkey file patrol reads. A bittensor keyfile (JSON with a phrase, seed, private and
/// public key and address) is under 1 KiB; 64 KiB leaves room for any formatting and stops
/// `--hotkey-file /dev/zero` or a wrong, huge file from being read into memory.
pub const HOTKEY_FILE_CAP: u64 = 64 << 10;

/// Why a hotkey could not be loaded or used. Messages name the file and the field to fix.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("cannot read hotkey file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "hotkey file {path} is {kind}, not a regular file; point --hotkey-file / [wallet] hotkey_file at the keyfile"
    )]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "hotkey file {path} is larger than {cap} bytes; a bittensor keyfile is under 1 KB: is this the right file?"
    )]
    TooLarge { path: PathBuf, cap: u64 },
    #[error(
        "hotkey file {path} is encrypted ({format}); patrol needs an unencrypted hotkey (bittensor's default). \
         Regenerate the hotkey without a password, or point [wallet] hotkey_file at an unencrypted copy"
    )]
    Encrypted { path: PathBuf, format: &'static str },
    #[error("hotkey file {path} is not valid keyfile JSON: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "hotkey file {path} holds no usable secret (no valid privateKey, secretSeed or secretPhrase); it can't sign"
    )]
    NoSecret { path: PathBuf },
    #[error("hotkey file {path}: the key derives to {derived} but the file says {recorded}")]
    Mismatch { path: PathBuf, derived: String, recorded: String },
    #[error("invalid SS58 address {0:?}: {1}")]
    BadAddress(String, &'static str),
    #[error("need 32 bytes of (0x-)hex for a hotkey seed: {0}")]
    BadSeed(String),
}

/// A hotkey able to sign, with its SS58 address.
#[derive(Clone)]
pub struct Hotkey {
    keypair: Keypair,
    ss58: String,
}

impl fmt::Debug for Hotkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hotkey({})", self.ss58)
    }
}

#[derive(Deserialize)]
struct KeyfileJson {
    #[serde(rename = "privateKey")]
    private_key: Option<String>,
    #[serde(rename = "secretSeed")]
    secret_seed: Option<String>,
    #[serde(rename = "secretPhrase")]
    secret_phrase: Option<String>,
    #[serde(rename = "ss58Address")]
    ss58_address: Option<String>,
    #[serde(rename = "publicKey")]
    public_key: Option<String>,
}

impl Hotkey {
    /// Build from a 32-byte mini secret (a keyfile's `secretSeed`), Ed25519 expansion as sp-core.
    pub fn from_seed(seed: &[u8; 32]) -> Hotkey {
        // 32 bytes is always a valid mini secret; MiniSecretKey::from_bytes only checks the length.
        let mini = MiniSecretKey::from_bytes(seed).expect("32-byte mini secret");
        Hotkey::from_keypair(mini.expand_to_keypair(ExpansionMode::Ed25519))
    }

    /// Build from a seed written as (0x-)hex: the validator's `--hotkey-seed`, the bench tools'.
    pub fn from_seed_hex(hex_seed: &str) -> Result<Hotkey, WalletError> {
        let raw = hex::decode(hex_seed.trim().trim_start_matches("0x"))
            .map_err(|e| WalletError::BadSeed(format!("not hex: {e}")))?;
        let seed: [u8; 32] =
            raw.try_into().map_err(|v: Vec<u8>| WalletError::BadSeed(format!("got {} bytes", v.len())))?;
        Ok(Hotkey::from_seed(&seed))
    }

    /// Build from a 64-byte schnorrkel secret (a keyfile's `privateKey`).
    pub fn from_private_key(bytes: &[u8]) -> Option<Hotkey> {
        SecretKey::from_bytes(bytes).ok().map(|s| Hotkey::from_keypair(s.to_keypair()))
    }

    /// Build from a BIP39 mnemonic the Substrate way (PBKDF2 over the *entropy*, not the BIP39 seed).
    pub fn from_phrase(phrase: &str) -> Option<Hotkey> {
        let m = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, phrase).ok()?;
        let entropy = m.to_entropy();
        let mut out = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<sha2::Sha512>(&entropy, b"mnemonic", 2048, &mut out);
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&out[..32]);
        Some(Hotkey::from_seed(&seed))
    }

    fn from_keypair(keypair: Keypair) -> Hotkey {
        let ss58 = ss58_encode(&keypair.public.to_bytes());
        Hotkey { keypair, ss58 }
    }

    /// Load `<wallet_path>/<wallet>/hotkeys/<hotkey>`.
    pub fn load_wallet(wallet_path: &Path, wallet: &str, hotkey: &str) -> Result<Hotkey, WalletError> {
        Hotkey::load(&wallet_path.join(wallet).join("hotkeys").join(hotkey))
    }

    /// Load a hotkey keyfile. Order: `privateKey`, then `secretSeed`, then `secretPhrase`; the result
    /// is checked against `ss58Address`/`publicKey` when the file records them.
    pub fn load(path: &Path) -> Result<Hotkey, WalletError> {
        let raw = crate::fsutil::read_capped(path, HOTKEY_FILE_CAP).map_err(|e| match e {
            crate::fsutil::ReadError::Io(source) => WalletError::Read { path: path.into(), source },
            crate::fsutil::ReadError::NotRegular(kind) => WalletError::NotRegular { path: path.into(), kind },
            crate::fsutil::ReadError::TooLarge { cap } => WalletError::TooLarge { path: path.into(), cap },
            // only text reads check the encoding (the keyfile's JSON parse does, just below)
            e @ crate::fsutil::ReadError::NotUtf8 => {
                WalletError::Malformed { path: path.into(), reason: e.to_string() }
            }
        })?;
        Hotkey::parse(path, &raw)
    }

    /// Parse keyfile bytes (see [`Hotkey::load`]); `path` is only used in error messages.
    pub fn parse(path: &Path, raw: &[u8]) -> Result<Hotkey, WalletError> {
        if let Some(format) = encrypted_format(raw) {
            return Err(WalletError::Encrypted { path: path.into(), format });
        }
        let kf: KeyfileJson = serde_json::from_slice(raw)
            .map_err(|e| WalletError::Malformed { path: path.into(), reason: e.to_string() })?;
        let key = kf
            .private_key
            .as_deref()
            .and_then(|h| decode_hex_exact(h, 64))
            .and_then(|b| Hotkey::from_private_key(&b))
            .or_else(|| {
                kf.secret_seed.as_deref().and_then(|h| decode_hex_exact(h, 32)).map(|b| {
                    let mut s = [0u8; 32];
                    s.copy_from_slice(&b);
                    Hotkey::from_seed(&s)
                })
            })
            .or_else(|| kf.secret_phrase.as_deref().and_then(Hotkey::from_phrase))
            .ok_or_else(|| WalletError::NoSecret { path: path.into() })?;
        if let Some(recorded) = kf.ss58_address.as_deref() {
            if recorded != key.ss58 {
                return Err(WalletError::Mismatch {
                    path: path.into(),
                    derived: key.ss58.clone(),
                    recorded: recorded.into(),
                });
            }
        } else if let Some(pk) = kf.public_key.as_deref().and_then(|h| decode_hex_exact(h, 32))
            && pk != key.public_key()
        {
            return Err(WalletError::Mismatch {
                path: path.into(),
                derived: format!("0x{}", hex::encode(key.public_key())),
                recorded: kf.public_key.unwrap_or_default(),
            });
        }
        Ok(key)
    }

    /// SS58 (prefix 42) address of this hotkey.
    pub fn ss58(&self) -> &str {
        &self.ss58
    }

    /// 32-byte sr25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.keypair.public.to_bytes()
    }

    /// sr25519 signature (context `substrate`) over `message`. Randomised: never compare bytes.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.keypair.sign_simple(SIGNING_CONTEXT, message).to_bytes()
    }

    /// Signature as bittensor sends it: `0x` + 128 lowercase hex digits.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        format!("0x{}", hex::encode(self.sign(message)))
    }
}

/// Which encryption a keyfile uses, if any (bittensor-wallet `keyfile_data_is_encrypted*`).
pub fn encrypted_format(raw: &[u8]) -> Option<&'static str> {
    if raw.starts_with(b"$NACL") {
        Some("NaCl secretbox, $NACL")
    } else if raw.starts_with(b"$ANSIBLE_VAULT") {
        Some("Ansible Vault")
    } else if raw.starts_with(b"gAAAAA") {
        Some("legacy Fernet")
    } else {
        None
    }
}

fn decode_hex_exact(s: &str, len: usize) -> Option<Vec<u8>> {
    let h = s.strip_prefix("0x").unwrap_or(s);
    let b = hex::decode(h).ok()?;
    (b.len() == len).then_some(b)
}

/// SS58-encode a 32-byte public key with prefix 42.
pub fn ss58_encode(public: &[u8; 32]) -> String {
    let mut data = Vec::with_capacity(35);
    data.push(SS58_PREFIX);
    data.extend_from_slice(public);
    let hash = ss58_checksum(&data);
    data.extend_from_slice(&hash[..2]);
    bs58::encode(data).into_string()
}

/// Decode an SS58 address with prefix 42 to its public key, checking the checksum.
pub fn ss58_decode(addr: &str) -> Result<[u8; 32], WalletError> {
    let bad = |why| WalletError::BadAddress(addr.to_string(), why);
    let data = bs58::decode(addr).into_vec().map_err(|_| bad("not base58"))?;
    if data.len() != 35 {
        return Err(bad("wrong length for a 32-byte account"));
    }
    if data[0] != SS58_PREFIX {
        return Err(bad("not an SS58 prefix-42 address"));
    }
    let sum = ss58_checksum(&data[..33]);
    if data[33..35] != sum[..2] {
        return Err(bad("checksum mismatch"));
    }
    let mut pk = [0u8; 32];
    pk.copy_from_slice(&data[1..33]);
    Ok(pk)
}

fn ss58_checksum(data: &[u8]) -> [u8; 64] {
    let mut h = Blake2b512::new();
    h.update(b"SS58PRE");
    h.update(data);
    h.finalize().into()
}

/// Verify an sr25519 signature (context `substrate`) by public key. Like bittensor-wallet, a signature
/// made over `<Bytes>message</Bytes>` (the polkadot-js wrapping) is accepted too.
pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(pk), Ok(sig)) = (PublicKey::from_bytes(public), Signature::from_bytes(signature)) else {
        return false;
    };
    if pk.verify_simple(SIGNING_CONTEXT, message, &sig).is_ok() {
        return true;
    }
    let mut wrapped = Vec::with_capacity(message.len() + 15);
    wrapped.extend_from_slice(b"<Bytes>");
    wrapped.extend_from_slice(message);
    wrapped.extend_from_slice(b"</Bytes>");
    pk.verify_simple(SIGNING_CONTEXT, &wrapped, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors(name: &str) -> Value {
        // The recorded vectors are in the repository; $PATROL_VECTORS points elsewhere (re-recording).
        let dir = std::env::var("PATROL_VECTORS")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vectors").into());
        let p = Path::new(&dir).join(name);
        let raw = std::fs::read(&p).unwrap_or_else(|e| panic!("vectors missing at {}: {e}", p.display()));
        serde_json::from_slice(&raw).unwrap()
    }

    fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
        v.pointer(ptr).and_then(Value::as_str).unwrap_or_else(|| panic!("no {ptr}"))
    }

    #[test]
    fn key_vectors_derive_the_recorded_addresses() {
        let k = vectors("keys.json");
        let from_phrase = Hotkey::from_phrase(s(&k, "/dendrite_hotkey/mnemonic")).unwrap();
        assert_eq!(from_phrase.ss58(), s(&k, "/dendrite_hotkey/ss58_address"));
        assert_eq!(format!("0x{}", hex::encode(from_phrase.public_key())), s(&k, "/dendrite_hotkey/public_key_hex"));
        let pk = hex::decode(&s(&k, "/dendrite_hotkey/private_key_hex_64_bytes")[2..]).unwrap();
        assert_eq!(Hotkey::from_private_key(&pk).unwrap().ss58(), from_phrase.ss58());
        for who in ["dendrite_hotkey", "axon_hotkey", "axon_coldkey", "blacklisted_hotkey"] {
            let seed: [u8; 32] =
                hex::decode(&s(&k, &format!("/{who}/secret_seed_hex"))[2..]).unwrap().try_into().unwrap();
            let key = Hotkey::from_seed(&seed);
            assert_eq!(key.ss58(), s(&k, &format!("/{who}/ss58_address")), "{who}");
            assert_eq!(ss58_decode(key.ss58()).unwrap(), key.public_key());
        }
    }

    #[test]
    fn signature_vectors_verify_and_ours_verify() {
        let k = vectors("keys.json");
        let pubkey: [u8; 32] =
            hex::decode(&s(&k, "/signature_vectors/0/public_key_hex")[2..]).unwrap().try_into().unwrap();
        let msg = s(&k, "/signature_vectors/0/message_utf8").as_bytes();
        for ptr in [
            "/signature_vectors/0/signature_hex",
            "/signature_vectors/0/second_signature_same_message_hex",
            "/signature_vectors/1/signature_hex",
        ] {
            let sig = hex::decode(&s(&k, ptr)[2..]).unwrap();
            assert!(verify(&pubkey, msg, &sig), "{ptr}");
            assert!(!verify(&pubkey, b"tampered", &sig));
        }
        let r = vectors("rust_signed.json");
        let sig = hex::decode(&s(&r, "/signature_hex")[2..]).unwrap();
        assert!(verify(&pubkey, s(&r, "/message_utf8").as_bytes(), &sig));
        let key = Hotkey::from_phrase(s(&k, "/dendrite_hotkey/mnemonic")).unwrap();
        let ours = key.sign(msg);
        assert!(verify(&pubkey, msg, &ours));
        assert_ne!(key.sign(msg), ours, "sr25519 signatures are randomised");
        assert!(key.sign_hex(msg).starts_with("0x") && key.sign_hex(msg).len() == 130);
    }

    #[test]
    fn keyfile_vectors_load() {
        let kf = vectors("keyfiles.json");
        let p = Path::new("hotkey");
        for (ptr, want) in [
            ("/hotkey_file_from_mnemonic/raw_utf8", "/hotkey_file_from_mnemonic/parsed/ss58Address"),
            ("/hotkey_file_from_seed/raw_utf8", "/hotkey_file_from_seed/parsed/ss58Address"),
        ] {
            assert_eq!(Hotkey::parse(p, s(&kf, ptr).as_bytes()).unwrap().ss58(), s(&kf, want));
        }
        // the wallet's own bug: secretSeed written as raw bytes; privateKey still works
        let quirk = Hotkey::parse(p, s(&kf, "/quirk_hotkey_file_from_utf8_valid_seed/raw_utf8").as_bytes()).unwrap();
        assert_eq!(quirk.ss58(), "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi");
        for case in ["only_secretSeed", "only_privateKey"] {
            let content = kf.pointer(&format!("/minimal_keyfiles_accepted/{case}/content")).unwrap().to_string();
            let key = Hotkey::parse(p, content.as_bytes()).unwrap();
            assert_eq!(key.ss58(), s(&kf, &format!("/minimal_keyfiles_accepted/{case}/ss58_address")));
        }
        let pub_only = kf.pointer("/minimal_keyfiles_accepted/only_ss58Address/content").unwrap().to_string();
        assert!(matches!(Hotkey::parse(p, pub_only.as_bytes()), Err(WalletError::NoSecret { .. })));
        use base64::Engine;
        let enc = base64::engine::general_purpose::STANDARD
            .decode(s(&kf, "/encrypted_hotkey_file/base64_of_whole_file"))
            .unwrap();
        let err = Hotkey::parse(p, &enc).unwrap_err();
        assert!(matches!(err, WalletError::Encrypted { .. }), "{err}");
        assert!(err.to_string().contains("encrypted"));
    }

    #[test]
    fn malformed_and_mismatched_files_are_clear_errors() {
        let p = Path::new("/x/hotkeys/h");
        let e = Hotkey::parse(p, b"{not json").unwrap_err();
        assert!(e.to_string().contains("/x/hotkeys/h") && e.to_string().contains("not valid keyfile JSON"));
        let e = Hotkey::parse(
            p,
            br#"{"secretSeed":"0x1111111111111111111111111111111111111111111111111111111111111111","ss58Address":"5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"}"#,
        )
        .unwrap_err();
        assert!(matches!(e, WalletError::Mismatch { .. }));
        assert!(ss58_decode("5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzW").is_err());
        assert!(ss58_decode("hello").is_err());
    }
}
