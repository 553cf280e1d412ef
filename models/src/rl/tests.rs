//! Both agents on two toy environments driven push-style, as the backtester will drive them:
//! a contextual bandit (one-step episodes) and a chain that needs credit assignment over four
//! steps. Plus determinism, save/load and configuration checks.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// An environment the test loop steps; the agent never sees this trait.
trait Env {
    fn reset(&mut self) -> Vec<f32>;
    /// Reward, next observation, how the step ended.
    fn step(&mut self, action: usize) -> (f32, Vec<f32>, StepEnd);
}

/// obs = [x], x = ±1 at random; action 0 is right for x < 0, action 1 for x > 0.
struct Bandit {
    rng: ChaCha8Rng,
    x: f32,
}

impl Bandit {
    fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            x: 0.0,
        }
    }

    fn best(x: f32) -> usize {
        usize::from(x > 0.0)
    }
}

impl Env for Bandit {
    fn reset(&mut self) -> Vec<f32> {
        self.x = if self.rng.random::<bool>() { 1.0 } else { -1.0 };
        vec![self.x]
    }

    fn step(&mut self, action: usize) -> (f32, Vec<f32>, StepEnd) {
        let r = if action == Self::best(self.x) {
            1.0
        } else {
            -1.0
        };
        (r, vec![self.x], StepEnd::Terminal)
    }
}

/// Positions 0..=4, one-hot observed, start at 0. The action that moves right alternates with
/// the position (1 at even positions, 0 at odd ones; the other moves left, floored at 0), so no
/// constant policy gets anywhere. Reaching 4 pays 1 and ends; every other step costs 0.01;
/// episodes are cut (truncated) after 20 steps. The best return is 0.97 (four steps right).
struct Chain {
    pos: usize,
    t: usize,
}

const CHAIN_GOAL: usize = 4;
const CHAIN_LIMIT: usize = 20;
const CHAIN_BEST: f32 = 0.97;

impl Chain {
    fn new() -> Self {
        Self { pos: 0, t: 0 }
    }

    fn obs(&self) -> Vec<f32> {
        let mut v = vec![0.0; CHAIN_GOAL + 1];
        v[self.pos] = 1.0;
        v
    }
}

impl Env for Chain {
    fn reset(&mut self) -> Vec<f32> {
        self.pos = 0;
        self.t = 0;
        self.obs()
    }

    fn step(&mut self, action: usize) -> (f32, Vec<f32>, StepEnd) {
        let right = usize::from(self.pos.is_multiple_of(2));
        self.pos = if action == right {
            self.pos + 1
        } else {
            self.pos.saturating_sub(1)
        };
        self.t += 1;
        if self.pos == CHAIN_GOAL {
            (1.0, self.obs(), StepEnd::Terminal)
        } else if self.t >= CHAIN_LIMIT {
            (-0.01, self.obs(), StepEnd::Truncated)
        } else {
            (-0.01, self.obs(), StepEnd::Continues)
        }
    }
}

/// `steps` transitions of training, episodes back to back.
fn train(agent: &mut dyn Agent, env: &mut dyn Env, steps: usize) {
    let mut obs = env.reset();
    for _ in 0..steps {
        let a = agent.act(&obs).unwrap();
        let (r, next, end) = env.step(a);
        agent.feedback(r, &next, end).unwrap();
        obs = if end.ends_episode() {
            env.reset()
        } else {
            next
        };
    }
}

/// Mean return of `episodes` episodes under `policy`.
fn score(env: &mut dyn Env, episodes: usize, mut policy: impl FnMut(&[f32]) -> usize) -> f32 {
    let mut total = 0.0;
    for _ in 0..episodes {
        let mut obs = env.reset();
        loop {
            let (r, next, end) = env.step(policy(&obs));
            total += r;
            if end.ends_episode() {
                break;
            }
            obs = next;
        }
    }
    total / episodes as f32
}

fn random_score(env: &mut dyn Env, n_actions: usize) -> f32 {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    score(env, 500, |_| rng.random_range(0..n_actions))
}

/// Greedy optimal actions out of 200 fresh contexts.
fn bandit_optimal(agent: &dyn Agent) -> usize {
    let mut env = Bandit::new(1234);
    (0..200)
        .filter(|_| {
            let obs = env.reset();
            agent.greedy(&obs).unwrap() == Bandit::best(obs[0])
        })
        .count()
}

