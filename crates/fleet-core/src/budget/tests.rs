use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use crate::pricing::ModelPrice;
use crate::usage::TokenUsage;

use super::*;

fn usd(d: f64) -> Usd {
    Usd::from_dollars(d).unwrap()
}

#[test]
fn a_hundred_concurrent_reservations_never_overshoot() {
    let budgets = Budgets::new();
    let run = budgets.add(
        "run",
        None,
        BudgetLimits {
            output_tokens: Some(1_000_000),
            usd: Some(usd(5.0)),
        },
    );
    let agent = budgets.add("agent:scanner", Some(run), BudgetLimits::default());
    let barrier = Arc::new(Barrier::new(100));
    let handles: Vec<_> = (0..100u64)
        .map(|i| {
            let (budgets, barrier) = (budgets.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let worst = Amount {
                    output_tokens: 1_000,
                    usd: usd(0.10),
                };
                let admitted = budgets.reserve(&[agent], worst).ok()?;
                // Every admitted call ends with at most its worst case; some use all of it.
                let actual = Amount {
                    output_tokens: 500 + (i % 2) * 500,
                    usd: if i % 2 == 0 { usd(0.05) } else { usd(0.10) },
                };
                let status = budgets.status(run).unwrap();
                assert!(
                    status.spent.usd + status.reserved.usd <= usd(5.0),
                    "overshoot while in flight"
                );
                admitted.settle(actual);
                Some(())
            })
        })
        .collect();
    let admitted = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .count();
    let status = budgets.status(run).unwrap();
    assert!(
        status.spent.usd <= usd(5.0),
        "spent {} over the cap",
        status.spent.usd
    );
    assert_eq!(status.reserved, Amount::default());
    // At most 50 fit at once, and releases let later ones in: at least 50 were admitted.
    assert!((50..=100).contains(&admitted), "{admitted}");
    assert_eq!(budgets.status(agent).unwrap().spent, status.spent);
}

#[test]
fn exactly_the_calls_that_fit_are_admitted_when_none_finish() {
    let budgets = Budgets::new();
    let run = budgets.add(
        "run",
        None,
        BudgetLimits {
            usd: Some(usd(5.0)),
            ..BudgetLimits::default()
        },
    );
    let barrier = Arc::new(Barrier::new(100));
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let (budgets, barrier) = (budgets.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                budgets
                    .reserve(
                        &[run],
                        Amount {
                            output_tokens: 0,
                            usd: usd(0.10),
                        },
                    )
                    .ok()
            })
        })
        .collect();
    let held: Vec<Reservation> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(held.len(), 50);
    assert_eq!(budgets.status(run).unwrap().reserved.usd, usd(5.0));
    drop(held);
    assert_eq!(budgets.status(run).unwrap().reserved.usd, Usd::ZERO);
}

#[test]
fn token_budgets_follow_claude_codes_rule() {
    let budgets = Budgets::new();
    let run = budgets.add(
        "run",
        None,
        BudgetLimits {
            output_tokens: Some(100),
            ..BudgetLimits::default()
        },
    );
    // A call reserving nothing is admitted while spent < total…
    budgets
        .reserve(&[run], Amount::default())
        .unwrap()
        .settle(Amount {
            output_tokens: 100,
            usd: Usd::ZERO,
        });
    // …and refused once spent >= total.
    let err = budgets.reserve(&[run], Amount::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "budget \"run\" exhausted: 100 output tokens spent and 0 reserved of 100; this call may use up to 0"
    );
}

