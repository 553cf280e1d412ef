//! The risk manager: limits between the strategy and the executor, the same in backtest, paper
//! and live.
//!
//! Every bundle a strategy sends is checked before its input is reserved. A bundle over a limit
//! is refused, never sent ([`dexlab_strategy::FillStatus::Rejected`], no gas), with the rule and
//! the figures that broke it. Some conditions halt trading instead: a day's loss past its limit,
//! too many reverted bundles in a row, and the operator's kill switch. While halted the strategy
//! still sees every block (its state stays current) but everything it sends is refused.
//!
//! What the manager decides depends only on the blocks, the outcomes and the operator's commands,
//! so a session's replay takes the same decisions: commands (kill, clear) are recorded with the
//! block they took effect at and applied again there. A daily-loss halt ends with the chain's
//! UTC day (block timestamps); a revert halt and a kill last until an operator clears them.
//!
//! Limits are valued in the quote token at reference prices (floats: they are thresholds, not
//! money moved; the amounts themselves stay exact integers).

use serde::{Deserialize, Serialize};

/// The limits, as `examples/risk.toml` lists them. Every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskLimits {
    /// Largest input of one bundle, in quote-token units at reference prices.
    pub max_notional_quote: f64,
    /// Largest holding of any token other than the quote token that a bundle may leave, in
    /// quote-token units (what is held plus the bundle's expected output).
    pub max_exposure_quote: f64,
    /// Trading halts for the rest of the chain's UTC day once equity is this far below its
    /// level at the day's first block (quote-token units).
    pub daily_loss_quote: f64,
    /// Highest gas price a bundle may pay: the block's base fee plus its priority fee, wei per gas.
    pub max_gas_price_wei: u128,
    /// Trading halts after this many reverted bundles in a row, until an operator clears it.
    pub max_consecutive_reverts: u32,
    /// Bundles sent per block at most; the rest of the block's are refused.
    pub max_bundles_per_block: u32,
}

impl Default for RiskLimits {
    fn default() -> Self {
        Self {
            max_notional_quote: 10_000.0,
            max_exposure_quote: 25_000.0,
            daily_loss_quote: 1_000.0,
            // 1 gwei: 200 times Base's minimum base fee.
            max_gas_price_wei: 1_000_000_000,
            max_consecutive_reverts: 3,
            max_bundles_per_block: 2,
        }
    }
}

/// A limit out of its range, naming its key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("risk.{key} = {value} must be {expected}")]
pub struct RiskConfigError {
    pub key: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl RiskLimits {
    pub fn validate(&self) -> Result<(), RiskConfigError> {
        for (key, v) in [
            ("max_notional_quote", self.max_notional_quote),
            ("max_exposure_quote", self.max_exposure_quote),
            ("daily_loss_quote", self.daily_loss_quote),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(RiskConfigError {
                    key,
                    value: v.to_string(),
                    expected: "a positive number of quote-token units",
                });
            }
        }
        for (key, v) in [
            ("max_gas_price_wei", self.max_gas_price_wei),
            (
                "max_consecutive_reverts",
                u128::from(self.max_consecutive_reverts),
            ),
            (
                "max_bundles_per_block",
                u128::from(self.max_bundles_per_block),
            ),
        ] {
            if v == 0 {
                return Err(RiskConfigError {
                    key,
                    value: v.to_string(),
                    expected: "at least 1",
                });
            }
        }
        Ok(())
    }

    /// No limit at all: only the kill switch (and clears) act. What a session started without
    /// limits runs under, so that an operator can still stop it.
    pub fn unlimited() -> Self {
        Self {
            max_notional_quote: f64::INFINITY,
            max_exposure_quote: f64::INFINITY,
            daily_loss_quote: f64::INFINITY,
            max_gas_price_wei: u128::MAX,
            max_consecutive_reverts: u32::MAX,
            max_bundles_per_block: u32::MAX,
        }
    }

    /// Reads and validates a TOML file of limits (`examples/risk.toml`).
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let limits: RiskLimits =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        limits
            .validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(limits)
    }
}

/// What halts trading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripKind {
    DailyLoss,
    Reverts,
    KillSwitch,
    /// Live: the executor's balances or the operator's account differ from the books in a way
    /// the engine cannot explain (see `dexlab-live`'s reconciliation); until an operator clears it.
    Reconciliation,
}

/// Which limit refused a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Halted,
    Notional,
    Exposure,
    GasPrice,
    BundlesPerBlock,
    /// The bundle's value could not be told (no pool prices its token in the quote token).
    Unpriced,
}

