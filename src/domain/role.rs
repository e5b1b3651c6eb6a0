//! The roles securities play in the cross-asset features (`features.roles` in
//! securities.yaml), and their defaults.

/// The correlations with the `btc` role when `features.correlations` is not set: name (the
/// column is `ml_{name}_correlation`) and db_symbol.
pub const DEFAULT_CORRELATIONS: &[(&str, &str)] = &[
    ("nasdaq", "QQQ"),
    ("arkk", "ARKK"),
    ("gold", "GLD"),
    ("sp500", "SPY"),
    ("treasuries", "TLT"),
    ("dollar", "DXY"),
];

/// What a security is used for in the features (the keys of `features.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Qqq,
    Hyg,
    Vix,
    Tlt,
    Arkk,
    Spy,
    Iwm,
    Lqd,
    Gld,
    Dxy,
    Btc,
}

/// The keys of `features.roles`, in [`Role::ALL`] order.
pub const ROLE_KEYS: &[&str] = &[
    "qqq", "hyg", "vix", "tlt", "arkk", "spy", "iwm", "lqd", "gld", "dxy", "btc",
];

impl Role {
    pub const ALL: [Role; 11] = [
        Role::Qqq,
        Role::Hyg,
        Role::Vix,
        Role::Tlt,
        Role::Arkk,
        Role::Spy,
        Role::Iwm,
        Role::Lqd,
        Role::Gld,
        Role::Dxy,
        Role::Btc,
    ];

    /// The key in `features.roles`.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Role::Qqq => "qqq",
            Role::Hyg => "hyg",
            Role::Vix => "vix",
            Role::Tlt => "tlt",
            Role::Arkk => "arkk",
            Role::Spy => "spy",
            Role::Iwm => "iwm",
            Role::Lqd => "lqd",
            Role::Gld => "gld",
            Role::Dxy => "dxy",
            Role::Btc => "btc",
        }
    }

    #[must_use]
    pub fn parse(key: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.key() == key)
    }

    /// The db_symbol the role has when the file does not name one (those of the shipped
    /// `config/securities.yaml`).
    #[must_use]
    pub fn default_symbol(self) -> &'static str {
        match self {
            Role::Qqq => "QQQ",
            Role::Hyg => "HYG",
            Role::Vix => "VIX",
            Role::Tlt => "TLT",
            Role::Arkk => "ARKK",
            Role::Spy => "SPY",
            Role::Iwm => "IWM",
            Role::Lqd => "LQD",
            Role::Gld => "GLD",
            Role::Dxy => "DXY",
            Role::Btc => "BTCUSD",
        }
    }
}