/// ≥ 95 % optimal greedy actions, reported next to the random policy's mean reward.
fn assert_solves_bandit(agent: &dyn Agent) {
    let mut env = Bandit::new(1234);
    let optimal = bandit_optimal(agent);
    let greedy = score(&mut env, 200, |o| agent.greedy(o).unwrap());
    let random = random_score(&mut Bandit::new(1234), 2);
    assert!(
        optimal >= 190,
        "{} greedy optimal {optimal}/200 (mean reward {greedy:.3}) vs random policy mean reward \
         {random:.3}; stats {:?}",
        agent.kind(),
        agent.stats()
    );
}

/// The greedy policy's return from the start (deterministic: one episode).
fn chain_return(agent: &dyn Agent) -> f32 {
    score(&mut Chain::new(), 1, |o| agent.greedy(o).unwrap())
}

fn assert_solves_chain(agent: &dyn Agent) {
    let greedy = chain_return(agent);
    let random = random_score(&mut Chain::new(), 2);
    assert!(
        (greedy - CHAIN_BEST).abs() < 1e-6,
        "{} greedy return {greedy:.3} (best {CHAIN_BEST}) vs random policy {random:.3}; stats {:?}",
        agent.kind(),
        agent.stats()
    );
}

fn dqn_bandit() -> DqnConfig {
    DqnConfig {
        hidden: vec![32, 32],
        batch_size: 32,
        buffer_size: 1_000,
        learning_starts: 64,
        target_update_every: 50,
        epsilon_decay_steps: 300,
        ..DqnConfig::default()
    }
}

fn ppo_bandit() -> PpoConfig {
    PpoConfig {
        hidden: vec![32, 32],
        lr: 3e-3,
        n_steps: 64,
        batch_size: 32,
        epochs: 4,
        ..PpoConfig::default()
    }
}

#[test]
fn dqn_learns_the_bandit() {
    let mut agent = DqnAgent::new(dqn_bandit(), 1, 2, 1).unwrap();
    assert!(bandit_optimal(&agent) < 190, "solved before training");
    train(&mut agent, &mut Bandit::new(5), 600);
    assert_solves_bandit(&agent);
}

#[test]
fn ppo_learns_the_bandit() {
    let mut agent = PpoAgent::new(ppo_bandit(), 1, 2, 1).unwrap();
    assert!(bandit_optimal(&agent) < 190, "solved before training");
    train(&mut agent, &mut Bandit::new(5), 1_024);
    assert_solves_bandit(&agent);
}

#[test]
fn dqn_solves_the_chain() {
    let cfg = DqnConfig {
        hidden: vec![32, 32],
        gamma: 0.9,
        batch_size: 32,
        buffer_size: 5_000,
        learning_starts: 200,
        target_update_every: 100,
        epsilon_decay_steps: 1_500,
        ..DqnConfig::default()
    };
    let mut agent = DqnAgent::new(cfg, CHAIN_GOAL + 1, 2, 3).unwrap();
    assert!(chain_return(&agent) < 0.0, "solved before training");
    train(&mut agent, &mut Chain::new(), 3_000);
    assert_solves_chain(&agent);
}

/// One state, reward 1 on every step, episodes cut after 5 steps. Bootstrapping through the
/// cut, Q converges to 1 / (1 − γ) = 10; treating the cut as terminal, the squared loss would
/// settle it at 1 / (1 − 0.8·γ) ≈ 3.6 (a cut after one step in five, in a state that looks like
/// all the others).
#[test]
fn dqn_values_a_truncated_episode_as_going_on() {
    struct Steady(usize);
    impl Env for Steady {
        fn reset(&mut self) -> Vec<f32> {
            self.0 = 0;
            vec![1.0]
        }
        fn step(&mut self, _: usize) -> (f32, Vec<f32>, StepEnd) {
            self.0 += 1;
            let end = if self.0 == 5 {
                StepEnd::Truncated
            } else {
                StepEnd::Continues
            };
            (1.0, vec![1.0], end)
        }
    }
    let cfg = DqnConfig {
        hidden: vec![8],
        gamma: 0.9,
        lr: 3e-3,
        batch_size: 32,
        buffer_size: 1_000,
        learning_starts: 100,
        target_update_every: 50,
        epsilon_decay_steps: 100,
        loss: DqnLoss::Mse,
        ..DqnConfig::default()
    };
    let mut agent = DqnAgent::new(cfg, 1, 2, 5).unwrap();
    train(&mut agent, &mut Steady(0), 3_000);
    let q = agent.q_row(&[1.0]);
    for (a, v) in q.iter().enumerate() {
        assert!(
            (9.0..=11.0).contains(v),
            "Q(s, {a}) = {v}, want about 10 (terminal treatment gives about 3.6)"
        );
    }
}

