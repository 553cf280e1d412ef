//! Typed decoding of DEX pool events with alloy's `sol!`.
//!
//! Dispatch is by `topic0`, so a log decodes without knowing its pool; the pool's protocol, when
//! known, only settles the two signatures that Uniswap V2 and Solidly (and Uniswap V3 and
//! PancakeSwap V3) share. A log whose topic0 is not a DEX event is [`Event::Unknown`]; a log whose
//! topic0 is known but whose topics or data do not fit the event is a [`DecodeError`] that says
//! where it is and which field. "Fit" is strict: every field narrower than its 32-byte word must
//! be a value of its Solidity type (no dropped high bytes), and V3 prices and ticks must lie in the
//! domain of the pool's tick math, so no value is stored that the contract could not have emitted.

use alloy::primitives::{Address, B256, I256, U256};
use alloy::sol_types::SolEvent;

use crate::types::{LogLocation, Protocol, RawLog};

/// Uniswap V2 pair events (also BaseSwap, SushiSwap and every other V2 fork).
pub mod univ2 {
    alloy::sol! {
        event Swap(address indexed sender, uint256 amount0In, uint256 amount1In, uint256 amount0Out, uint256 amount1Out, address indexed to);
        event Sync(uint112 reserve0, uint112 reserve1);
        event Mint(address indexed sender, uint256 amount0, uint256 amount1);
        event Burn(address indexed sender, uint256 amount0, uint256 amount1, address indexed to);
    }
}

/// Uniswap V3 pool events. PancakeSwap V3 shares all of them but `Swap`.
pub mod univ3 {
    alloy::sol! {
        event Swap(address indexed sender, address indexed recipient, int256 amount0, int256 amount1, uint160 sqrtPriceX96, uint128 liquidity, int24 tick);
        event Mint(address sender, address indexed owner, int24 indexed tickLower, int24 indexed tickUpper, uint128 amount, uint256 amount0, uint256 amount1);
        event Burn(address indexed owner, int24 indexed tickLower, int24 indexed tickUpper, uint128 amount, uint256 amount0, uint256 amount1);
        event Collect(address indexed owner, address recipient, int24 indexed tickLower, int24 indexed tickUpper, uint128 amount0, uint128 amount1);
        event Initialize(uint160 sqrtPriceX96, int24 tick);
    }
}

/// PancakeSwap V3's Swap carries the protocol fees taken in each token.
pub mod pancakev3 {
    alloy::sol! {
        event Swap(address indexed sender, address indexed recipient, int256 amount0, int256 amount1, uint160 sqrtPriceX96, uint128 liquidity, int24 tick, uint128 protocolFeesToken0, uint128 protocolFeesToken1);
    }
}

/// Solidly-style pool events with Aerodrome's signatures (Velodrome V2 is identical).
pub mod solidly {
    alloy::sol! {
        event Swap(address indexed sender, address indexed to, uint256 amount0In, uint256 amount1In, uint256 amount0Out, uint256 amount1Out);
        event Sync(uint256 reserve0, uint256 reserve1);
        event Mint(address indexed sender, uint256 amount0, uint256 amount1);
        event Burn(address indexed sender, address indexed to, uint256 amount0, uint256 amount1);
        event Fees(address indexed sender, uint256 amount0, uint256 amount1);
    }
}

/// The kind of a log, by topic0 alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    V2Swap,
    V2Sync,
    /// V2 and Solidly share this signature.
    V2Mint,
    V2Burn,
    V3Swap,
    PancakeSwap,
    V3Mint,
    V3Burn,
    V3Collect,
    V3Initialize,
    SolidlySwap,
    SolidlySync,
    SolidlyBurn,
    SolidlyFees,
    Unknown,
}

