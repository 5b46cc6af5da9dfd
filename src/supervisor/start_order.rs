//! Start order: which waiting apps may start now, which wait and on what, which are blocked
//! because a dependency can no longer meet its condition.
//!
//! Invariant: pure and total. `gates` looks only at the facts it is given (no clock, no state of
//! its own); it is cheap enough to call after every event. Blocking is transitive: an app that
//! waits on a blocked app is blocked too, with the chain in its reason. Facts are latched by the
//! caller (an app that was ready once stays "ready" for the start order), so a dependency that
//! restarts later neither re-blocks nor restarts its dependents.

use serde::Serialize;

use crate::config::checks::{Condition, Dependency};

/// What the start order needs to know about one app (all instances together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppFacts {
    /// An instance has been spawned (since pmi started, or since `pmi start` of this app).
    pub started: bool,
    /// Every instance has been ready (not just online past `listen_timeout`), latched.
    pub ready: bool,
    /// Every instance exited for good: `Some(true)` with a success code (0 or a
    /// `stop_exit_codes` code), `Some(false)` otherwise.
    pub completed: Option<bool>,
    /// `errored` (gave up restarting), or the app is itself blocked and was never started.
    pub errored: bool,
}

/// One app as `gates` sees it.
#[derive(Debug, Clone, Copy)]
pub struct OrderInput<'a> {
    pub name: &'a str,
    pub deps: &'a [Dependency],
    pub facts: AppFacts,
}

/// A dependency not met yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wait {
    pub app: String,
    pub condition: Condition,
}

/// A dependency that can no longer meet its condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    pub app: String,
    pub condition: Condition,
    /// "errored", "completed with a failure", "blocked (by migrate: errored)".
    pub reason: String,
}

/// The verdict for one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Every dependency is met (or there are none).
    Go,
    /// `waiting`: status says `waiting_on`.
    Waiting(Vec<Wait>),
    /// `blocked`: not started, counts as errored for `pmi health` and auto-exit.
    Blocked(Vec<Block>),
}

