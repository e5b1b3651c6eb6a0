//! The fixed bands that turn a day's numbers into the words a market commentator would use
//! (ARCHITECTURE.md, Narratives). Pure: numbers in, words out; every edge is a named constant,
//! and a value on an edge belongs to the band above it.
//!
//! - **Size of a move, relative to the security's own volatility.** A move is measured in units
//!   of its *usual daily move* σ: the sample standard deviation of the 20 daily returns before
//!   the day (the day's own return left out, so that a shock does not shrink itself), times
//!   √n for an n-day move. |z| < [`FLAT_Z`]: flat; < [`SMALL_Z`]: small ("edged up",
//!   "slipped"); < [`MODERATE_Z`]: moderate ("rose", "fell"); < [`LARGE_Z`]: large ("rallied
//!   strongly", "fell sharply"); beyond: extreme ("surged", "plunged"). Without 20 earlier
//!   returns σ is unknown and the move is sized against [`FALLBACK_DAILY_SIGMA`] (1%, a typical
//!   stock or index day).
//! - **Absolute size of a daily move**, for what reads the same for every security ("down more
//!   than 2% on the day", "a sell-off"): edges [`DAY_EDGES`] (0.2%, 0.5%, 1%, 2%, 5%).
//! - **5-day and 20-day moves in absolute terms**: edges [`WEEK_EDGES`] (1%, 2%, 5%, 10%) and
//!   [`MONTH_EDGES`] (2%, 5%, 10%, 20%); from the third edge "a losing week" and the like.
//! - **Distance below the 52-week high**: [`CORRECTION`] (10%) and [`DEEP_DRAWDOWN`] (20%).
//! - **The day's cross-asset context**, absolute: VIX's daily move on [`VIX_EDGES`] (2%, 5%,
//!   10%, 20%: "was little changed", "edged up" / "eased", "rose" / "fell", "jumped" /
//!   "dropped", "spiked" / "plunged") and the dollar index's on [`DOLLAR_EDGES`] (0.1%, 0.3%,
//!   0.7%: "was steady", "edged higher" / "edged lower", "strengthened" / "weakened",
//!   "strengthened sharply" / "weakened sharply").

use std::fmt;

/// |z| below this: a flat move.
pub const FLAT_Z: f64 = 0.25;
/// |z| below this: a small move.
pub const SMALL_Z: f64 = 0.75;
/// |z| below this: a moderate move.
pub const MODERATE_Z: f64 = 1.5;
/// |z| below this: a large move; at or beyond it, an extreme one.
pub const LARGE_Z: f64 = 2.5;
/// The usual daily move assumed when the security's own is unknown (fewer than
/// [`SIGMA_RETURNS`] earlier returns).
pub const FALLBACK_DAILY_SIGMA: f64 = 0.01;
/// Daily returns before the day that make its usual daily move.
pub const SIGMA_RETURNS: usize = 20;

/// Edges of the absolute daily bands: almost unchanged, under 0.5%, 0.5 to 1%, 1 to 2%, more
/// than 2%, more than 5%.
pub const DAY_EDGES: [f64; 5] = [0.002, 0.005, 0.01, 0.02, 0.05];
/// Edges of the absolute 5-day bands: under 1%, 1 to 2%, 2 to 5%, more than 5%, more than 10%.
pub const WEEK_EDGES: [f64; 4] = [0.01, 0.02, 0.05, 0.10];
/// Edges of the absolute 20-day bands: under 2%, 2 to 5%, 5 to 10%, more than 10%, more than 20%.
pub const MONTH_EDGES: [f64; 4] = [0.02, 0.05, 0.10, 0.20];

/// A drawdown at least this deep (as a fraction below the 52-week high) is a correction.
pub const CORRECTION: f64 = 0.10;
/// A drawdown at least this deep is a deep drawdown.
pub const DEEP_DRAWDOWN: f64 = 0.20;

