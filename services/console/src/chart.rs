//! The burn-down chart: a customer's balance of one asset over time, as a
//! server-rendered SVG step line (no JavaScript), with a text summary for
//! screen readers and for browsers without SVG.

use chrono::{DateTime, Utc};
use maud::{Markup, html};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

const WIDTH: i64 = 640;
const HEIGHT: i64 = 180;
const PAD: i64 = 8;
/// Room under the zero line for the date labels.
const FOOT: i64 = 16;

/// One change of the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// When it took effect.
    pub at: DateTime<Utc>,
    /// By how much (credits positive, debits negative), in whole units.
    pub delta: Decimal,
}

/// The running balance after each step (oldest first), from `start`.
pub fn running(start: Decimal, steps: &[Step]) -> Vec<(DateTime<Utc>, Decimal)> {
    let mut balance = start;
    steps
        .iter()
        .map(|step| {
            balance += step.delta;
            (step.at, balance)
        })
        .collect()
}

/// The SVG of `points` (oldest first), labelled `label`, up to `now`.
pub fn burn_down(label: &str, points: &[(DateTime<Utc>, Decimal)], now: DateTime<Utc>) -> Markup {
    let Some(&(first_at, _)) = points.first() else {
        return html! { p { "No balance transactions yet." } };
    };
    let last = points.last().map_or(Decimal::ZERO, |p| p.1);
    let end = now.max(points.last().map_or(now, |p| p.0));
    let low = points.iter().map(|p| p.1).fold(Decimal::ZERO, Decimal::min);
    let high = points.iter().map(|p| p.1).fold(Decimal::ZERO, Decimal::max);
    let span_ms = (end - first_at).num_milliseconds().max(1);
    let range = if high == low {
        Decimal::ONE
    } else {
        high - low
    };
    let x =
        |at: DateTime<Utc>| PAD + (at - first_at).num_milliseconds() * (WIDTH - 2 * PAD) / span_ms;
    let y = |value: Decimal| {
        let from_top = (high - value) * Decimal::from(HEIGHT - 2 * PAD - FOOT) / range;
        PAD + from_top.round().to_i64().unwrap_or(0)
    };
    let mut path = format!("M{} {}", x(first_at), y(Decimal::ZERO));
    for (at, value) in points {
        path.push_str(&format!(" H{} V{}", x(*at), y(*value)));
    }
    path.push_str(&format!(" H{}", x(end)));
    // The area under the line, closed along the zero line.
    let area = format!("{path} V{} Z", y(Decimal::ZERO));
    let summary = format!(
        "{label}: {} now, after {} transactions since {}; highest {}.",
        last.normalize(),
        points.len(),
        first_at.format("%Y-%m-%d"),
        high.normalize(),
    );
    html! {
        figure {
            svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(HEIGHT)
                viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(summary) {
                title { (summary) }
                line x1=(PAD) y1=(y(Decimal::ZERO)) x2=(WIDTH - PAD) y2=(y(Decimal::ZERO))
                    stroke="#999" stroke-dasharray="4 4" {}
                path d=(area) fill="#2458b3" fill-opacity="0.12" stroke="none" {}
                path d=(path) fill="none" stroke="#2458b3" stroke-width="2" {}
                text x=(PAD + 4) y=(PAD + 12) font-size="12" fill="#444" { (high.normalize()) }
                text x=(PAD + 4) y=(y(Decimal::ZERO) - 4) font-size="12" fill="#444" { "0" }
                text x=(PAD + 4) y=(HEIGHT - 2) font-size="11" fill="#444" { (first_at.format("%Y-%m-%d")) }
                text x=(WIDTH - PAD) y=(HEIGHT - 2) font-size="11" fill="#444" text-anchor="end" { (end.format("%Y-%m-%d")) }
            }
            figcaption { (summary) }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_line_follows_the_running_balance() {
        let t = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let steps = [
            Step {
                at: t(0),
                delta: Decimal::from(100),
            },
            Step {
                at: t(10),
                delta: Decimal::from(-30),
            },
            Step {
                at: t(20),
                delta: Decimal::from(-70),
            },
        ];
        let points = running(Decimal::ZERO, &steps);
        assert_eq!(points.last().unwrap().1, Decimal::ZERO);
        let svg = burn_down("USD", &points, t(40)).into_string();
        // From the bottom (0) up to the top (100), then down to 0 again.
        assert!(
            svg.contains("M8 156 H8 V8 H164 V52 H320 V156 H632"),
            "{svg}"
        );
        assert!(
            svg.contains("USD: 0 now, after 3 transactions since 2027-01-15; highest 100."),
            "{svg}"
        );
        assert!(
            burn_down("USD", &[], t(0))
                .into_string()
                .contains("No balance")
        );
    }
}
