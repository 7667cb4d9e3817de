//! The SCALE shapes patrol reads from Subtensor and their conversion into [`Neuron`]s.
//!
//! The structs name only the fields used. `DecodeAsType` matches fields by name against the type
//! information in the node's metadata and skips the rest, so a runtime upgrade that adds or reorders
//! fields (it happens every few weeks on finney) does not break decoding; only a rename or removal
//! of one of these fields would. `Compact<u16>` / `Compact<u64>` (and the `NetUid`/`AlphaBalance`
//! newtypes around them) decode straight into the plain integers.
//!
//! The functions here are pure (bytes + metadata in, values out) so the offline tests run them over
//! the recorded mainnet answers exactly as the client does over live ones.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use scale_decode::DecodeAsType;
use subxt::Metadata;
use subxt::utils::AccountId32;

use crate::validators::Neuron;

/// A decoding problem, described for the operator (the caller adds url/netuid/block).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// `AxonInfo` (pallets/subtensor/src/lib.rs): where a hotkey serves. A hotkey that never served has
/// the default (all zero).
#[derive(Debug, Clone, PartialEq, DecodeAsType)]
pub struct AxonInfo {
    pub ip: u128,
    pub port: u16,
    /// 4 or 6 (0 when never served).
    pub ip_type: u8,
}

/// `NeuronInfoLite` from `NeuronInfoRuntimeApi_get_neurons_lite`, only the fields patrol uses.
#[derive(Debug, Clone, PartialEq, DecodeAsType)]
pub struct NeuronInfoLite {
    pub hotkey: AccountId32,
    pub uid: u16,
    pub axon_info: AxonInfo,
    /// Raw u16; 65535 = 1.0.
    pub validator_trust: u16,
    pub validator_permit: bool,
    /// `(owner coldkey, TotalHotkeyAlpha)` in rao; the hotkey's own alpha. Used only when
    /// `get_subnet_state` gives nothing (see the module doc of [`crate::chain`]).
    pub stake: Vec<(AccountId32, u64)>,
}

impl NeuronInfoLite {
    /// The hotkey's own alpha, in rao (sum of the `stake` entries; the chain returns one).
    pub fn own_stake_rao(&self) -> u64 {
        self.stake.iter().fold(0u64, |acc, (_, s)| acc.saturating_add(*s))
    }
}

/// `SubnetState` from `SubnetInfoRuntimeApi_get_subnet_state`, only what patrol uses: the stake
/// weight per uid (`metagraph.S` in the Python SDK) and the hotkeys, to check the columns line up
/// with the neurons read at the same block.
#[derive(Debug, Clone, PartialEq, DecodeAsType)]
pub struct SubnetState {
    pub hotkeys: Vec<AccountId32>,
    /// rao, indexed by uid.
    pub total_stake: Vec<u64>,
}

/// Raw runtime metadata (`RuntimeMetadataPrefixed`, as a `.scale` file or the inner bytes of
/// `Metadata_metadata_at_version`) into subxt's [`Metadata`].
pub fn metadata_from_scale(bytes: &[u8]) -> Result<Metadata, DecodeError> {
    Metadata::decode_from(bytes).map_err(|e| DecodeError(format!("runtime metadata: {e}")))
}

/// Decode a runtime-API answer with the metadata's type for it, requiring every byte to be used.
fn runtime_api_answer<T: DecodeAsType>(
    md: &Metadata,
    trait_name: &str,
    method: &str,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    let cursor = &mut &*bytes;
    let value = subxt::ext::frame_decode::runtime_apis::decode_runtime_api_response(
        trait_name,
        method,
        cursor,
        md,
        md.types(),
        T::into_visitor(),
    )
    .map_err(|e| DecodeError(format!("{trait_name}_{method} answer: {e}")))?;
    // Leftover bytes mean our idea of the type is wrong even though a prefix decoded.
    if !cursor.is_empty() {
        return Err(DecodeError(format!(
            "{trait_name}_{method} answer: {} trailing bytes after decoding",
            cursor.len()
        )));
    }
    Ok(value)
}

/// `NeuronInfoRuntimeApi_get_neurons_lite` answer bytes.
pub fn neurons_lite_from_answer(md: &Metadata, bytes: &[u8]) -> Result<Vec<NeuronInfoLite>, DecodeError> {
    runtime_api_answer(md, "NeuronInfoRuntimeApi", "get_neurons_lite", bytes)
}

/// `SubnetInfoRuntimeApi_get_subnet_state` answer bytes (`None` for an unknown netuid).
pub fn subnet_state_from_answer(md: &Metadata, bytes: &[u8]) -> Result<Option<SubnetState>, DecodeError> {
    runtime_api_answer(md, "SubnetInfoRuntimeApi", "get_subnet_state", bytes)
}

/// Full storage key of `SubtensorModule::Uids(netuid, hotkey)`, computed from the metadata's hashers
/// (Identity for the netuid, Blake2_128Concat for the hotkey).
pub fn uids_key(md: &Metadata, netuid: u16, hotkey: &[u8; 32]) -> Result<Vec<u8>, DecodeError> {
    subxt::ext::frame_decode::storage::encode_storage_key(
        "SubtensorModule",
        "Uids",
        (netuid, AccountId32(*hotkey)),
        md,
        md.types(),
    )
    .map_err(|e| DecodeError(format!("SubtensorModule::Uids key: {e}")))
}

/// A `Uids` storage value (a SCALE `u16`).
pub fn uid_from_storage(bytes: &[u8]) -> Result<u16, DecodeError> {
    match bytes {
        [lo, hi] => Ok(u16::from_le_bytes([*lo, *hi])),
        other => Err(DecodeError(format!("SubtensorModule::Uids value: expected 2 bytes, got {}", other.len()))),
    }
}