#[test]
fn a_report_of_more_input_raises_the_reservation_and_limits_the_output() {
    let budgets = Budgets::new();
    let run = budgets.add(
        "run",
        None,
        BudgetLimits {
            usd: Some(usd(0.02)),
            ..BudgetLimits::default()
        },
    );
    // $1 per million input tokens, $5 per million output tokens.
    let price = ModelPrice {
        input: usd(1.0),
        cache_write: usd(1.0),
        cache_write_1h: usd(1.0),
        cache_read: usd(0.1),
        output: usd(5.0),
    };
    let seen = |input: u64, output: u64| TokenUsage {
        input,
        output,
        ..TokenUsage::default()
    };
    let reserved = || budgets.status(run).unwrap().reserved.usd;
    // Admitted on an estimate of 100 prompt tokens: $0.0051 at most.
    let mut turn = budgets
        .reserve(
            &[run],
            Amount {
                output_tokens: 1000,
                usd: price.worst_case(100, 1000),
            },
        )
        .unwrap();
    assert_eq!(turn.observe(&price, &seen(100, 1), 1000), 1000);
    assert_eq!(
        reserved(),
        usd(0.0051),
        "a report within the estimate changes nothing"
    );
    // The provider says the prompt was 12 000 tokens: the whole turn still fits, and the
    // reservation rises to it at once, so a turn admitted now sees $0.003 left.
    assert_eq!(turn.observe(&price, &seen(12_000, 1), 1000), 1000);
    assert_eq!(reserved(), usd(0.017));
    let next = budgets.reserve(
        &[run],
        Amount {
            output_tokens: 1000,
            usd: usd(0.0051),
        },
    );
    assert!(
        next.is_err(),
        "the raised reservation crowds out a turn that would not fit"
    );
    // 18 000: $0.018 of input leaves $0.002, which pays for 400 output tokens.
    assert_eq!(turn.observe(&price, &seen(18_000, 1), 1000), 400);
    assert_eq!(reserved(), usd(0.02));
    // 25 000: the input alone passes the cap; no more output is paid for.
    assert_eq!(turn.observe(&price, &seen(25_000, 1), 400), 1);
    assert_eq!(reserved(), price.cost(&seen(25_000, 1)));
    turn.settle(Amount {
        output_tokens: 1,
        usd: price.cost(&seen(25_000, 1)),
    });
    let status = budgets.status(run).unwrap();
    assert_eq!(
        (status.spent.usd, status.reserved.usd),
        (usd(0.025005), Usd::ZERO)
    );
}

#[test]
fn the_tightest_ancestor_decides_and_is_named() {
    let budgets = Budgets::new();
    let run = budgets.add(
        "run",
        None,
        BudgetLimits {
            usd: Some(usd(1.0)),
            ..BudgetLimits::default()
        },
    );
    let phase = budgets.add(
        "phase:verify",
        Some(run),
        BudgetLimits {
            usd: Some(usd(0.25)),
            ..BudgetLimits::default()
        },
    );
    let agent = budgets.add(
        "agent:doc-bot",
        None,
        BudgetLimits {
            usd: Some(usd(10.0)),
            ..BudgetLimits::default()
        },
    );
    let r = budgets
        .reserve(
            &[phase, agent],
            Amount {
                output_tokens: 0,
                usd: usd(0.2),
            },
        )
        .unwrap();
    assert_eq!(budgets.status(run).unwrap().reserved.usd, usd(0.2));
    assert_eq!(budgets.status(agent).unwrap().reserved.usd, usd(0.2));
    let err = budgets
        .reserve(
            &[phase, agent],
            Amount {
                output_tokens: 0,
                usd: usd(0.2),
            },
        )
        .unwrap_err();
    assert!(
        matches!(&err, BudgetError::Exceeded { budget, .. } if budget == "phase:verify"),
        "{err}"
    );
    // Nothing was held by the refused call.
    assert_eq!(budgets.status(agent).unwrap().reserved.usd, usd(0.2));
    let exhausted = r.settle(Amount {
        output_tokens: 10,
        usd: usd(0.3),
    });
    assert_eq!(exhausted, vec!["phase:verify".to_owned()]);
    assert_eq!(
        budgets
            .charge(
                &[agent],
                Amount {
                    output_tokens: 1,
                    usd: usd(10.0)
                }
            )
            .unwrap(),
        vec!["agent:doc-bot".to_owned()]
    );
}

