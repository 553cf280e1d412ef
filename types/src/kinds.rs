//! Names that are stored, printed and parsed as text: every one an enum with its one spelling.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A name that is none of an enum's: says which enum, what was given and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What was being parsed (`"model"`, `"experiment status"`, …).
    pub what: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}`, expected {}",
            self.what,
            self.value,
            self.expected.join("|")
        )
    }
}

impl std::error::Error for ParseError {}

/// An enum of unit variants that is text outside the program: `as_str` gives its one spelling
/// (what serde writes and reads, and what the store's text columns hold), `FromStr` also takes
/// any case and the listed aliases (for command-line flags).
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident as $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];
            /// The spellings of [`Self::ALL`].
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The one spelling: stored, serialised and printed.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The variant spelled exactly `name` (as [`Self::as_str`] gives it).
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseError;

            fn from_str(s: &str) -> Result<Self, ParseError> {
                match s.to_ascii_lowercase().as_str() {
                    $($text $(| $alias)* => Ok($name::$variant),)+
                    _ => Err(ParseError {
                        what: $what,
                        value: s.to_owned(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::from_name(&text).ok_or_else(|| D::Error::unknown_variant(&text, Self::NAMES))
            }
        }
    };
}

text_enum! {
    /// Where an experiment stands. Stored in the `experiments.status` column as these words.
    pub enum ExperimentStatus as "experiment status" {
        /// Created, or resumed, and not ended (its process may since have died: see `pid`/`host`).
        Running = "running",
        /// Finished: every fold stored, with a summary.
        Done = "done",
        /// Ended by an error, whose reason is stored with it.
        Failed = "failed",
        /// Stopped by a signal (Ctrl-C, SIGTERM); rerunning its command resumes it.
        Interrupted = "interrupted",
    }
}

impl ExperimentStatus {
    /// Whether the experiment has ended, one way or another.
    pub fn is_ended(self) -> bool {
        self != ExperimentStatus::Running
    }
}

text_enum! {
    /// How a trading session carries out its bundles (the `sessions.mode` column; the same words
    /// as the `mode` of a session folder's `session.json`).
    pub enum SessionMode as "session mode" {
        /// Simulated fills at the node's head.
        Paper = "paper",
        /// Signed transactions through the executor contract.
        Live = "live",
    }
}

text_enum! {
    /// Where a paper or live trading session stands (the `sessions.status` column).
    pub enum SessionStatus as "session status" {
        /// Started, or resumed, and not ended (its process may since have died: see `pid`/`host`).
        Running = "running",
        /// Ended on purpose: a signal, or the block budget spent; resuming its folder continues it.
        Stopped = "stopped",
        /// Ended by an error, whose reason is stored with it.
        Failed = "failed",
    }
}

impl SessionStatus {
    /// Whether the session has ended, one way or another.
    pub fn is_ended(self) -> bool {
        self != SessionStatus::Running
    }
}

text_enum! {
    /// One optimisation or baseline of a walk-forward fold (the `runs.kind` column).
    pub enum RunKind as "run kind" {
        /// The genetic optimiser's best parameters.
        Ga = "ga",
        /// The best of as many random parameter sets as the GA evaluated.
        RandomSearch = "random_search",
        /// The strategy's default parameters.
        Default = "default",
        /// No trading at all.
        NoTrade = "no_trade",
    }
}

text_enum! {
    /// A predictive model's architecture.
    pub enum ModelKind as "model" {
        Linear = "linear",
        Mlp = "mlp",
        Gru = "gru",
        Transformer = "transformer",
    }
}

impl ModelKind {
    /// Whether the model reads a window of past rows rather than one row.
    pub fn is_sequence(self) -> bool {
        matches!(self, ModelKind::Gru | ModelKind::Transformer)
    }
}

text_enum! {
    /// What a predictive model's target is: a real number (MSE loss) or a 0/1 event (BCE with
    /// logits).
    pub enum Task as "task" {
        Regression = "regression" | "reg",
        Classification = "classification" | "class" | "clf",
    }
}

text_enum! {
    /// A reinforcement-learning algorithm.
    pub enum AgentKind as "agent" {
        Dqn = "dqn",
        Ppo = "ppo",
    }
}

text_enum! {
    /// The `task` of a model-registry row: a predictive model's [`Task`], or `rl` for an agent.
    pub enum RegisteredTask as "task" {
        Regression = "regression",
        Classification = "classification",
        Rl = "rl",
    }
}

impl From<Task> for RegisteredTask {
    fn from(t: Task) -> Self {
        match t {
            Task::Regression => RegisteredTask::Regression,
            Task::Classification => RegisteredTask::Classification,
        }
    }
}

/// The `kind` of a model-registry row: a predictive model's architecture or an RL algorithm,
/// written as the bare name (`gru`, `dqn`); the two sets of names do not overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegisteredKind {
    Model(ModelKind),
    Agent(AgentKind),
}

impl RegisteredKind {
    pub const NAMES: &'static [&'static str] =
        &["linear", "mlp", "gru", "transformer", "dqn", "ppo"];

    pub const fn as_str(self) -> &'static str {
        match self {
            RegisteredKind::Model(m) => m.as_str(),
            RegisteredKind::Agent(a) => a.as_str(),
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        ModelKind::from_name(name)
            .map(RegisteredKind::Model)
            .or_else(|| AgentKind::from_name(name).map(RegisteredKind::Agent))
    }

    /// Whether this is an RL agent (whose registry task is `rl`).
    pub fn is_agent(self) -> bool {
        matches!(self, RegisteredKind::Agent(_))
    }
}

impl From<ModelKind> for RegisteredKind {
    fn from(k: ModelKind) -> Self {
        RegisteredKind::Model(k)
    }
}

impl From<AgentKind> for RegisteredKind {
    fn from(k: AgentKind) -> Self {
        RegisteredKind::Agent(k)
    }
}

impl fmt::Display for RegisteredKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for RegisteredKind {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::from_name(&s.to_ascii_lowercase()).ok_or_else(|| ParseError {
            what: "model kind",
            value: s.to_owned(),
            expected: Self::NAMES,
        })
    }
}

impl Serialize for RegisteredKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RegisteredKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_name(&text).ok_or_else(|| D::Error::unknown_variant(&text, Self::NAMES))
    }
}