impl EventKind {
    pub fn from_topic0(topic0: Option<&B256>) -> EventKind {
        let Some(t) = topic0 else {
            return EventKind::Unknown;
        };
        match *t {
            univ2::Swap::SIGNATURE_HASH => EventKind::V2Swap,
            univ2::Sync::SIGNATURE_HASH => EventKind::V2Sync,
            univ2::Mint::SIGNATURE_HASH => EventKind::V2Mint,
            univ2::Burn::SIGNATURE_HASH => EventKind::V2Burn,
            univ3::Swap::SIGNATURE_HASH => EventKind::V3Swap,
            pancakev3::Swap::SIGNATURE_HASH => EventKind::PancakeSwap,
            univ3::Mint::SIGNATURE_HASH => EventKind::V3Mint,
            univ3::Burn::SIGNATURE_HASH => EventKind::V3Burn,
            univ3::Collect::SIGNATURE_HASH => EventKind::V3Collect,
            univ3::Initialize::SIGNATURE_HASH => EventKind::V3Initialize,
            solidly::Swap::SIGNATURE_HASH => EventKind::SolidlySwap,
            solidly::Sync::SIGNATURE_HASH => EventKind::SolidlySync,
            solidly::Burn::SIGNATURE_HASH => EventKind::SolidlyBurn,
            solidly::Fees::SIGNATURE_HASH => EventKind::SolidlyFees,
            _ => EventKind::Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EventKind::V2Swap => "v2_swap",
            EventKind::V2Sync => "v2_sync",
            EventKind::V2Mint => "v2_mint",
            EventKind::V2Burn => "v2_burn",
            EventKind::V3Swap => "v3_swap",
            EventKind::PancakeSwap => "pancake_v3_swap",
            EventKind::V3Mint => "v3_mint",
            EventKind::V3Burn => "v3_burn",
            EventKind::V3Collect => "v3_collect",
            EventKind::V3Initialize => "v3_initialize",
            EventKind::SolidlySwap => "solidly_swap",
            EventKind::SolidlySync => "solidly_sync",
            EventKind::SolidlyBurn => "solidly_burn",
            EventKind::SolidlyFees => "solidly_fees",
            EventKind::Unknown => "unknown",
        }
    }

    /// (number of topics, number of data bytes) the event must have.
    fn shape(self) -> Option<(usize, usize)> {
        Some(match self {
            EventKind::V2Swap => (3, 4 * 32),
            EventKind::V2Sync | EventKind::SolidlySync => (1, 2 * 32),
            EventKind::V2Mint => (2, 2 * 32),
            EventKind::V2Burn => (3, 2 * 32),
            EventKind::V3Swap => (3, 5 * 32),
            EventKind::PancakeSwap => (3, 7 * 32),
            EventKind::V3Mint => (4, 4 * 32),
            EventKind::V3Burn => (4, 3 * 32),
            EventKind::V3Collect => (4, 3 * 32),
            EventKind::V3Initialize => (1, 2 * 32),
            EventKind::SolidlySwap => (3, 4 * 32),
            EventKind::SolidlyBurn => (3, 2 * 32),
            EventKind::SolidlyFees => (2, 2 * 32),
            EventKind::Unknown => return None,
        })
    }

    /// Every field of the event narrower than its 32-byte word, where it sits and its Solidity
    /// type. The ABI decoder masks such words without looking at the bytes it drops, so a word a
    /// contract cannot have emitted would otherwise decode to a wrapped value (tick -1 for a word
    /// that is not a sign-extended int24).
    fn narrow_fields(self) -> &'static [(&'static str, Slot, Narrow)] {
        use Narrow::*;
        use Slot::*;
        match self {
            EventKind::V2Swap | EventKind::SolidlySwap => {
                &[("sender", Topic(1), Addr), ("to", Topic(2), Addr)]
            }
            EventKind::V2Sync => &[
                ("reserve0", Word(0), Uint(112)),
                ("reserve1", Word(1), Uint(112)),
            ],
            EventKind::V2Mint | EventKind::SolidlyFees => &[("sender", Topic(1), Addr)],
            EventKind::V2Burn | EventKind::SolidlyBurn => {
                &[("sender", Topic(1), Addr), ("to", Topic(2), Addr)]
            }
            EventKind::V3Swap => &[
                ("sender", Topic(1), Addr),
                ("recipient", Topic(2), Addr),
                ("sqrtPriceX96", Word(2), Uint(160)),
                ("liquidity", Word(3), Uint(128)),
                ("tick", Word(4), Int(24)),
            ],
            EventKind::PancakeSwap => &[
                ("sender", Topic(1), Addr),
                ("recipient", Topic(2), Addr),
                ("sqrtPriceX96", Word(2), Uint(160)),
                ("liquidity", Word(3), Uint(128)),
                ("tick", Word(4), Int(24)),
                ("protocolFeesToken0", Word(5), Uint(128)),
                ("protocolFeesToken1", Word(6), Uint(128)),
            ],
            EventKind::V3Mint => &[
                ("owner", Topic(1), Addr),
                ("tickLower", Topic(2), Int(24)),
                ("tickUpper", Topic(3), Int(24)),
                ("sender", Word(0), Addr),
                ("amount", Word(1), Uint(128)),
            ],
            EventKind::V3Burn => &[
                ("owner", Topic(1), Addr),
                ("tickLower", Topic(2), Int(24)),
                ("tickUpper", Topic(3), Int(24)),
                ("amount", Word(0), Uint(128)),
            ],
            EventKind::V3Collect => &[
                ("owner", Topic(1), Addr),
                ("tickLower", Topic(2), Int(24)),
                ("tickUpper", Topic(3), Int(24)),
                ("recipient", Word(0), Addr),
                ("amount0", Word(1), Uint(128)),
                ("amount1", Word(2), Uint(128)),
            ],
            EventKind::V3Initialize => &[
                ("sqrtPriceX96", Word(0), Uint(160)),
                ("tick", Word(1), Int(24)),
            ],
            EventKind::SolidlySync | EventKind::Unknown => &[],
        }
    }
}