/// Edges of VIX's daily move (as fractions of its level): little changed, a small, a moderate,
/// a large and an extreme move.
pub const VIX_EDGES: [f64; 4] = [0.02, 0.05, 0.10, 0.20];
/// Edges of the dollar index's daily move: steady, a small, a clear and a sharp move.
pub const DOLLAR_EDGES: [f64; 3] = [0.001, 0.003, 0.007];
/// VIX moves at least this large (either way) are told in the narrative: "jumped" and beyond.
pub const VIX_NOTABLE: f64 = VIX_EDGES[2];
/// Dollar moves at least this large are told in the narrative: "strengthened sharply".
pub const DOLLAR_NOTABLE: f64 = DOLLAR_EDGES[2];
/// A daily move at least this large either way is a big day ("a rally", "a sell-off" and
/// beyond): its first sentence names the sector with the move, and the fear that went with it.
pub const BIG_DAY: f64 = DAY_EDGES[3];
/// On a big day, VIX up at least this much ("edged up" and beyond) is told: "while volatility
/// rose", with VIX's move among the day's cross-asset context.
pub const VIX_RISING: f64 = VIX_EDGES[0];

/// VIX's daily move in words, on [`VIX_EDGES`]: "was little changed", "edged up", "eased",
/// "rose", "fell", "jumped", "dropped", "spiked", "plunged".
#[must_use]
pub fn vix_verb(fraction: f64) -> &'static str {
    let a = fraction.abs();
    let up = fraction > 0.0;
    let [little, small, moderate, large] = VIX_EDGES;
    if a < little {
        "was little changed"
    } else if a < small {
        if up { "edged up" } else { "eased" }
    } else if a < moderate {
        if up { "rose" } else { "fell" }
    } else if a < large {
        if up { "jumped" } else { "dropped" }
    } else if up {
        "spiked"
    } else {
        "plunged"
    }
}

/// The dollar index's daily move in words, on [`DOLLAR_EDGES`]: "was steady", "edged higher",
/// "edged lower", "strengthened", "weakened", "strengthened sharply", "weakened sharply".
#[must_use]
pub fn dollar_verb(fraction: f64) -> &'static str {
    let a = fraction.abs();
    let up = fraction > 0.0;
    let [steady, small, clear] = DOLLAR_EDGES;
    if a < steady {
        "was steady"
    } else if a < small {
        if up { "edged higher" } else { "edged lower" }
    } else if a < clear {
        if up { "strengthened" } else { "weakened" }
    } else if up {
        "strengthened sharply"
    } else {
        "weakened sharply"
    }
}

/// How large a move is for the security that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Size {
    Flat,
    Small,
    Moderate,
    Large,
    Extreme,
}

impl Size {
    /// The band of a move of `z` usual moves (either sign).
    #[must_use]
    pub fn of(z: f64) -> Self {
        let z = z.abs();
        if z < FLAT_Z {
            Self::Flat
        } else if z < SMALL_Z {
            Self::Small
        } else if z < MODERATE_Z {
            Self::Moderate
        } else if z < LARGE_Z {
            Self::Large
        } else {
            Self::Extreme
        }
    }
}

/// A move: its direction and its size for the security.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Move {
    /// The move in usual moves (signed).
    pub z: f64,
    pub size: Size,
    pub up: bool,
}

impl Move {
    /// A return of `fraction` over `days` days, for a security whose usual daily move is
    /// `sigma` (`None`: unknown, [`FALLBACK_DAILY_SIGMA`] is used).
    #[must_use]
    pub fn new(fraction: f64, days: u32, sigma: Option<f64>) -> Self {
        let daily = sigma
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(FALLBACK_DAILY_SIGMA);
        let z = fraction / (daily * f64::from(days).sqrt());
        Self {
            z,
            size: Size::of(z),
            up: fraction > 0.0,
        }
    }

    /// The commentator's verb: "plunged", "fell sharply", "fell", "slipped", "was flat",
    /// "edged up", "rose", "rallied strongly", "surged".
    #[must_use]
    pub fn verb(&self) -> &'static str {
        match (self.size, self.up) {
            (Size::Flat, _) => "was flat",
            (Size::Small, true) => "edged up",
            (Size::Small, false) => "slipped",
            (Size::Moderate, true) => "rose",
            (Size::Moderate, false) => "fell",
            (Size::Large, true) => "rallied strongly",
            (Size::Large, false) => "fell sharply",
            (Size::Extreme, true) => "surged",
            (Size::Extreme, false) => "plunged",
        }
    }

    /// The band's name as the metadata `move_band` holds it: "plunge", "sharp fall", "fall",
    /// "slip", "flat", "edge up", "rise", "strong rally", "surge".
    #[must_use]
    pub fn band(&self) -> &'static str {
        match (self.size, self.up) {
            (Size::Flat, _) => "flat",
            (Size::Small, true) => "edge up",
            (Size::Small, false) => "slip",
            (Size::Moderate, true) => "rise",
            (Size::Moderate, false) => "fall",
            (Size::Large, true) => "strong rally",
            (Size::Large, false) => "sharp fall",
            (Size::Extreme, true) => "surge",
            (Size::Extreme, false) => "plunge",
        }
    }
}