/// What the manager did in a block, as a session records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RiskEvent {
    /// A bundle refused before it was sent.
    Refused { id: u64, rule: Rule, reason: String },
    /// Trading halted.
    Tripped { kind: TripKind, reason: String },
    /// A halt ended: the day changed, or an operator cleared it (`by`).
    Cleared { kind: TripKind, by: String },
}

impl RiskEvent {
    /// An operator's command (not decided by the manager): replayed from the record.
    pub fn is_command(&self) -> bool {
        matches!(
            self,
            RiskEvent::Tripped {
                kind: TripKind::KillSwitch | TripKind::Reconciliation,
                ..
            }
        ) || matches!(self, RiskEvent::Cleared { by, .. } if by != DAY_CHANGED)
    }
}

/// `by` of a daily-loss halt that the new day ended.
pub const DAY_CHANGED: &str = "the day changed";

/// A bundle as the limits see it: its input and expected output valued in the quote token, and
/// what is already held of its output token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BundleView {
    pub id: u64,
    /// `None`: not priceable.
    pub notional_quote: Option<f64>,
    /// Held of the output token plus the bundle's expected output, in quote units (0 when the
    /// output is the quote token); `None`: not priceable.
    pub exposure_after_quote: Option<f64>,
    /// Base fee (floored at the chain's minimum) plus priority fee.
    pub gas_price_wei: u128,
}

/// The limits' state through a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskManager {
    pub limits: RiskLimits,
    halts: Vec<(TripKind, String)>,
    consecutive_reverts: u32,
    day: Option<u64>,
    day_start_equity: f64,
    sent_this_block: u32,
    /// This block's events, taken by the driver.
    pub events: Vec<RiskEvent>,
}

impl RiskManager {
    pub fn new(limits: RiskLimits) -> Self {
        Self {
            limits,
            halts: Vec::new(),
            consecutive_reverts: 0,
            day: None,
            day_start_equity: 0.0,
            sent_this_block: 0,
            events: Vec::new(),
        }
    }

    /// The halts in force, oldest first.
    pub fn halts(&self) -> &[(TripKind, String)] {
        &self.halts
    }

    pub fn halted(&self) -> bool {
        !self.halts.is_empty()
    }

    fn trip(&mut self, kind: TripKind, reason: String) {
        if self.halts.iter().any(|(k, _)| *k == kind) {
            return;
        }
        self.halts.push((kind, reason.clone()));
        self.events.push(RiskEvent::Tripped { kind, reason });
    }

    fn clear_kind(&mut self, kind: TripKind, by: &str) {
        let before = self.halts.len();
        self.halts.retain(|(k, _)| *k != kind);
        if self.halts.len() != before {
            if kind == TripKind::Reverts {
                self.consecutive_reverts = 0;
            }
            self.events.push(RiskEvent::Cleared {
                kind,
                by: by.to_owned(),
            });
        }
    }

    /// Applies an operator's recorded command (a kill, or a clear).
    pub fn command(&mut self, c: &RiskEvent) {
        match c {
            RiskEvent::Tripped {
                kind: TripKind::KillSwitch,
                reason,
            } => self.trip(TripKind::KillSwitch, reason.clone()),
            RiskEvent::Tripped {
                kind: TripKind::Reconciliation,
                reason,
            } => self.trip(TripKind::Reconciliation, reason.clone()),
            RiskEvent::Cleared { kind, by } => self.clear_kind(*kind, by),
            _ => {}
        }
    }

    /// The operator's kill switch: no new bundle from the next decision on.
    pub fn kill(&mut self, reason: &str) {
        self.trip(TripKind::KillSwitch, format!("kill switch: {reason}"));
    }

    /// An operator ends a halt (`kind`), naming who.
    pub fn clear(&mut self, kind: TripKind, by: &str) {
        self.clear_kind(kind, by);
    }

    /// Whether [`RiskManager::begin_block`] needs the run's equity (a daily loss limit is set).
    pub fn needs_equity(&self) -> bool {
        self.limits.daily_loss_quote.is_finite()
    }

    /// A block begins, before its decision: `timestamp` is the block's (seconds), `equity` the
    /// run's equity at reference prices after the block's outcomes.
    pub fn begin_block(&mut self, timestamp: u64, equity: f64) {
        self.sent_this_block = 0;
        let day = timestamp / 86_400;
        if self.day != Some(day) {
            self.day = Some(day);
            self.day_start_equity = equity;
            self.clear_kind(TripKind::DailyLoss, DAY_CHANGED);
        }
        let loss = self.day_start_equity - equity;
        if loss > self.limits.daily_loss_quote {
            self.trip(
                TripKind::DailyLoss,
                format!(
                    "equity {equity:.2} is {loss:.2} below the day's start ({:.2}), over the daily loss limit of {}",
                    self.day_start_equity, self.limits.daily_loss_quote
                ),
            );
        }
    }

