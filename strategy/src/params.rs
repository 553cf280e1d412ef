//! Typed, bounded strategy parameters: what a strategy declares, what the optimiser searches and
//! what an operator promotes.
//!
//! [`Params`] are made only by a [`ParamSpace`] (its defaults, a decoded genome, or validated
//! overrides) and always hold exactly one value per declared parameter. So an unknown name in user
//! input is an error naming it, and a strategy asking for a name its space does not declare is a
//! bug that panics, rather than trading on a made-up 0.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    Int,
    Float,
    Bool,
}

/// One parameter a strategy declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    /// Inclusive bounds (0 and 1 for booleans).
    pub lo: f64,
    pub hi: f64,
    pub default: f64,
    /// Searched on a log scale (both bounds must be positive).
    pub log_scale: bool,
    pub unit: &'static str,
    pub help: &'static str,
}

impl ParamSpec {
    /// Maps a gene in [0, 1] to a value of this parameter within its bounds.
    pub fn from_unit(&self, u: f64) -> f64 {
        let u = if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let v = if self.log_scale {
            (self.lo.ln() + u * (self.hi.ln() - self.lo.ln())).exp()
        } else {
            self.lo + u * (self.hi - self.lo)
        };
        self.snap(v)
    }

    /// Maps a value to its gene in [0, 1].
    pub fn to_unit(&self, v: f64) -> f64 {
        if self.hi <= self.lo {
            return 0.0;
        }
        let u = if self.log_scale {
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        u.clamp(0.0, 1.0)
    }

    /// Rounds to the parameter's type and clamps to its bounds.
    fn snap(&self, v: f64) -> f64 {
        let v = v.clamp(self.lo, self.hi);
        match self.kind {
            // 12 significant digits: a genome round trip of 0.5 gives 0.5, not 0.49999999999999994.
            ParamKind::Float => format!("{v:.11e}").parse().unwrap_or(v),
            ParamKind::Int => v.round().clamp(self.lo, self.hi),
            ParamKind::Bool => {
                if v >= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// `gas_price_multiplier`: the total gas price bid, as a multiple of the base fee.
pub fn gas_price_multiplier(default: f64) -> ParamSpec {
    ParamSpec {
        name: "gas_price_multiplier",
        kind: ParamKind::Float,
        lo: 1.0,
        hi: 10.0,
        default,
        log_scale: true,
        unit: "x base fee",
        help: "total gas price bid; the priority fee is base fee x (multiplier - 1)",
    }
}

/// `trade_fraction`: the share of the quote balance a long/flat strategy spends on an entry.
pub fn trade_fraction() -> ParamSpec {
    ParamSpec {
        name: "trade_fraction",
        kind: ParamKind::Float,
        lo: 0.01,
        hi: 1.0,
        default: 0.25,
        log_scale: true,
        unit: "fraction of quote balance",
        help: "size of an entry",
    }
}

/// `max_slippage_bps`: how far below its quote a single swap may fill before it reverts.
pub fn max_slippage_bps() -> ParamSpec {
    ParamSpec {
        name: "max_slippage_bps",
        kind: ParamKind::Float,
        lo: 1.0,
        hi: 200.0,
        default: 30.0,
        log_scale: true,
        unit: "bps",
        help: "the bundle reverts if it gets less than expected minus this",
    }
}

/// A strategy's parameter space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamSpace {
    pub specs: Vec<ParamSpec>,
}

/// Why a parameter set was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("unknown parameter `{name}` (this strategy has: {known})")]
    Unknown { name: String, known: String },
    #[error("parameter `{name}` has no value (this strategy has: {known})")]
    Missing { name: String, known: String },
    #[error(
        "parameters must be a JSON object of name: value pairs, got {value} (this strategy has: \
         {known}; `{{}}` keeps every default)"
    )]
    NotAnObject { value: String, known: String },
    #[error(
        "`{name}` is not a strategy parameter any more: it is a fact of the chain, set it as \
         `{config_key}` in the experiment config"
    )]
    Moved {
        name: String,
        config_key: &'static str,
    },
    #[error("parameter `{name}` = {value} is outside [{lo}, {hi}]")]
    OutOfBounds {
        name: String,
        value: f64,
        lo: f64,
        hi: f64,
    },
    #[error("parameter `{name}` must be {kind:?}, got {value}")]
    WrongType {
        name: String,
        kind: ParamKind,
        value: String,
    },
}