/// How the day reads as a whole, on the absolute bands ([`DAY_EDGES`]): "a quiet up day" /
/// "a quiet down day" (under 0.2%; "a quiet day" when unchanged), "an up day" / "a down day",
/// "a rally" / "a sell-off" (2% or more), "a surge" / "a crash" (5% or more). Even a quiet day
/// says its direction: without it, quiet days were one another's neighbours whatever their sign.
#[must_use]
pub fn day_kind(fraction: f64) -> &'static str {
    let [quiet, _, _, two, five] = DAY_EDGES;
    let a = fraction.abs();
    let up = fraction > 0.0;
    if a < quiet {
        if up {
            "a quiet up day"
        } else if fraction < 0.0 {
            "a quiet down day"
        } else {
            "a quiet day"
        }
    } else if a < two {
        if up { "an up day" } else { "a down day" }
    } else if a < five {
        if up { "a rally" } else { "a sell-off" }
    } else if up {
        "a surge"
    } else {
        "a crash"
    }
}

/// The absolute band of a daily return: "almost unchanged", "down less than 0.5%", "up 0.5 to
/// 1%", "down 1 to 2%", "up more than 2%", "down more than 5%" (then "on the day").
#[must_use]
pub fn day_band(fraction: f64) -> String {
    let [quiet, half, one, two, five] = DAY_EDGES;
    let a = fraction.abs();
    if a < quiet {
        return "almost unchanged".to_owned();
    }
    let side = side(fraction);
    let range = if a < half {
        "less than 0.5%"
    } else if a < one {
        "0.5 to 1%"
    } else if a < two {
        "1 to 2%"
    } else if a < five {
        "more than 2%"
    } else {
        "more than 5%"
    };
    format!("{side} {range}")
}

/// The absolute band of an n-day return with these `edges` (four, ascending, in fractions):
/// "down less than 1%", "up 1 to 2%", "down 2 to 5%", "up more than 5%", "down more than 10%".
#[must_use]
pub fn period_band(fraction: f64, edges: [f64; 4]) -> String {
    let a = fraction.abs();
    let pct = |x: f64| Percent(x);
    let range = if a < edges[0] {
        format!("less than {}", pct(edges[0]))
    } else if a < edges[1] {
        format!("{} to {}", Bare(edges[0]), pct(edges[1]))
    } else if a < edges[2] {
        format!("{} to {}", Bare(edges[1]), pct(edges[2]))
    } else if a < edges[3] {
        format!("more than {}", pct(edges[2]))
    } else {
        format!("more than {}", pct(edges[3]))
    };
    format!("{} {range}", side(fraction))
}

/// A big period in words, on its absolute bands (`edges` as for [`period_band`]): from the
/// third edge (5% for a week, 10% for a month) "a winning week" / "a losing week" ("month"
/// likewise); `None` for smaller moves, whose band says enough.
#[must_use]
pub fn period_kind(fraction: f64, edges: [f64; 4], period: &str) -> Option<String> {
    if fraction.abs() < edges[2] {
        None
    } else if fraction > 0.0 {
        Some(format!("a winning {period}"))
    } else {
        Some(format!("a losing {period}"))
    }
}

/// The drawdown below the 52-week high (its peak) in words, when it is deep enough to mention.
#[must_use]
pub fn drawdown_words(drawdown: f64) -> Option<&'static str> {
    let below = -drawdown;
    if below >= DEEP_DRAWDOWN {
        Some("in a deep drawdown, more than 20% below its peak")
    } else if below >= CORRECTION {
        Some("in a correction")
    } else {
        None
    }
}