/// Where a field of a log is: a topic, or a 32-byte word of the data.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Topic(usize),
    Word(usize),
}

/// A Solidity type narrower than the 32-byte word that carries it.
#[derive(Debug, Clone, Copy)]
enum Narrow {
    Addr,
    Uint(usize),
    Int(usize),
}

impl Narrow {
    /// Whether `w` is the ABI encoding of a value of this type: zero (unsigned, address) or the
    /// sign (signed) in every byte above the type's width.
    fn holds(self, w: &[u8; 32]) -> bool {
        let (bytes, signed) = match self {
            Narrow::Addr => (20, false),
            Narrow::Uint(bits) => (bits / 8, false),
            Narrow::Int(bits) => (bits / 8, true),
        };
        let top = 32 - bytes;
        let fill = if signed && w[top] & 0x80 != 0 {
            0xff
        } else {
            0
        };
        w[..top].iter().all(|&b| b == fill)
    }

    fn name(self) -> String {
        match self {
            Narrow::Addr => "address".into(),
            Narrow::Uint(bits) => format!("uint{bits}"),
            Narrow::Int(bits) => format!("int{bits}"),
        }
    }
}

/// A decoded DEX event. Amounts are exact integers in the token's raw units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// V2 or Solidly swap. Reserves after it come from the Sync just before it.
    PairSwap {
        amount0_in: U256,
        amount1_in: U256,
        amount0_out: U256,
        amount1_out: U256,
    },
    /// V2 or Solidly reserves after any change.
    Sync {
        reserve0: U256,
        reserve1: U256,
    },
    PairMint {
        amount0: U256,
        amount1: U256,
    },
    PairBurn {
        amount0: U256,
        amount1: U256,
    },
    /// Solidly fee accrual.
    PairFees {
        amount0: U256,
        amount1: U256,
    },
    /// V3 swap; amounts are the pool's deltas (positive = into the pool).
    V3Swap {
        amount0: I256,
        amount1: I256,
        sqrt_price_x96: U256,
        liquidity: u128,
        tick: i32,
        /// PancakeSwap V3 only.
        protocol_fees: Option<(u128, u128)>,
    },
    V3Mint {
        owner: Address,
        tick_lower: i32,
        tick_upper: i32,
        amount: u128,
        amount0: U256,
        amount1: U256,
    },
    V3Burn {
        owner: Address,
        tick_lower: i32,
        tick_upper: i32,
        amount: u128,
        amount0: U256,
        amount1: U256,
    },
    V3Collect {
        owner: Address,
        tick_lower: i32,
        tick_upper: i32,
        amount0: u128,
        amount1: u128,
    },
    V3Initialize {
        sqrt_price_x96: U256,
        tick: i32,
    },
    Unknown,
}

/// A log whose topic0 names a DEX event but whose topics or data do not fit it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {kind} log at {location}: {message}")]
pub struct DecodeError {
    pub kind: &'static str,
    pub location: LogLocation,
    pub message: String,
}