impl ParamSpace {
    pub fn new(specs: Vec<ParamSpec>) -> Self {
        Self { specs }
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The declared names, comma-separated, for error messages.
    fn known(&self) -> String {
        self.specs
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks that `p` holds exactly this space's parameters, naming the first that differs.
    pub fn check(&self, p: &Params) -> Result<(), ParamError> {
        if let Some(s) = self.specs.iter().find(|s| !p.values.contains_key(s.name)) {
            return Err(ParamError::Missing {
                name: s.name.to_owned(),
                known: self.known(),
            });
        }
        if let Some(name) = p
            .values
            .keys()
            .find(|n| !self.specs.iter().any(|s| s.name == **n))
        {
            return Err(ParamError::Unknown {
                name: (*name).to_owned(),
                known: self.known(),
            });
        }
        Ok(())
    }

    pub fn defaults(&self) -> Params {
        Params {
            values: self.specs.iter().map(|s| (s.name, s.default)).collect(),
        }
    }

    /// Decodes a genome (one gene in [0, 1] per parameter, in declaration order). A parameter
    /// past the end of a short genome keeps its default, so the result is always complete.
    pub fn decode(&self, genes: &[f64]) -> Params {
        Params {
            values: self
                .specs
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name, genes.get(i).map_or(s.default, |&g| s.from_unit(g))))
                .collect(),
        }
    }

    pub fn encode(&self, p: &Params) -> Vec<f64> {
        self.specs
            .iter()
            .map(|s| s.to_unit(p.get(s.name)))
            .collect()
    }

    /// Validates a JSON object of overrides on top of the defaults (`{}`: none): unknown names,
    /// wrong types and values out of bounds are errors that name the parameter, and anything but
    /// an object (`null` included) is refused rather than read as "no overrides".
    pub fn parse(&self, overrides: &serde_json::Value) -> Result<Params, ParamError> {
        let mut p = self.defaults();
        let serde_json::Value::Object(obj) = overrides else {
            return Err(ParamError::NotAnObject {
                value: overrides.to_string(),
                known: self.known(),
            });
        };
        for (name, v) in obj {
            let Some(spec) = self.specs.iter().find(|s| s.name == name) else {
                if name == "latency_blocks" {
                    return Err(ParamError::Moved {
                        name: name.clone(),
                        config_key: "backtest.latency_blocks",
                    });
                }
                return Err(ParamError::Unknown {
                    name: name.clone(),
                    known: self.known(),
                });
            };
            let wrong = || ParamError::WrongType {
                name: name.clone(),
                kind: spec.kind,
                value: v.to_string(),
            };
            let x = match (spec.kind, v) {
                (ParamKind::Bool, serde_json::Value::Bool(b)) => f64::from(u8::from(*b)),
                (ParamKind::Bool, _) => return Err(wrong()),
                (ParamKind::Int, serde_json::Value::Number(n)) => {
                    let x = n.as_f64().ok_or_else(wrong)?;
                    if x.fract() != 0.0 {
                        return Err(wrong());
                    }
                    x
                }
                (ParamKind::Float, serde_json::Value::Number(n)) => n.as_f64().ok_or_else(wrong)?,
                _ => return Err(wrong()),
            };
            if !(spec.lo..=spec.hi).contains(&x) {
                return Err(ParamError::OutOfBounds {
                    name: name.clone(),
                    value: x,
                    lo: spec.lo,
                    hi: spec.hi,
                });
            }
            p.values.insert(spec.name, x);
        }
        Ok(p)
    }
}

/// Values of a strategy's parameters, by name: one for every parameter of the [`ParamSpace`] that
/// made them (see the module docs). Integers and booleans are held as exact f64s.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    values: BTreeMap<&'static str, f64>,
}

impl Params {
    /// The value of `name`.
    ///
    /// # Panics
    ///
    /// When `name` is not a parameter of the space these came from. Only code asks for a name, so
    /// that is a bug in the strategy; `registry`'s tests build every strategy from its defaults,
    /// which finds it.
    pub fn get(&self, name: &str) -> f64 {
        match self.values.get(name) {
            Some(&v) => v,
            None => panic!(
                "`{name}` is not a parameter of this strategy (it has: {})",
                self.values.keys().copied().collect::<Vec<_>>().join(", ")
            ),
        }
    }

    pub fn get_int(&self, name: &str) -> i64 {
        self.get(name) as i64
    }

