//! `spec.disruption` resolved: whether the model gets a PodDisruptionBudget, its
//! `maxUnavailable`, and whether its pods spread softly across nodes and zones.

use super::Rules;
use super::validated::Scaling;
use crate::crd::{BudgetMode, DisruptionSpec};

/// `maxUnavailable` of the budget when `spec.disruption.maxUnavailable` is not set.
pub const DEFAULT_MAX_UNAVAILABLE: i32 = 1;
/// With `budget: Auto`, the fewest (most, when autoscaled) replicas that get a budget.
pub const AUTO_BUDGET_REPLICAS: i32 = 2;

/// A checked `spec.disruption`, its defaults resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disruption {
    /// `maxUnavailable` of the PodDisruptionBudget; `None`: no budget (one the operator made
    /// before is deleted).
    pub max_unavailable: Option<i32>,
    /// Soft topology spread across nodes and zones.
    pub spread: bool,
}

/// Resolves `spec.disruption` for pods scaled as `scaling` (`None` when scaling is invalid:
/// the spec fails anyway).
pub(super) fn disruption(
    spec: Option<&DisruptionSpec>,
    scaling: Option<&Scaling>,
    rules: &mut Rules,
) -> Disruption {
    let spec = spec.cloned().unwrap_or_default();
    let max_unavailable = spec.max_unavailable.unwrap_or(DEFAULT_MAX_UNAVAILABLE);
    if max_unavailable < 1 {
        rules.fail(
            "spec.disruption.maxUnavailable",
            format!("must be >= 1 (is {max_unavailable}; 0 would block every node drain)"),
        );
    }
    // A budget protects a model that has a pod to spare; `maxReplicas` counts for an
    // autoscaled one, since its replicas change without a reconcile.
    let most_replicas = match scaling {
        Some(Scaling::Fixed { replicas }) => *replicas,
        Some(Scaling::Autoscaled(auto)) => auto.max_replicas,
        None => 0,
    };
    let budget = match spec.budget.unwrap_or_default() {
        BudgetMode::Auto => most_replicas >= AUTO_BUDGET_REPLICAS,
        BudgetMode::Always => true,
        BudgetMode::Never => false,
    };
    Disruption {
        max_unavailable: budget.then_some(max_unavailable),
        spread: spec.spread.unwrap_or(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Autoscaling;

    fn resolve(spec: Option<DisruptionSpec>, scaling: Scaling) -> (Disruption, usize) {
        let mut rules = Rules::default();
        let d = disruption(spec.as_ref(), Some(&scaling), &mut rules);
        (d, rules.0.len())
    }

    fn fixed(replicas: i32) -> Scaling {
        Scaling::Fixed { replicas }
    }

    #[test]
    fn auto_budget_from_two_replicas_with_max_unavailable_one() {
        for (replicas, budget) in [(0, None), (1, None), (2, Some(1)), (5, Some(1))] {
            let (d, broken) = resolve(None, fixed(replicas));
            assert_eq!(d.max_unavailable, budget, "replicas {replicas}");
            assert!(d.spread);
            assert_eq!(broken, 0);
        }
    }

    #[test]
    fn autoscaled_model_gets_a_budget_when_it_may_reach_two_pods() {
        let auto = |max| {
            Scaling::Autoscaled(Autoscaling {
                min_replicas: 1,
                max_replicas: max,
                target_cpu_utilization: 80,
                target_memory_utilization: None,
                behavior: None,
            })
        };
        assert_eq!(resolve(None, auto(1)).0.max_unavailable, None);
        assert_eq!(resolve(None, auto(4)).0.max_unavailable, Some(1));
    }

    #[test]
    fn always_and_never_win_over_the_replicas() {
        let spec = |budget| DisruptionSpec {
            budget: Some(budget),
            max_unavailable: Some(2),
            spread: Some(false),
        };
        let (d, _) = resolve(Some(spec(BudgetMode::Always)), fixed(1));
        assert_eq!(
            d,
            Disruption {
                max_unavailable: Some(2),
                spread: false
            }
        );
        let (d, _) = resolve(Some(spec(BudgetMode::Never)), fixed(3));
        assert_eq!(d.max_unavailable, None);
    }

    #[test]
    fn zero_max_unavailable_is_refused_with_its_field() {
        let spec = DisruptionSpec {
            max_unavailable: Some(0),
            ..DisruptionSpec::default()
        };
        let mut rules = Rules::default();
        disruption(Some(&spec), Some(&fixed(2)), &mut rules);
        assert_eq!(rules.0.len(), 1);
        assert_eq!(rules.0[0].field, "spec.disruption.maxUnavailable");
    }
}