/// The axon IP as `bittensor.AxonInfo` shows it: `None` when not serving (ip 0), IPv4 from the low 32
/// bits when `ip_type` is 4, IPv6 from the whole u128 when 6. Anything else is unusable, so `None`.
pub fn axon_ip(ip: u128, ip_type: u8) -> Option<IpAddr> {
    if ip == 0 {
        return None;
    }
    match ip_type {
        4 => u32::try_from(ip).ok().map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(ip))),
        _ => None,
    }
}

/// u16 validator trust → 0..=1, as the SDK's `u16_normalized_float`.
pub fn vtrust(raw: u16) -> f64 {
    f64::from(raw) / f64::from(u16::MAX)
}

/// rao → α (or τ).
pub fn rao_to_alpha(rao: u64) -> f64 {
    rao as f64 / 1e9
}

/// Build patrol's neuron rows. With `state`, the stake is `SubnetState.total_stake[uid]` (gittensor's
/// `S`); the columns must cover every uid and name the same hotkey, or the two answers are not from
/// the same block and we refuse them. Without `state`, the stake is the hotkey's own alpha.
pub fn to_neurons(lite: &[NeuronInfoLite], state: Option<&SubnetState>) -> Result<Vec<Neuron>, DecodeError> {
    let mut out = Vec::with_capacity(lite.len());
    for n in lite {
        let i = usize::from(n.uid);
        let stake_rao = match state {
            None => n.own_stake_rao(),
            Some(s) => {
                let stake = s.total_stake.get(i).ok_or_else(|| {
                    DecodeError(format!(
                        "subnet state has {} stakes but neuron uid {} exists",
                        s.total_stake.len(),
                        n.uid
                    ))
                })?;
                // hotkeys may be absent in some runtimes' answers; check only when present.
                if let Some(hk) = s.hotkeys.get(i)
                    && hk != &n.hotkey
                {
                    return Err(DecodeError(format!(
                        "subnet state names hotkey {} for uid {} but get_neurons_lite names {}",
                        crate::wallet::ss58_encode(&hk.0),
                        n.uid,
                        crate::wallet::ss58_encode(&n.hotkey.0)
                    )));
                }
                *stake
            }
        };
        out.push(Neuron {
            uid: n.uid,
            hotkey: crate::wallet::ss58_encode(&n.hotkey.0),
            ip: axon_ip(n.axon_info.ip, n.axon_info.ip_type),
            port: n.axon_info.port,
            vtrust: vtrust(n.validator_trust),
            stake: rao_to_alpha(stake_rao),
            validator_permit: n.validator_permit,
        });
    }
    out.sort_by_key(|n| n.uid);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips() {
        assert_eq!(axon_ip(0, 4), None);
        assert_eq!(axon_ip(0, 0), None);
        assert_eq!(
            axon_ip(u128::from(u32::from(Ipv4Addr::new(192, 150, 253, 122))), 4),
            Some("192.150.253.122".parse().unwrap())
        );
        assert_eq!(axon_ip(1 << 40, 4), None, "an IPv4 axon cannot have bits above 32");
        assert_eq!(axon_ip(1, 6), Some("::1".parse().unwrap()));
        assert_eq!(axon_ip(7, 9), None);
    }

    #[test]
    fn scaling() {
        assert_eq!(vtrust(65535), 1.0);
        assert_eq!(vtrust(0), 0.0);
        assert!((vtrust(32768) - 0.500_007_6).abs() < 1e-6);
        assert_eq!(rao_to_alpha(1_234_500_000_000), 1234.5);
    }

    #[test]
    fn uid_value() {
        assert_eq!(uid_from_storage(&[5, 0]), Ok(5));
        assert!(uid_from_storage(&[5]).is_err());
    }

    fn lite(uid: u16, key: u8, stake: u64) -> NeuronInfoLite {
        NeuronInfoLite {
            hotkey: AccountId32([key; 32]),
            uid,
            axon_info: AxonInfo { ip: 0x0a00_0001, port: 8091, ip_type: 4 },
            validator_trust: 65535,
            validator_permit: true,
            stake: vec![(AccountId32([0; 32]), stake)],
        }
    }

    #[test]
    fn stake_from_state_or_own() {
        let l = [lite(1, 1, 5_000_000_000), lite(0, 0, 1_000_000_000)];
        let own = to_neurons(&l, None).unwrap();
        assert_eq!(own.iter().map(|n| (n.uid, n.stake)).collect::<Vec<_>>(), vec![(0, 1.0), (1, 5.0)]);
        assert_eq!(own[0].ip, Some("10.0.0.1".parse().unwrap()));
        let state = SubnetState {
            hotkeys: vec![AccountId32([0; 32]), AccountId32([1; 32])],
            total_stake: vec![7_000_000_000, 9_000_000_000],
        };
        let s = to_neurons(&l, Some(&state)).unwrap();
        assert_eq!(s.iter().map(|n| n.stake).collect::<Vec<_>>(), vec![7.0, 9.0]);
        // columns from another block: refused
        let wrong = SubnetState { hotkeys: vec![AccountId32([0; 32]), AccountId32([2; 32])], total_stake: vec![1, 2] };
        assert!(to_neurons(&l, Some(&wrong)).is_err());
        let short = SubnetState { hotkeys: vec![], total_stake: vec![1] };
        assert!(to_neurons(&l, Some(&short)).is_err());
    }
}