    pub fn get_bool(&self, name: &str) -> bool {
        self.get(name) >= 0.5
    }

    /// Every parameter and its value, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.values.iter().map(|(&k, &v)| (k, v))
    }

    /// As a JSON object, with integers and booleans typed.
    pub fn to_json(&self, space: &ParamSpace) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for s in &space.specs {
            let v = self.get(s.name);
            let j = match s.kind {
                ParamKind::Int => serde_json::json!(v as i64),
                ParamKind::Bool => serde_json::json!(v >= 0.5),
                ParamKind::Float => serde_json::json!(v),
            };
            m.insert(s.name.to_owned(), j);
        }
        serde_json::Value::Object(m)
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in &self.values {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> ParamSpace {
        ParamSpace::new(vec![
            ParamSpec {
                name: "n",
                kind: ParamKind::Int,
                lo: 1.0,
                hi: 10.0,
                default: 3.0,
                log_scale: false,
                unit: "blocks",
                help: "",
            },
            ParamSpec {
                name: "x",
                kind: ParamKind::Float,
                lo: 0.01,
                hi: 100.0,
                default: 1.0,
                log_scale: true,
                unit: "",
                help: "",
            },
        ])
    }

    #[test]
    fn genes_map_into_bounds_with_types() {
        let s = space();
        for g in [0.0, 0.1, 0.5, 0.99, 1.0, -3.0, 7.0, f64::NAN] {
            let p = s.decode(&[g, g]);
            let n = p.get("n");
            assert!((1.0..=10.0).contains(&n) && n.fract() == 0.0, "{g} -> {n}");
            let x = p.get("x");
            assert!((0.01..=100.0).contains(&x), "{g} -> {x}");
        }
        let d = s.defaults();
        let back = s.decode(&s.encode(&d));
        assert_eq!(back.get("n"), 3.0);
        assert!((back.get("x") - 1.0).abs() < 1e-12);
    }

    #[test]
    fn parse_names_the_bad_parameter() {
        let s = space();
        let e = s.parse(&serde_json::json!({"n": 11})).unwrap_err();
        assert!(e.to_string().contains("`n` = 11"), "{e}");
        let e = s.parse(&serde_json::json!({"m": 1})).unwrap_err();
        assert!(e.to_string().contains("unknown parameter `m`"), "{e}");
        let e = s
            .parse(&serde_json::json!({"latency_blocks": 2}))
            .unwrap_err();
        assert!(e.to_string().contains("`backtest.latency_blocks`"), "{e}");
        let e = s.parse(&serde_json::json!({"n": 1.5})).unwrap_err();
        assert!(e.to_string().contains("must be Int"), "{e}");
        let p = s.parse(&serde_json::json!({"x": 2.5})).unwrap();
        assert_eq!(p.get("x"), 2.5);
        assert_eq!(p.get("n"), 3.0);
    }

    #[test]
    #[should_panic(expected = "`nope` is not a parameter")]
    fn get_of_an_undeclared_name_is_a_bug_not_zero() {
        space().defaults().get("nope");
    }

    #[test]
    fn overrides_that_are_not_an_object_are_refused() {
        let s = space();
        // `null` too: `--params null` is a mistake, not a way of asking for the defaults (which
        // `{}` is).
        for v in [
            serde_json::json!([1, 2, 3]),
            serde_json::json!("n=2"),
            serde_json::json!(3),
            serde_json::Value::Null,
        ] {
            let e = s.parse(&v).unwrap_err().to_string();
            assert!(e.contains("must be a JSON object"), "{v}: {e}");
            assert!(e.contains(&format!("got {v}")), "{v}: {e}");
        }
        assert_eq!(s.parse(&serde_json::json!({})).unwrap(), s.defaults());
    }

    #[test]
    fn check_names_what_is_missing_or_foreign() {
        let s = space();
        s.check(&s.defaults()).unwrap();
        let other = ParamSpace::new(vec![s.specs[0].clone()]);
        let e = s.check(&other.defaults()).unwrap_err();
        assert!(e.to_string().contains("`x` has no value"), "{e}");
        let e = other.check(&s.defaults()).unwrap_err();
        assert!(e.to_string().contains("unknown parameter `x`"), "{e}");
    }

    #[test]
    fn a_short_genome_keeps_defaults() {
        let s = space();
        let p = s.decode(&[1.0]);
        s.check(&p).unwrap();
        assert_eq!((p.get("n"), p.get("x")), (10.0, 1.0));
    }
}