/// Decodes one log. The protocol hint settles signatures shared between families.
pub fn decode_log(log: &RawLog) -> Result<(EventKind, Event), DecodeError> {
    let kind = EventKind::from_topic0(log.topic0());
    let Some((n_topics, n_data)) = kind.shape() else {
        return Ok((kind, Event::Unknown));
    };
    let fail = |message: String| DecodeError {
        kind: kind.name(),
        location: log.location(),
        message,
    };
    if log.topics.len() != n_topics {
        return Err(fail(format!(
            "expected {n_topics} topics, found {}",
            log.topics.len()
        )));
    }
    if log.data.len() != n_data {
        return Err(fail(format!(
            "expected {n_data} data bytes, found {}",
            log.data.len()
        )));
    }
    let data = &log.data[..];
    for &(name, slot, ty) in kind.narrow_fields() {
        let w: Option<&[u8; 32]> = match slot {
            Slot::Topic(i) => log.topics.get(i).map(|t| &t.0),
            Slot::Word(i) => data
                .get(i * 32..(i + 1) * 32)
                .and_then(|w| w.try_into().ok()),
        };
        let Some(w) = w else {
            return Err(fail(format!("`{name}` is missing")));
        };
        if !ty.holds(w) {
            return Err(fail(format!(
                "`{name}` 0x{} is not a {}",
                hex::encode(w),
                ty.name()
            )));
        }
    }
    let topics = log.topics.iter().copied();
    let err = |e: alloy::sol_types::Error| fail(e.to_string());
    let ev = match kind {
        EventKind::V2Swap => {
            let e = univ2::Swap::decode_raw_log(topics, data).map_err(err)?;
            Event::PairSwap {
                amount0_in: e.amount0In,
                amount1_in: e.amount1In,
                amount0_out: e.amount0Out,
                amount1_out: e.amount1Out,
            }
        }
        EventKind::SolidlySwap => {
            let e = solidly::Swap::decode_raw_log(topics, data).map_err(err)?;
            Event::PairSwap {
                amount0_in: e.amount0In,
                amount1_in: e.amount1In,
                amount0_out: e.amount0Out,
                amount1_out: e.amount1Out,
            }
        }
        EventKind::V2Sync => {
            let e = univ2::Sync::decode_raw_log(topics, data).map_err(err)?;
            Event::Sync {
                reserve0: U256::from(e.reserve0),
                reserve1: U256::from(e.reserve1),
            }
        }
        EventKind::SolidlySync => {
            let e = solidly::Sync::decode_raw_log(topics, data).map_err(err)?;
            Event::Sync {
                reserve0: e.reserve0,
                reserve1: e.reserve1,
            }
        }
        EventKind::V2Mint => {
            let e = univ2::Mint::decode_raw_log(topics, data).map_err(err)?;
            Event::PairMint {
                amount0: e.amount0,
                amount1: e.amount1,
            }
        }
        EventKind::V2Burn => {
            let e = univ2::Burn::decode_raw_log(topics, data).map_err(err)?;
            Event::PairBurn {
                amount0: e.amount0,
                amount1: e.amount1,
            }
        }
        EventKind::SolidlyBurn => {
            let e = solidly::Burn::decode_raw_log(topics, data).map_err(err)?;
            Event::PairBurn {
                amount0: e.amount0,
                amount1: e.amount1,
            }
        }
        EventKind::SolidlyFees => {
            let e = solidly::Fees::decode_raw_log(topics, data).map_err(err)?;
            Event::PairFees {
                amount0: e.amount0,
                amount1: e.amount1,
            }
        }
        EventKind::V3Swap => {
            let e = univ3::Swap::decode_raw_log(topics, data).map_err(err)?;
            Event::V3Swap {
                amount0: e.amount0,
                amount1: e.amount1,
                sqrt_price_x96: U256::from(e.sqrtPriceX96),
                liquidity: e.liquidity,
                tick: e.tick.as_i32(),
                protocol_fees: None,
            }
        }
        EventKind::PancakeSwap => {
            let e = pancakev3::Swap::decode_raw_log(topics, data).map_err(err)?;
            Event::V3Swap {
                amount0: e.amount0,
                amount1: e.amount1,
                sqrt_price_x96: U256::from(e.sqrtPriceX96),
                liquidity: e.liquidity,
                tick: e.tick.as_i32(),
                protocol_fees: Some((e.protocolFeesToken0, e.protocolFeesToken1)),
            }
        }
        EventKind::V3Mint => {
            let e = univ3::Mint::decode_raw_log(topics, data).map_err(err)?;
            Event::V3Mint {
                owner: e.owner,
                tick_lower: e.tickLower.as_i32(),
                tick_upper: e.tickUpper.as_i32(),
                amount: e.amount,
                amount0: e.amount0,
                amount1: e.amount1,
            }
        }
        EventKind::V3Burn => {
            let e = univ3::Burn::decode_raw_log(topics, data).map_err(err)?;
            Event::V3Burn {
                owner: e.owner,
                tick_lower: e.tickLower.as_i32(),
                tick_upper: e.tickUpper.as_i32(),
                amount: e.amount,
                amount0: e.amount0,
                amount1: e.amount1,
            }
        }
        EventKind::V3Collect => {
            let e = univ3::Collect::decode_raw_log(topics, data).map_err(err)?;
            Event::V3Collect {
                owner: e.owner,
                tick_lower: e.tickLower.as_i32(),
                tick_upper: e.tickUpper.as_i32(),
                amount0: e.amount0,
                amount1: e.amount1,
            }
        }
        EventKind::V3Initialize => {
            let e = univ3::Initialize::decode_raw_log(topics, data).map_err(err)?;
            Event::V3Initialize {
                sqrt_price_x96: U256::from(e.sqrtPriceX96),
                tick: e.tick.as_i32(),
            }
        }
        EventKind::Unknown => Event::Unknown,
    };
    check_pool_values(&ev).map_err(fail)?;
    Ok((kind, ev))
}