/// 100 concurrent turns under a token cap and a dollar cap, each using a random share of
/// what it was granted, after a random delay: the caps are never passed, nothing stays
/// reserved, and a turn is refused only when what is left is less than its least output.
mod admission {
    use proptest::prelude::*;

    use super::*;
    use crate::pricing::PriceTable;

    fn run_turns(
        limits: BudgetLimits,
        uses: Vec<(u8, u8)>,
        priced: bool,
    ) -> (BudgetStatus, usize, Vec<BudgetError>) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        let price = *PriceTable::builtin()
            .unwrap()
            .price("claude-haiku-4-5")
            .unwrap();
        let budgets = Budgets::new();
        let run = budgets.add("run", None, limits);
        let agent = budgets.add("agent:any", Some(run), BudgetLimits::default());
        let outcomes = runtime.block_on(async {
            let turns: Vec<_> = uses
                .into_iter()
                .map(|(share, delay)| {
                    let budgets = budgets.clone();
                    tokio::spawn(async move {
                        let demand = Demand {
                            max_output_tokens: 1_000,
                            min_output_tokens: 50,
                            priced: priced.then_some((price, 2_000)),
                        };
                        let reservation = budgets.admit(&[agent], demand).await?;
                        let granted = reservation.amount();
                        tokio::time::sleep(Duration::from_micros(u64::from(delay) * 10)).await;
                        // The provider writes at most what it was allowed; the prompt
                        // costs what it was estimated to, or less.
                        let output = granted.output_tokens * u64::from(share) / 255;
                        let actual = Amount {
                            output_tokens: output,
                            usd: demand.priced.map_or(Usd::ZERO, |(p, prompt)| {
                                p.cost(&crate::usage::TokenUsage {
                                    input: prompt,
                                    output,
                                    ..Default::default()
                                })
                            }),
                        };
                        assert!(actual.usd <= granted.usd);
                        reservation.settle(actual);
                        Ok::<_, BudgetError>(())
                    })
                })
                .collect();
            let mut outcomes = Vec::new();
            for turn in turns {
                outcomes.push(turn.await.unwrap());
            }
            outcomes
        });
        let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
        let refused = outcomes.into_iter().filter_map(Result::err).collect();
        (budgets.status(run).unwrap(), admitted, refused)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn a_token_cap_is_reached_and_never_passed(
            uses in proptest::collection::vec((any::<u8>(), any::<u8>()), 100),
            cap in 2_000u64..40_000,
        ) {
            let limits = BudgetLimits { output_tokens: Some(cap), usd: None };
            let (status, admitted, refused) = run_turns(limits, uses, false);
            prop_assert!(status.spent.output_tokens <= cap, "{} > {cap}", status.spent.output_tokens);
            prop_assert_eq!(status.reserved, Amount::default());
            if !refused.is_empty() {
                // Refused only when less than the least output (50) was left.
                prop_assert!(cap - status.spent.output_tokens < 50, "{admitted} admitted, {} left", cap - status.spent.output_tokens);
            }
        }

        #[test]
        fn a_dollar_cap_is_reached_and_never_passed(
            uses in proptest::collection::vec((any::<u8>(), any::<u8>()), 100),
            cents in 2u32..60,
        ) {
            let cap = Usd::from_nanos(i64::from(cents) * 10_000_000);
            let limits = BudgetLimits { output_tokens: None, usd: Some(cap) };
            let (status, _, refused) = run_turns(limits, uses, true);
            prop_assert!(status.spent.usd <= cap, "{} > {cap}", status.spent.usd);
            prop_assert_eq!(status.reserved, Amount::default());
            if !refused.is_empty() {
                // Refused only when the prompt plus the least output no longer fitted:
                // 2 000 prompt tokens at $2/M and 50 output at $5/M is $0.00425.
                let left = cap.saturating_sub(status.spent.usd);
                prop_assert!(left < Usd::from_dollars(0.00425).unwrap(), "{left} left");
            }
        }
    }
}