    /// A bundle's outcome: reverts in a row halt trading.
    pub fn outcome(&mut self, status: dexlab_strategy::FillStatus) {
        use dexlab_strategy::FillStatus::*;
        match status {
            Filled => self.consecutive_reverts = 0,
            Reverted => {
                self.consecutive_reverts += 1;
                if self.consecutive_reverts >= self.limits.max_consecutive_reverts {
                    let n = self.consecutive_reverts;
                    self.trip(
                        TripKind::Reverts,
                        format!(
                            "{n} bundles reverted in a row (limit {})",
                            self.limits.max_consecutive_reverts
                        ),
                    );
                }
            }
            Rejected | Expired => {}
        }
    }

    /// Whether a bundle may be sent; a refusal is recorded with its reason.
    pub fn admit(&mut self, b: &BundleView) -> bool {
        let refuse = |rule: Rule, reason: String| RiskEvent::Refused {
            id: b.id,
            rule,
            reason,
        };
        let l = &self.limits;
        let verdict = if let Some((_, why)) = self.halts.first() {
            Some(refuse(Rule::Halted, format!("trading is halted: {why}")))
        } else if self.sent_this_block >= l.max_bundles_per_block {
            Some(refuse(
                Rule::BundlesPerBlock,
                format!(
                    "{} bundles already sent in this block",
                    self.sent_this_block
                ),
            ))
        } else if b.gas_price_wei > l.max_gas_price_wei {
            Some(refuse(
                Rule::GasPrice,
                format!(
                    "gas price {} wei over the limit of {} wei",
                    b.gas_price_wei, l.max_gas_price_wei
                ),
            ))
        } else {
            let unpriced = || {
                Some(refuse(
                    Rule::Unpriced,
                    "its tokens cannot be valued in the quote token".into(),
                ))
            };
            match (b.notional_quote, b.exposure_after_quote) {
                (None, _) if l.max_notional_quote.is_finite() => unpriced(),
                (_, None) if l.max_exposure_quote.is_finite() => unpriced(),
                (Some(n), _) if n > l.max_notional_quote => Some(refuse(
                    Rule::Notional,
                    format!("notional {n:.2} over the limit of {}", l.max_notional_quote),
                )),
                (_, Some(e)) if e > l.max_exposure_quote => Some(refuse(
                    Rule::Exposure,
                    format!(
                        "it would hold {e:.2} of its output token, over the limit of {}",
                        l.max_exposure_quote
                    ),
                )),
                _ => None,
            }
        };
        match verdict {
            Some(e) => {
                self.events.push(e);
                false
            }
            None => {
                self.sent_this_block += 1;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dexlab_strategy::FillStatus;

    fn view(id: u64, notional: f64) -> BundleView {
        BundleView {
            id,
            notional_quote: Some(notional),
            exposure_after_quote: Some(0.0),
            gas_price_wei: 10_000_000,
        }
    }

    fn refused_rule(r: &RiskManager) -> Option<Rule> {
        r.events.iter().rev().find_map(|e| match e {
            RiskEvent::Refused { rule, .. } => Some(*rule),
            _ => None,
        })
    }

    #[test]
    fn each_per_bundle_limit_refuses_with_its_rule() {
        let mut r = RiskManager::new(RiskLimits::default());
        r.begin_block(0, 100_000.0);
        assert!(r.admit(&view(1, 9_999.0)));
        assert!(!r.admit(&view(2, 10_001.0)));
        assert_eq!(refused_rule(&r), Some(Rule::Notional));
        let mut v = view(3, 1.0);
        v.gas_price_wei = 1_000_000_001;
        assert!(!r.admit(&v));
        assert_eq!(refused_rule(&r), Some(Rule::GasPrice));
        let mut v = view(4, 1.0);
        v.exposure_after_quote = Some(25_001.0);
        assert!(!r.admit(&v));
        assert_eq!(refused_rule(&r), Some(Rule::Exposure));
        let mut v = view(5, 1.0);
        v.notional_quote = None;
        assert!(!r.admit(&v));
        assert_eq!(refused_rule(&r), Some(Rule::Unpriced));
        // One admitted so far: the second fills the block, the third is one too many.
        assert!(r.admit(&view(6, 1.0)));
        assert!(!r.admit(&view(7, 1.0)));
        assert_eq!(refused_rule(&r), Some(Rule::BundlesPerBlock));
        r.begin_block(1, 100_000.0);
        assert!(r.admit(&view(8, 1.0)));
    }

    #[test]
    fn unlimited_refuses_nothing_but_obeys_the_kill_switch() {
        let mut r = RiskManager::new(RiskLimits::unlimited());
        r.begin_block(0, 0.0);
        for id in 0..100 {
            let mut v = view(id, 1e30);
            v.notional_quote = None;
            v.exposure_after_quote = None;
            v.gas_price_wei = u128::MAX;
            assert!(r.admit(&v));
            r.outcome(FillStatus::Reverted);
        }
        r.begin_block(1, -1e30);
        assert!(!r.halted());
        r.kill("test");
        assert!(!r.admit(&view(100, 1.0)));
    }

    #[test]
    fn reverts_in_a_row_halt_until_cleared_and_a_fill_resets_the_count() {
        let mut r = RiskManager::new(RiskLimits::default());
        r.begin_block(0, 0.0);
        r.outcome(FillStatus::Reverted);
        r.outcome(FillStatus::Reverted);
        r.outcome(FillStatus::Filled);
        r.outcome(FillStatus::Reverted);
        r.outcome(FillStatus::Expired);
        r.outcome(FillStatus::Reverted);
        assert!(!r.halted());
        r.outcome(FillStatus::Reverted);
        assert!(r.halted());
        r.begin_block(86_400 * 3, 0.0);
        assert!(
            !r.admit(&view(1, 1.0)),
            "a new day does not clear a revert halt"
        );
        assert_eq!(refused_rule(&r), Some(Rule::Halted));
        r.clear(TripKind::Reverts, "operator alice");
        assert!(r.admit(&view(2, 1.0)));
        // The count starts again after a clear.
        r.outcome(FillStatus::Reverted);
        assert!(!r.halted());
    }

    #[test]
    fn the_daily_loss_halts_for_the_rest_of_the_day() {
        let mut r = RiskManager::new(RiskLimits::default());
        let day = 86_400 * 20_000;
        r.begin_block(day + 10, 50_000.0);
        r.begin_block(day + 20, 49_001.0);
        assert!(!r.halted());
        r.begin_block(day + 30, 48_999.0);
        assert!(r.halted());
        // Recovering within the day does not lift it.
        r.begin_block(day + 40, 50_000.0);
        assert!(!r.admit(&view(1, 1.0)));
        // The next day starts from its own first equity.
        r.begin_block(day + 86_400, 48_000.0);
        assert!(!r.halted());
        assert!(r.admit(&view(2, 1.0)));
        assert!(r.events.iter().any(|e| matches!(
            e,
            RiskEvent::Cleared { kind: TripKind::DailyLoss, by } if by == DAY_CHANGED
        )));
    }

    #[test]
    fn commands_replay_and_only_commands_count_as_such() {
        let mut live = RiskManager::new(RiskLimits::default());
        live.begin_block(0, 0.0);
        live.kill("operator pressed it");
        assert!(!live.admit(&view(1, 1.0)));
        live.clear(TripKind::KillSwitch, "operator bob");
        let commands: Vec<_> = live
            .events
            .iter()
            .filter(|e| e.is_command())
            .cloned()
            .collect();
        assert_eq!(commands.len(), 2);
        let mut again = RiskManager::new(RiskLimits::default());
        again.begin_block(0, 0.0);
        again.command(&commands[0]);
        assert!(!again.admit(&view(1, 1.0)));
        again.command(&commands[1]);
        assert!(again.admit(&view(2, 1.0)));
        assert!(
            !RiskEvent::Cleared {
                kind: TripKind::DailyLoss,
                by: DAY_CHANGED.into()
            }
            .is_command()
        );
    }

    #[test]
    fn limits_are_validated_by_key_and_the_example_lists_every_key() {
        let l = RiskLimits {
            max_consecutive_reverts: 0,
            ..RiskLimits::default()
        };
        assert_eq!(l.validate().unwrap_err().key, "max_consecutive_reverts");
        let l = RiskLimits {
            daily_loss_quote: f64::NAN,
            ..RiskLimits::default()
        };
        assert_eq!(l.validate().unwrap_err().key, "daily_loss_quote");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/risk.toml");
        let example = RiskLimits::load(&path).unwrap();
        assert_eq!(
            example,
            RiskLimits::default(),
            "examples/risk.toml states the defaults"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let keys = toml::to_string(&RiskLimits::default()).unwrap();
        for line in keys.lines() {
            let key = line.split(" =").next().unwrap();
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} ="))),
                "examples/risk.toml lacks `{key}`"
            );
        }
        assert!(toml::from_str::<RiskLimits>("max_notional = 5").is_err());
    }
}