/// Values of the right type that no Uniswap V3 pool can emit: a price outside the tick math's
/// domain (zero would price the pool at 0 and its returns at -inf), a tick beyond ±887272, a
/// position whose lower tick is not below its upper tick.
fn check_pool_values(ev: &Event) -> Result<(), String> {
    use dexlab_amm::tick_math::{MAX_SQRT_RATIO, MAX_TICK, MIN_SQRT_RATIO, MIN_TICK};
    let tick = |name: &str, t: i32| {
        if (MIN_TICK..=MAX_TICK).contains(&t) {
            Ok(())
        } else {
            Err(format!(
                "`{name}` {t} is outside the V3 tick range {MIN_TICK}..={MAX_TICK}"
            ))
        }
    };
    let price = |p: U256| {
        if (MIN_SQRT_RATIO..=MAX_SQRT_RATIO).contains(&p) {
            Ok(())
        } else {
            Err(format!(
                "`sqrtPriceX96` {p} is outside {MIN_SQRT_RATIO}..={MAX_SQRT_RATIO}"
            ))
        }
    };
    let range = |lower: i32, upper: i32| {
        tick("tickLower", lower)?;
        tick("tickUpper", upper)?;
        if lower < upper {
            Ok(())
        } else {
            Err(format!(
                "`tickLower` {lower} is not below `tickUpper` {upper}"
            ))
        }
    };
    match *ev {
        Event::V3Swap {
            sqrt_price_x96,
            tick: t,
            ..
        }
        | Event::V3Initialize {
            sqrt_price_x96,
            tick: t,
        } => {
            price(sqrt_price_x96)?;
            tick("tick", t)
        }
        Event::V3Mint {
            tick_lower,
            tick_upper,
            ..
        }
        | Event::V3Burn {
            tick_lower,
            tick_upper,
            ..
        }
        | Event::V3Collect {
            tick_lower,
            tick_upper,
            ..
        } => range(tick_lower, tick_upper),
        _ => Ok(()),
    }
}

/// Whether a pool of `protocol` can emit a log of `kind`: V2-style events (Uniswap V2 and
/// Solidly, whose forks mix the two families' signatures) from V2 and Solidly pools, V3 events
/// from V3 pools. A V2 `Swap` from a pool the metadata calls V3 would otherwise become a V3 swap
/// row without a price.
pub fn kind_fits_protocol(kind: EventKind, protocol: Protocol) -> bool {
    use EventKind::*;
    match kind {
        V2Swap | V2Sync | V2Mint | V2Burn | SolidlySwap | SolidlySync | SolidlyBurn
        | SolidlyFees => matches!(protocol, Protocol::UniswapV2 | Protocol::Solidly),
        // Slipstream's pools emit Uniswap V3's events, Swap included.
        V3Swap => matches!(protocol, Protocol::UniswapV3 | Protocol::Slipstream),
        PancakeSwap => protocol == Protocol::PancakeV3,
        V3Mint | V3Burn | V3Collect | V3Initialize => protocol.is_v3(),
        Unknown => true,
    }
}