impl Gate {
    /// One line for status and logs: "waiting on db (ready), migrate (completed)".
    pub fn describe(&self) -> Option<String> {
        match self {
            Gate::Go => None,
            Gate::Waiting(w) => Some(format!(
                "waiting on {}",
                w.iter()
                    .map(|w| format!("{} ({})", w.app, w.condition.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Gate::Blocked(b) => Some(format!(
                "blocked: {}",
                b.iter()
                    .map(|b| format!("{} ({}) {}", b.app, b.condition.name(), b.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    }
}

enum Verdict {
    Met,
    Pending,
    Impossible(String),
}

fn verdict(c: Condition, f: AppFacts) -> Verdict {
    let met = match c {
        Condition::Started => f.started || f.completed.is_some(),
        Condition::Ready => f.ready || f.completed == Some(true),
        Condition::Completed => f.completed == Some(true),
    };
    if met {
        return Verdict::Met;
    }
    if f.errored {
        return Verdict::Impossible("errored".into());
    }
    match (c, f.completed) {
        (Condition::Ready | Condition::Completed, Some(false)) => {
            Verdict::Impossible("completed with a failure".into())
        }
        _ => Verdict::Pending,
    }
}

/// The gate of every app, in input order. Unknown dependency names (dropped by `--only`, or not
/// in the file) are ignored: config reports them, and `--only` means "start without them".
pub fn gates(apps: &[OrderInput<'_>]) -> Vec<Gate> {
    let find = |name: &str| apps.iter().position(|a| a.name == name);
    let mut out: Vec<Gate> = Vec::with_capacity(apps.len());
    for a in apps {
        let mut waits = Vec::new();
        let mut blocks = Vec::new();
        for d in a.deps {
            let Some(j) = find(&d.app) else { continue };
            match verdict(d.condition, apps[j].facts) {
                Verdict::Met => {}
                Verdict::Pending => waits.push(Wait {
                    app: d.app.clone(),
                    condition: d.condition,
                }),
                Verdict::Impossible(reason) => blocks.push(Block {
                    app: d.app.clone(),
                    condition: d.condition,
                    reason,
                }),
            }
        }
        out.push(gate(waits, blocks));
    }
    // Blocking spreads along waits: at most one round per app (no cycles pass config, and the
    // bound keeps a bad input from looping).
    for _ in 0..apps.len() {
        let mut changed = false;
        for i in 0..apps.len() {
            let Gate::Waiting(waits) = &out[i] else {
                continue;
            };
            let mut blocks = Vec::new();
            for w in waits {
                let upstream = find(&w.app)
                    .filter(|&j| !apps[j].facts.started)
                    .map(|j| &out[j]);
                if let Some(g @ Gate::Blocked(_)) = upstream {
                    blocks.push(Block {
                        app: w.app.clone(),
                        condition: w.condition,
                        reason: format!("is {}", g.describe().unwrap_or_default()),
                    });
                }
            }
            if !blocks.is_empty() {
                out[i] = Gate::Blocked(blocks);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    out
}

/// Whether the container is ready (pmi's own `READY=1`, `/readyz`, `pmi health --ready`): every
/// autostart app is ready or completed with success. `Err` is the one-line reason of the first
/// app that holds it back, for the probe's log.
pub fn container_ready<'a>(
    apps: impl IntoIterator<Item = (&'a str, bool, AppFacts, &'a Gate)>,
) -> Result<(), String> {
    for (name, autostart, f, gate) in apps {
        if !autostart || f.ready || f.completed == Some(true) {
            continue;
        }
        let why = match (gate, f) {
            (Gate::Blocked(_) | Gate::Waiting(_), _) => gate.describe().unwrap_or_default(),
            (_, AppFacts { errored: true, .. }) => "errored".to_string(),
            (
                _,
                AppFacts {
                    completed: Some(false),
                    ..
                },
            ) => "exited with a failure".to_string(),
            (_, AppFacts { started: false, .. }) => "not started".to_string(),
            _ => "not ready yet".to_string(),
        };
        return Err(format!("{name}: {why}"));
    }
    Ok(())
}

fn gate(waits: Vec<Wait>, blocks: Vec<Block>) -> Gate {
    if !blocks.is_empty() {
        Gate::Blocked(blocks)
    } else if !waits.is_empty() {
        Gate::Waiting(waits)
    } else {
        Gate::Go
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(app: &str, c: Condition) -> Dependency {
        Dependency {
            app: app.into(),
            condition: c,
        }
    }

    const NEW: AppFacts = AppFacts {
        started: false,
        ready: false,
        completed: None,
        errored: false,
    };
    const RUNNING: AppFacts = AppFacts {
        started: true,
        ..NEW
    };
    const READY: AppFacts = AppFacts {
        started: true,
        ready: true,
        ..NEW
    };
    const DONE_OK: AppFacts = AppFacts {
        started: true,
        completed: Some(true),
        ..NEW
    };
    const DONE_BAD: AppFacts = AppFacts {
        started: true,
        completed: Some(false),
        ..NEW
    };
    const ERRORED: AppFacts = AppFacts {
        started: true,
        errored: true,
        ..NEW
    };

    /// One dependency `x` of each condition against each fact.
    #[test]
    fn each_condition_against_each_fact() {
        use Condition::*;
        // (condition, facts of the dependency, expected: 'g' go, 'w' waiting, 'b' blocked)
        let table = [
            (Started, NEW, 'w'),
            (Started, RUNNING, 'g'),
            (Started, DONE_BAD, 'g'),
            (
                Started,
                AppFacts {
                    errored: true,
                    ..NEW
                },
                'b',
            ),
            (Ready, NEW, 'w'),
            (Ready, RUNNING, 'w'),
            (Ready, READY, 'g'),
            (Ready, DONE_OK, 'g'),
            (Ready, DONE_BAD, 'b'),
            (Ready, ERRORED, 'b'),
            (Completed, RUNNING, 'w'),
            (Completed, READY, 'w'),
            (Completed, DONE_OK, 'g'),
            (Completed, DONE_BAD, 'b'),
            (Completed, ERRORED, 'b'),
        ];
        for (c, facts, want) in table {
            let deps = [dep("x", c)];
            let apps = [
                OrderInput {
                    name: "x",
                    deps: &[],
                    facts,
                },
                OrderInput {
                    name: "a",
                    deps: &deps,
                    facts: NEW,
                },
            ];
            let g = &gates(&apps)[1];
            let got = match g {
                Gate::Go => 'g',
                Gate::Waiting(_) => 'w',
                Gate::Blocked(_) => 'b',
            };
            assert_eq!(got, want, "{c:?} on {facts:?}: {g:?}");
        }
    }

    #[test]
    fn waiting_says_on_what_and_blocking_is_transitive() {
        let web_deps = [
            dep("migrate", Condition::Completed),
            dep("db", Condition::Ready),
        ];
        let worker_deps = [dep("web", Condition::Ready)];
        let apps = |migrate: AppFacts| {
            let v = [
                OrderInput {
                    name: "db",
                    deps: &[],
                    facts: RUNNING,
                },
                OrderInput {
                    name: "migrate",
                    deps: &[],
                    facts: migrate,
                },
                OrderInput {
                    name: "web",
                    deps: &web_deps,
                    facts: NEW,
                },
                OrderInput {
                    name: "worker",
                    deps: &worker_deps,
                    facts: NEW,
                },
            ];
            gates(&v)
        };
        let g = apps(RUNNING);
        assert_eq!(g[0], Gate::Go);
        assert_eq!(
            g[2].describe().unwrap(),
            "waiting on migrate (completed), db (ready)"
        );
        assert_eq!(g[3].describe().unwrap(), "waiting on web (ready)");
        let g = apps(DONE_BAD);
        assert_eq!(
            g[2].describe().unwrap(),
            "blocked: migrate (completed) completed with a failure"
        );
        let Gate::Blocked(b) = &g[3] else {
            panic!("{:?}", g[3])
        };
        assert_eq!(b[0].app, "web");
        assert!(
            b[0].reason.contains("by") || b[0].reason.contains("blocked: migrate"),
            "{b:?}"
        );
    }

    #[test]
    fn container_readiness_names_what_holds_it_back() {
        let waiting = Gate::Waiting(vec![Wait {
            app: "migrate".into(),
            condition: Condition::Completed,
        }]);
        let go = Gate::Go;
        assert_eq!(
            container_ready([
                ("m", true, DONE_OK, &go),
                ("web", true, READY, &go),
                ("manual", false, NEW, &go)
            ]),
            Ok(())
        );
        assert_eq!(
            container_ready([("m", true, RUNNING, &go)]),
            Err("m: not ready yet".into())
        );
        assert_eq!(
            container_ready([("web", true, NEW, &waiting)]),
            Err("web: waiting on migrate (completed)".into())
        );
        assert_eq!(
            container_ready([("m", true, DONE_BAD, &go)]),
            Err("m: exited with a failure".into())
        );
        assert_eq!(
            container_ready([("m", true, ERRORED, &go)]),
            Err("m: errored".into())
        );
    }

    #[test]
    fn a_started_dependent_is_never_re_blocked_and_unknown_names_are_ignored() {
        let deps = [dep("gone", Condition::Ready)];
        let g = gates(&[OrderInput {
            name: "a",
            deps: &deps,
            facts: NEW,
        }]);
        assert_eq!(g[0], Gate::Go);
        // `web` was blocked once but already runs (e.g. `pmi start web` by hand): its dependent
        // waits for its readiness, it is not blocked through it.
        let web_deps = [dep("m", Condition::Completed)];
        let w_deps = [dep("web", Condition::Ready)];
        let apps = [
            OrderInput {
                name: "m",
                deps: &[],
                facts: DONE_BAD,
            },
            OrderInput {
                name: "web",
                deps: &web_deps,
                facts: RUNNING,
            },
            OrderInput {
                name: "w",
                deps: &w_deps,
                facts: NEW,
            },
        ];
        let g = gates(&apps);
        assert!(matches!(g[2], Gate::Waiting(_)), "{:?}", g[2]);
    }
}