#[test]
fn ppo_solves_the_chain() {
    let cfg = PpoConfig {
        hidden: vec![32, 32],
        lr: 3e-3,
        gamma: 0.95,
        n_steps: 128,
        batch_size: 32,
        epochs: 4,
        ..PpoConfig::default()
    };
    let mut agent = PpoAgent::new(cfg, CHAIN_GOAL + 1, 2, 3).unwrap();
    assert!(chain_return(&agent) < 0.0, "solved before training");
    train(&mut agent, &mut Chain::new(), 4_096);
    assert_solves_chain(&agent);
}

/// A short bandit run of `config`, saved into `dir`; returns the greedy actions on a grid.
fn run_and_save(config: &AgentConfig, seed: u64, dir: &Path) -> Vec<usize> {
    let mut agent = new_agent(config, 1, 2, seed).unwrap();
    train(agent.as_mut(), &mut Bandit::new(5), 300);
    agent.save(dir).unwrap();
    grid_actions(agent.as_ref())
}

fn grid_actions(agent: &dyn Agent) -> Vec<usize> {
    (-20..=20)
        .map(|i| agent.greedy(&[i as f32 / 10.0]).unwrap())
        .collect()
}

fn weights(config: &AgentConfig, dir: &Path) -> Vec<u8> {
    let file = match config.kind() {
        AgentKind::Dqn => DQN_WEIGHTS,
        AgentKind::Ppo => PPO_WEIGHTS,
    };
    std::fs::read(dir.join(file)).unwrap()
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let tmp = tempfile::tempdir().unwrap();
    for config in [
        AgentConfig::Dqn(dqn_bandit()),
        AgentConfig::Ppo(ppo_bandit()),
    ] {
        let dir = |name: &str| tmp.path().join(format!("{}-{name}", config.kind()));
        let a = run_and_save(&config, 7, &dir("a"));
        let b = run_and_save(&config, 7, &dir("b"));
        run_and_save(&config, 8, &dir("c"));
        assert_eq!(a, b, "{}: greedy actions", config.kind());
        let (wa, wb, wc) = (
            weights(&config, &dir("a")),
            weights(&config, &dir("b")),
            weights(&config, &dir("c")),
        );
        assert!(
            wa == wb,
            "{}: same seed, different weight bytes",
            config.kind()
        );
        assert!(
            wa != wc,
            "{}: seeds 7 and 8 gave the same weights",
            config.kind()
        );
        let json = |d: &str| std::fs::read(dir(d).join(AGENT_CONFIG)).unwrap();
        assert_eq!(json("a"), json("b"), "{}: config.json", config.kind());
    }
}

#[test]
fn save_then_load_acts_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    for config in [
        AgentConfig::Dqn(dqn_bandit()),
        AgentConfig::Ppo(ppo_bandit()),
    ] {
        let dir = tmp.path().join(config.kind().as_str());
        let mut agent = new_agent(&config, 1, 2, 11).unwrap();
        train(agent.as_mut(), &mut Bandit::new(5), 300);
        agent.save(&dir).unwrap();
        let loaded = load_agent(&dir).unwrap();
        assert_eq!(loaded.kind(), config.kind());
        assert_eq!(grid_actions(loaded.as_ref()), grid_actions(agent.as_ref()));
        assert_eq!(loaded.stats(), agent.stats());
        // Saving the reloaded agent writes the same weights.
        let again = tmp.path().join(format!("{}-again", config.kind()));
        loaded.save(&again).unwrap();
        assert!(weights(&config, &dir) == weights(&config, &again));
    }
    // Exact Q-values, not only their argmax.
    let dir = tmp.path().join("dqn");
    let a = DqnAgent::load(&dir).unwrap();
    let b = DqnAgent::load(&dir).unwrap();
    assert_eq!(a.q_values(&[0.3]).unwrap(), b.q_values(&[0.3]).unwrap());
    assert!(
        PpoAgent::load(&dir).is_err(),
        "a DQN directory loaded as PPO"
    );
}

