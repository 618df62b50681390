//! Budgets of a project and of a run: what the tasks' attempts used, and the budget reached. Pure.

use crate::journal::TaskView;

/// Tokens and cost, as agents report them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Tokens.
    pub tokens: u64,
    /// USD.
    pub cost_usd: f64,
}

impl Usage {
    /// What a task's attempts used.
    pub fn of(view: &TaskView) -> Usage {
        view.attempts.iter().fold(Usage::default(), |u, a| Usage {
            tokens: u.tokens.saturating_add(a.tokens),
            cost_usd: u.cost_usd + a.cost_usd,
        })
    }

    /// A total in which one task's share went from `from` to `to`.
    pub(crate) fn shift(&mut self, from: Usage, to: Usage) {
        self.tokens = self.tokens.saturating_sub(from.tokens).saturating_add(to.tokens);
        self.cost_usd += to.cost_usd - from.cost_usd;
    }
}

/// A budget that is spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetHit {
    /// The breakpoint, as configured (`run_token_budget`…).
    pub name: String,
    /// The evidence, in words.
    pub detail: String,
}

/// The project or run budget a task's project has reached, if any. Pure.
pub fn budget_hit(
    bp: &crate::settings::Breakpoints,
    project: &str,
    in_project: Usage,
    in_run: Usage,
) -> Option<BudgetHit> {
    if bp.run_token_budget > 0 && in_run.tokens >= bp.run_token_budget {
        return Some(BudgetHit {
            name: "run_token_budget".into(),
            detail: format!("this run used {} tokens, its budget is {}", in_run.tokens, bp.run_token_budget),
        });
    }
    if bp.run_cost_budget_usd > 0.0 && in_run.cost_usd >= bp.run_cost_budget_usd {
        return Some(BudgetHit {
            name: "run_cost_budget".into(),
            detail: format!("this run spent ${:.4}, its budget is ${:.4}", in_run.cost_usd, bp.run_cost_budget_usd),
        });
    }
    if bp.project_token_budget > 0 && in_project.tokens >= bp.project_token_budget {
        return Some(BudgetHit {
            name: "project_token_budget".into(),
            detail: format!(
                "project {project} used {} tokens, its budget is {}",
                in_project.tokens, bp.project_token_budget
            ),
        });
    }
    if bp.project_cost_budget_usd > 0.0 && in_project.cost_usd >= bp.project_cost_budget_usd {
        return Some(BudgetHit {
            name: "project_cost_budget".into(),
            detail: format!(
                "project {project} spent ${:.4}, its budget is ${:.4}",
                in_project.cost_usd, bp.project_cost_budget_usd
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Breakpoints;

    #[test]
    fn project_and_run_budgets_are_reached_at_their_limit() {
        let u = |tokens, cost_usd| Usage { tokens, cost_usd };
        let none = Breakpoints::default();
        assert_eq!(budget_hit(&none, "p", u(1_000_000, 99.0), u(1_000_000, 99.0)), None);
        let bp = Breakpoints {
            project_token_budget: 1000,
            project_cost_budget_usd: 1.0,
            run_token_budget: 5000,
            run_cost_budget_usd: 2.0,
            ..Breakpoints::default()
        };
        assert_eq!(budget_hit(&bp, "p", u(999, 0.5), u(999, 0.5)), None);
        let name = |p: Usage, r: Usage| budget_hit(&bp, "p", p, r).map(|h| h.name);
        assert_eq!(name(u(1000, 0.5), u(1000, 0.5)).as_deref(), Some("project_token_budget"));
        assert_eq!(name(u(10, 1.5), u(10, 1.5)).as_deref(), Some("project_cost_budget"));
        assert_eq!(name(u(10, 0.1), u(6000, 0.1)).as_deref(), Some("run_token_budget"));
        assert_eq!(name(u(10, 0.1), u(10, 2.0)).as_deref(), Some("run_cost_budget"));
        let detail = budget_hit(&bp, "alpha", u(1200, 0.0), u(1200, 0.0)).map(|h| h.detail).unwrap_or_default();
        assert_eq!(detail, "project alpha used 1200 tokens, its budget is 1000");
    }
}
