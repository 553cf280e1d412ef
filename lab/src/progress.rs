//! How long work tells its caller what it is doing: events through [`Progress`], never printed
//! by the library. The CLI turns them into its progress bar and stderr lines; the server will
//! push them to its clients.

/// Something a long-running call wants its caller to know.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A remark for the user (what the CLI prints on stderr as it is).
    Note(&'a str),
    /// Something the user should know that does not stop the work (the CLI prefixes `warning: `).
    Warning(&'a str),
    /// Work of `total` steps begins (evolve: `folds × (generations + 1)` generations).
    Started { total: u64 },
    /// A GA generation finished: `position` of `total` steps done; `best` is the best objective
    /// so far in the fold (`None` while nothing feasible was found).
    Generation {
        fold: usize,
        position: u64,
        best: Option<f64>,
    },
    /// An RL training episode finished.
    Episode {
        episode: usize,
        reward: f64,
        net_pnl_quote: f64,
        bundles: u64,
        actions: &'a [u64],
    },
    /// The work is over (successfully or not); a progress display can go.
    Finished,
}

/// Receives [`Event`]s. Implemented for any `FnMut(Event) + Send` (an evolve run reports from
/// its fitness thread pool).
pub trait Progress: Send {
    fn event(&mut self, event: Event<'_>);
}

impl<F: FnMut(Event<'_>) + Send> Progress for F {
    fn event(&mut self, event: Event<'_>) {
        self(event)
    }
}

/// Discards every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn event(&mut self, _: Event<'_>) {}
}