#[test]
fn config_errors_name_the_key() {
    let dqn = |s: &str| DqnConfig::from_toml(s, "a.toml").unwrap_err().to_string();
    let ppo = |s: &str| PpoConfig::from_toml(s, "a.toml").unwrap_err().to_string();
    assert!(dqn("gamma = 1.5").contains("a.toml: key `gamma`"));
    assert!(dqn("gamma = -0.1").contains("key `gamma`"));
    assert!(dqn("batch_size = 0").contains("key `batch_size`"));
    assert!(dqn("buffer_size = 8\nbatch_size = 16").contains("key `buffer_size`"));
    assert!(dqn("epsilon_end = 2.0").contains("key `epsilon_end`"));
    assert!(dqn("target_update_every = 0").contains("key `target_update_every`"));
    assert!(dqn("hidden = []").contains("key `hidden`"));
    assert!(dqn("loss = \"l1\"").contains("l1"));
    assert!(dqn("batch_sise = 3").contains("batch_sise"));
    assert!(dqn("lr = \"fast\"").contains("lr"));
    assert!(ppo("gae_lambda = 1.2").contains("key `gae_lambda`"));
    assert!(ppo("clip_range = 0").contains("key `clip_range`"));
    assert!(ppo("n_steps = 16\nbatch_size = 32").contains("key `batch_size`"));
    assert!(ppo("epochs = 0").contains("key `epochs`"));
    assert!(ppo("entropy_coef = -1").contains("key `entropy_coef`"));
    assert!(ppo("gamma = 2").contains("key `gamma`"));
    assert!(ppo("epsilon_start = 1.0").contains("epsilon_start"));
    let c = DqnConfig::from_toml("gamma = 0.5\nloss = \"mse\"\nhidden = [8]", "a.toml").unwrap();
    assert_eq!((c.gamma, c.loss, c.hidden), (0.5, DqnLoss::Mse, vec![8]));
    assert_eq!(c.batch_size, DqnConfig::default().batch_size);
    let c = AgentConfig::from_toml(AgentKind::Ppo, "n_steps = 256", "a.toml").unwrap();
    assert_eq!(c.kind(), AgentKind::Ppo);
    assert!(
        DqnAgent::new(DqnConfig::default(), 0, 2, 0)
            .unwrap_err()
            .to_string()
            .contains("key `obs_dim`")
    );
    assert!(
        PpoAgent::new(PpoConfig::default(), 3, 1, 0)
            .unwrap_err()
            .to_string()
            .contains("key `n_actions`")
    );
    assert_eq!("PPO".parse::<AgentKind>().unwrap(), AgentKind::Ppo);
}

/// Sizes that no machine can allocate (the replay buffer, a rollout, a layer, an observation
/// window) are refused with their key at load, instead of aborting the process later.
#[test]
fn huge_sizes_are_refused_with_their_key() {
    let dqn = |s: &str| DqnConfig::from_toml(s, "a.toml").unwrap_err().to_string();
    let ppo = |s: &str| PpoConfig::from_toml(s, "a.toml").unwrap_err().to_string();
    let big = "9223372036854775807";
    for key in ["buffer_size", "batch_size"] {
        let e = dqn(&format!("{key} = {big}"));
        assert!(e.contains(&format!("key `{key}`")), "{key}: {e}");
    }
    for key in ["n_steps", "epochs"] {
        let e = ppo(&format!("{key} = {big}"));
        assert!(e.contains(&format!("key `{key}`")), "{key}: {e}");
    }
    assert!(dqn(&format!("hidden = [{big}]")).contains("key `hidden`"));
    assert!(ppo("hidden = [100000000]").contains("key `hidden`"));
    assert!(dqn("lr = nan").contains("key `lr`"));
    assert!(dqn("epsilon_start = nan").contains("key `epsilon_start`"));

    let env = |s: &str| {
        let c: env::RlConfig = toml::from_str(s).unwrap();
        c.validate("r.toml").unwrap_err().to_string()
    };
    assert!(env(&format!("[env]\nwindow = {big}")).contains("key `env.window`"));
    assert!(env(&format!("episodes = {big}")).contains("key `episodes`"));
}