fn side(fraction: f64) -> &'static str {
    if fraction > 0.0 { "up" } else { "down" }
}

/// A band edge as a percentage: 0.05 -> "5%", 0.005 -> "0.5%".
struct Percent(f64);
/// The same without the sign: 0.05 -> "5".
struct Bare(f64);

impl fmt::Display for Bare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = format!("{:.1}", self.0 * 100.0);
        f.write_str(shown.strip_suffix(".0").unwrap_or(&shown))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", Bare(self.0))
    }
}

/// The usual daily move: the sample standard deviation of `returns` (the ones before the day),
/// if there are at least [`SIGMA_RETURNS`]; only the last [`SIGMA_RETURNS`] count.
#[must_use]
pub fn usual_daily_move(returns: &[f64]) -> Option<f64> {
    if returns.len() < SIGMA_RETURNS {
        return None;
    }
    let window = &returns[returns.len() - SIGMA_RETURNS..];
    #[allow(clippy::cast_precision_loss)] // 20
    let n = window.len() as f64;
    let mean = window.iter().sum::<f64>() / n;
    let var = window.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let sigma = var.sqrt();
    (sigma.is_finite() && sigma > 0.0).then_some(sigma)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_change_exactly_at_their_edges() {
        assert_eq!(Size::of(0.0), Size::Flat);
        assert_eq!(Size::of(FLAT_Z - 1e-9), Size::Flat);
        assert_eq!(Size::of(FLAT_Z), Size::Small);
        assert_eq!(Size::of(-SMALL_Z + 1e-9), Size::Small);
        assert_eq!(Size::of(-SMALL_Z), Size::Moderate);
        assert_eq!(Size::of(MODERATE_Z), Size::Large);
        assert_eq!(Size::of(LARGE_Z - 1e-9), Size::Large);
        assert_eq!(Size::of(LARGE_Z), Size::Extreme);
        assert_eq!(Size::of(-40.0), Size::Extreme);
    }

    #[test]
    fn a_move_is_sized_by_the_securitys_own_volatility() {
        // 2% is an extreme day for an index moving 0.7% a day, an ordinary one for bitcoin.
        let index = Move::new(-0.02, 1, Some(0.007));
        assert_eq!((index.verb(), index.band()), ("plunged", "plunge"));
        let bitcoin = Move::new(-0.02, 1, Some(0.04));
        assert_eq!((bitcoin.verb(), bitcoin.band()), ("slipped", "slip"));
        // Unknown volatility: sized against 1% a day.
        let unknown = Move::new(0.016, 1, None);
        assert_eq!(unknown.verb(), "rallied strongly");
        assert!((unknown.z - 1.6).abs() < 1e-12);
        // An n-day move against sigma * sqrt(n): 5% in 5 days at 1% a day is 2.24 sigma.
        let week = Move::new(0.05, 5, Some(0.01));
        assert_eq!(week.size, Size::Large);
        assert_eq!(Move::new(0.0, 1, Some(0.01)).verb(), "was flat");
        assert_eq!(Move::new(0.004, 1, Some(0.01)).verb(), "edged up");
        assert_eq!(Move::new(-0.01, 1, Some(0.01)).verb(), "fell");
        assert_eq!(Move::new(0.03, 1, Some(0.01)).verb(), "surged");
        // Zero or broken volatility falls back instead of dividing by zero.
        assert_eq!(Move::new(0.016, 1, Some(0.0)).verb(), "rallied strongly");
        assert_eq!(
            Move::new(0.016, 1, Some(f64::NAN)).verb(),
            "rallied strongly"
        );
    }

    #[test]
    fn absolute_day_bands_change_at_their_edges() {
        assert_eq!(day_band(0.0019), "almost unchanged");
        assert_eq!(day_band(-0.002), "down less than 0.5%");
        assert_eq!(day_band(0.005), "up 0.5 to 1%");
        assert_eq!(day_band(-0.0199), "down 1 to 2%");
        assert_eq!(day_band(-0.02), "down more than 2%");
        assert_eq!(day_band(0.0499), "up more than 2%");
        assert_eq!(day_band(-0.05), "down more than 5%");
    }

    #[test]
    fn the_kind_of_day_is_absolute() {
        assert_eq!(day_kind(0.0019), "a quiet up day");
        assert_eq!(day_kind(-0.0019), "a quiet down day");
        assert_eq!(day_kind(0.0), "a quiet day");
        assert_eq!(day_kind(0.002), "an up day");
        assert_eq!(day_kind(-0.0199), "a down day");
        assert_eq!(day_kind(0.02), "a rally");
        assert_eq!(day_kind(-0.02), "a sell-off");
        assert_eq!(day_kind(0.05), "a surge");
        assert_eq!(day_kind(-0.05), "a crash");
    }

    #[test]
    fn only_big_periods_get_a_kind() {
        assert_eq!(period_kind(-0.0499, WEEK_EDGES, "week"), None);
        assert_eq!(
            period_kind(-0.05, WEEK_EDGES, "week").as_deref(),
            Some("a losing week")
        );
        assert_eq!(period_kind(0.0999, MONTH_EDGES, "month"), None);
        assert_eq!(
            period_kind(0.10, MONTH_EDGES, "month").as_deref(),
            Some("a winning month")
        );
    }

    #[test]
    fn absolute_period_bands_change_at_their_edges() {
        assert_eq!(period_band(0.0099, WEEK_EDGES), "up less than 1%");
        assert_eq!(period_band(-0.01, WEEK_EDGES), "down 1 to 2%");
        assert_eq!(period_band(0.02, WEEK_EDGES), "up 2 to 5%");
        assert_eq!(period_band(-0.05, WEEK_EDGES), "down more than 5%");
        assert_eq!(period_band(0.10, WEEK_EDGES), "up more than 10%");
        assert_eq!(period_band(-0.0199, MONTH_EDGES), "down less than 2%");
        assert_eq!(period_band(0.05, MONTH_EDGES), "up 5 to 10%");
        assert_eq!(period_band(-0.25, MONTH_EDGES), "down more than 20%");
    }

    #[test]
    fn context_moves_change_at_their_edges() {
        assert_eq!(vix_verb(0.0199), "was little changed");
        assert_eq!(vix_verb(-0.0199), "was little changed");
        assert_eq!(vix_verb(0.02), "edged up");
        assert_eq!(vix_verb(-0.02), "eased");
        assert_eq!(vix_verb(0.05), "rose");
        assert_eq!(vix_verb(-0.0999), "fell");
        assert_eq!(vix_verb(0.10), "jumped");
        assert_eq!(vix_verb(-0.10), "dropped");
        assert_eq!(vix_verb(0.20), "spiked");
        assert_eq!(vix_verb(-0.25), "plunged");
        assert_eq!(dollar_verb(0.0009), "was steady");
        assert_eq!(dollar_verb(0.001), "edged higher");
        assert_eq!(dollar_verb(-0.001), "edged lower");
        assert_eq!(dollar_verb(0.003), "strengthened");
        assert_eq!(dollar_verb(-0.0069), "weakened");
        assert_eq!(dollar_verb(0.007), "strengthened sharply");
        assert_eq!(dollar_verb(-0.01), "weakened sharply");
    }

    #[test]
    fn drawdowns_are_named_from_their_edges() {
        assert_eq!(drawdown_words(-0.0999), None);
        assert_eq!(drawdown_words(-0.10), Some("in a correction"));
        assert_eq!(drawdown_words(-0.1999), Some("in a correction"));
        assert!(
            drawdown_words(-0.20)
                .unwrap()
                .starts_with("in a deep drawdown")
        );
    }

    #[test]
    fn the_usual_move_needs_twenty_earlier_returns() {
        let returns: Vec<f64> = (0..19)
            .map(|i| if i % 2 == 0 { -0.01 } else { 0.01 })
            .collect();
        assert_eq!(usual_daily_move(&returns), None);
        let mut more = returns.clone();
        more.push(0.01);
        more.insert(0, 0.5); // older than the last 20: ignored
        let sigma = usual_daily_move(&more).unwrap();
        // ten +1% and ten -1%: mean 0, sample variance 20 * 0.0001 / 19.
        assert!((sigma - (20.0 * 0.0001_f64 / 19.0).sqrt()).abs() < 1e-15);
        assert_eq!(usual_daily_move(&[0.0; 20]), None, "no volatility: unknown");
    }
}