/// The protocol a log's own signature implies, where it is unambiguous.
pub fn protocol_of_kind(kind: EventKind) -> Option<Protocol> {
    match kind {
        EventKind::V2Swap | EventKind::V2Sync | EventKind::V2Burn => Some(Protocol::UniswapV2),
        EventKind::PancakeSwap => Some(Protocol::PancakeV3),
        // Uniswap V3 or Slipstream: the same signature.
        EventKind::V3Swap => None,
        EventKind::SolidlySwap
        | EventKind::SolidlySync
        | EventKind::SolidlyBurn
        | EventKind::SolidlyFees => Some(Protocol::Solidly),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Bytes, b256, keccak256};

    /// Every event kind the decoder knows, with its shape, against the event of the same name in
    /// the ABI of each contract that emits it: the npm artifacts of Uniswap V2/V3 and PancakeSwap
    /// V3, and Aerodrome's and Slipstream's pools compiled from their published source.
    #[test]
    fn every_signature_and_shape_matches_the_contracts_abi() {
        use EventKind::*;
        let emitters: [(&str, &[(EventKind, &str)]); 5] = [
            (
                "UniswapV2Pair",
                &[
                    (V2Swap, "Swap"),
                    (V2Sync, "Sync"),
                    (V2Mint, "Mint"),
                    (V2Burn, "Burn"),
                ],
            ),
            (
                "UniswapV3Pool",
                &[
                    (V3Swap, "Swap"),
                    (V3Mint, "Mint"),
                    (V3Burn, "Burn"),
                    (V3Collect, "Collect"),
                    (V3Initialize, "Initialize"),
                ],
            ),
            (
                "PancakeV3Pool",
                &[
                    (PancakeSwap, "Swap"),
                    (V3Mint, "Mint"),
                    (V3Burn, "Burn"),
                    (V3Collect, "Collect"),
                    (V3Initialize, "Initialize"),
                ],
            ),
            // Slipstream's pools emit Uniswap V3's events.
            (
                "SlipstreamPool",
                &[
                    (V3Swap, "Swap"),
                    (V3Mint, "Mint"),
                    (V3Burn, "Burn"),
                    (V3Collect, "Collect"),
                    (V3Initialize, "Initialize"),
                ],
            ),
            // Aerodrome's Mint is V2's.
            (
                "AerodromePool",
                &[
                    (SolidlySwap, "Swap"),
                    (SolidlySync, "Sync"),
                    (V2Mint, "Mint"),
                    (SolidlyBurn, "Burn"),
                    (SolidlyFees, "Fees"),
                ],
            ),
        ];
        for (contract, kinds) in emitters {
            let a = crate::tools::artifact(contract).unwrap();
            for &(kind, name) in kinds {
                let e = a
                    .abi
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["type"] == "event" && x["name"] == name)
                    .unwrap_or_else(|| panic!("{contract} has no event {name}"));
                let inputs = e["inputs"].as_array().unwrap();
                let types: Vec<&str> = inputs.iter().map(|i| i["type"].as_str().unwrap()).collect();
                let sig = format!("{name}({})", types.join(","));
                let indexed = inputs.iter().filter(|i| i["indexed"] == true).count();
                let topic0 = keccak256(sig.as_bytes());
                assert_eq!(
                    EventKind::from_topic0(Some(&topic0)),
                    kind,
                    "{contract}.{sig}"
                );
                assert_eq!(
                    kind.shape(),
                    Some((1 + indexed, 32 * (inputs.len() - indexed))),
                    "{contract}.{sig}: topics and data words"
                );
            }
        }
    }

    fn log(topics: Vec<B256>, data: Vec<u8>) -> RawLog {
        RawLog {
            block_number: 7,
            block_hash: None,
            transaction_index: 1,
            log_index: 3,
            transaction_hash: b256!(
                "00000000000000000000000000000000000000000000000000000000000000aa"
            ),
            address: Address::ZERO,
            topics,
            data: Bytes::from(data),
            chain_id: 1,
        }
    }

    #[test]
    fn signatures_are_the_known_mainnet_topics() {
        assert_eq!(
            univ3::Swap::SIGNATURE_HASH,
            b256!("c42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67")
        );
        assert_eq!(
            univ2::Swap::SIGNATURE_HASH,
            b256!("d78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822")
        );
        assert_eq!(
            univ2::Sync::SIGNATURE_HASH,
            b256!("1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1")
        );
        assert_eq!(
            solidly::Swap::SIGNATURE_HASH,
            b256!("b3e2773606abfd36b5bd91394b3a54d1398336c65005baf7bf7a05efeffaf75b")
        );
    }

    #[test]
    fn short_data_and_wrong_topic_count_are_errors_with_location() {
        let t0 = univ3::Swap::SIGNATURE_HASH;
        let e = decode_log(&log(vec![t0, B256::ZERO, B256::ZERO], vec![0; 100])).unwrap_err();
        assert!(
            e.to_string().contains("expected 160 data bytes, found 100"),
            "{e}"
        );
        assert!(e.to_string().contains("block 7"), "{e}");
        assert!(e.to_string().contains("log index 3"), "{e}");
        let e = decode_log(&log(vec![t0], vec![0; 160])).unwrap_err();
        assert!(e.to_string().contains("expected 3 topics, found 1"), "{e}");
    }

    #[test]
    fn unknown_topic_is_not_an_error() {
        let (k, ev) = decode_log(&log(vec![B256::repeat_byte(9)], vec![1, 2, 3])).unwrap();
        assert_eq!((k, ev), (EventKind::Unknown, Event::Unknown));
        let (k, _) = decode_log(&log(vec![], vec![])).unwrap();
        assert_eq!(k, EventKind::Unknown);
    }

    fn wu(v: U256) -> B256 {
        B256::from(v.to_be_bytes::<32>())
    }

    fn wi(v: i64) -> B256 {
        B256::from(I256::try_from(v).unwrap().to_be_bytes::<32>())
    }

    fn wa(byte: u8) -> B256 {
        Address::repeat_byte(byte).into_word()
    }

    /// A well-formed log of each kind the decoder handles: (topics, data words).
    fn valid(kind: EventKind) -> (Vec<B256>, Vec<B256>) {
        let q96 = U256::from(1) << 96;
        let amt = wu(U256::from(10u64.pow(18)));
        match kind {
            EventKind::V2Swap => (
                vec![univ2::Swap::SIGNATURE_HASH, wa(1), wa(2)],
                vec![amt, wu(U256::ZERO), wu(U256::ZERO), amt],
            ),
            EventKind::V2Sync => (vec![univ2::Sync::SIGNATURE_HASH], vec![amt, amt]),
            EventKind::V2Mint => (vec![univ2::Mint::SIGNATURE_HASH, wa(1)], vec![amt, amt]),
            EventKind::V2Burn => (
                vec![univ2::Burn::SIGNATURE_HASH, wa(1), wa(2)],
                vec![amt, amt],
            ),
            EventKind::V3Swap => (
                vec![univ3::Swap::SIGNATURE_HASH, wa(1), wa(2)],
                vec![wi(1000), wi(-990), wu(q96), amt, wi(-3)],
            ),
            EventKind::PancakeSwap => (
                vec![pancakev3::Swap::SIGNATURE_HASH, wa(1), wa(2)],
                vec![wi(1000), wi(-990), wu(q96), amt, wi(-3), amt, amt],
            ),
            EventKind::V3Mint => (
                vec![univ3::Mint::SIGNATURE_HASH, wa(1), wi(-60), wi(60)],
                vec![wa(3), amt, amt, amt],
            ),
            EventKind::V3Burn => (
                vec![univ3::Burn::SIGNATURE_HASH, wa(1), wi(-60), wi(60)],
                vec![amt, amt, amt],
            ),
            EventKind::V3Collect => (
                vec![univ3::Collect::SIGNATURE_HASH, wa(1), wi(-60), wi(60)],
                vec![wa(3), amt, amt],
            ),
            EventKind::V3Initialize => (
                vec![univ3::Initialize::SIGNATURE_HASH],
                vec![wu(q96), wi(0)],
            ),
            EventKind::SolidlySwap => (
                vec![solidly::Swap::SIGNATURE_HASH, wa(1), wa(2)],
                vec![amt, wu(U256::ZERO), wu(U256::ZERO), amt],
            ),
            EventKind::SolidlySync => (vec![solidly::Sync::SIGNATURE_HASH], vec![amt, amt]),
            EventKind::SolidlyBurn => (
                vec![solidly::Burn::SIGNATURE_HASH, wa(1), wa(2)],
                vec![amt, amt],
            ),
            EventKind::SolidlyFees => (vec![solidly::Fees::SIGNATURE_HASH, wa(1)], vec![amt, amt]),
            EventKind::Unknown => (vec![], vec![]),
        }
    }

    fn words_log(topics: Vec<B256>, words: &[B256]) -> RawLog {
        log(topics, words.iter().flat_map(|w| w.0).collect())
    }

    #[test]
    fn every_valid_kind_decodes() {
        for kind in [
            EventKind::V2Swap,
            EventKind::V2Sync,
            EventKind::V2Mint,
            EventKind::V2Burn,
            EventKind::V3Swap,
            EventKind::PancakeSwap,
            EventKind::V3Mint,
            EventKind::V3Burn,
            EventKind::V3Collect,
            EventKind::V3Initialize,
            EventKind::SolidlySwap,
            EventKind::SolidlySync,
            EventKind::SolidlyBurn,
            EventKind::SolidlyFees,
        ] {
            let (t, w) = valid(kind);
            let (k, _) =
                decode_log(&words_log(t, &w)).unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
            assert_eq!(k, kind);
        }
    }

    /// Every field narrower than its 32-byte word, and every value the pool cannot hold, is a
    /// malformed log naming the field, never a truncated or wrapped value.
    #[test]
    fn values_outside_their_type_are_malformed_naming_the_field() {
        enum At {
            Topic(usize),
            Word(usize),
        }
        let high = |w: B256| {
            let mut w = w;
            w.0[0] = 0x01;
            w
        };
        let q = |x: U256| wu(x);
        let one = U256::from(1);
        let mut not_int24 = [0u8; 32];
        not_int24[29..].copy_from_slice(&[0xff, 0xff, 0xff]); // -1 without its sign extension
        let not_int24 = B256::from(not_int24);
        let mut positive_2_23 = [0u8; 32];
        positive_2_23[29] = 0x80; // 2^23: int24's sign bit set, upper bytes zero
        let positive_2_23 = B256::from(positive_2_23);
        use EventKind::*;
        let cases: Vec<(EventKind, At, B256, &str)> = vec![
            (V2Swap, At::Topic(1), high(wa(1)), "sender"),
            (V2Swap, At::Topic(2), high(wa(2)), "to"),
            (V2Sync, At::Word(1), q(one << 112), "reserve1"),
            (V2Sync, At::Word(0), q(one << 200), "reserve0"),
            (V2Mint, At::Topic(1), high(wa(1)), "sender"),
            (V2Burn, At::Topic(2), high(wa(2)), "to"),
            (V3Swap, At::Topic(1), high(wa(1)), "sender"),
            (V3Swap, At::Topic(2), high(wa(2)), "recipient"),
            (V3Swap, At::Word(2), q(U256::ZERO), "sqrtPriceX96"),
            (V3Swap, At::Word(2), q(one << 200), "sqrtPriceX96"),
            (V3Swap, At::Word(2), q((one << 160) - one), "sqrtPriceX96"),
            (
                V3Swap,
                At::Word(2),
                q(U256::from(4295128738u64)),
                "sqrtPriceX96",
            ),
            (V3Swap, At::Word(3), q(one << 128), "liquidity"),
            (V3Swap, At::Word(4), not_int24, "tick"),
            (V3Swap, At::Word(4), positive_2_23, "tick"),
            (V3Swap, At::Word(4), wi(887_273), "tick"),
            (PancakeSwap, At::Word(4), not_int24, "tick"),
            (PancakeSwap, At::Word(2), q(U256::ZERO), "sqrtPriceX96"),
            (PancakeSwap, At::Word(3), q(one << 128), "liquidity"),
            (
                PancakeSwap,
                At::Word(5),
                q(one << 128),
                "protocolFeesToken0",
            ),
            (
                PancakeSwap,
                At::Word(6),
                q(one << 255),
                "protocolFeesToken1",
            ),
            (V3Mint, At::Topic(1), high(wa(1)), "owner"),
            (V3Mint, At::Topic(2), not_int24, "tickLower"),
            (V3Mint, At::Topic(3), positive_2_23, "tickUpper"),
            (V3Mint, At::Topic(2), wi(60), "tickLower"),
            (V3Mint, At::Topic(2), wi(-887_273), "tickLower"),
            (V3Mint, At::Word(0), high(wa(3)), "sender"),
            (V3Mint, At::Word(1), q(one << 128), "amount"),
            (V3Burn, At::Topic(3), not_int24, "tickUpper"),
            (V3Burn, At::Word(0), q(one << 128), "amount"),
            (V3Collect, At::Topic(2), not_int24, "tickLower"),
            (V3Collect, At::Word(0), high(wa(3)), "recipient"),
            (V3Collect, At::Word(1), q(one << 128), "amount0"),
            (V3Collect, At::Word(2), q(one << 128), "amount1"),
            (V3Initialize, At::Word(0), q(U256::ZERO), "sqrtPriceX96"),
            (V3Initialize, At::Word(1), not_int24, "tick"),
            (SolidlySwap, At::Topic(2), high(wa(2)), "to"),
            (SolidlyBurn, At::Topic(1), high(wa(1)), "sender"),
            (SolidlyFees, At::Topic(1), high(wa(1)), "sender"),
        ];
        for (kind, at, word, field) in cases {
            let (mut t, mut w) = valid(kind);
            match at {
                At::Topic(i) => t[i] = word,
                At::Word(i) => w[i] = word,
            }
            match decode_log(&words_log(t, &w)) {
                Ok(ev) => panic!("{} with a bad {field} decoded as {ev:?}", kind.name()),
                Err(e) => {
                    let m = e.to_string();
                    assert!(m.contains(&format!("`{field}`")), "{}: {m}", kind.name());
                    assert!(m.contains("log index 3"), "{m}");
                }
            }
        }
    }

    #[test]
    fn v2_sync_above_uint112_is_rejected() {
        // A uint112 field with high bits set cannot come from a real pair.
        let mut data = vec![0u8; 64];
        data[0] = 0xff;
        let err = decode_log(&log(vec![univ2::Sync::SIGNATURE_HASH], data));
        assert!(err.is_err());
    }
}
