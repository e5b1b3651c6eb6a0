//! `market-encoder features` and `GET /ml-features`: the stored cross-asset features of one
//! date, read back from `market_features` (no configuration needed).

use chrono::NaiveDate;

use crate::job::features::display_rank;
use crate::job::store::{Store, StoreError, StoredFeature};

/// Why the `features` command has nothing to show.
#[derive(Debug, thiserror::Error)]
pub enum FeaturesError {
    #[error(
        "no cross-asset features stored in {target}; run the job (`market-encoder`) to compute them"
    )]
    NoData { target: String },
    #[error(
        "no cross-asset features for {date} in {target} (latest: {latest}); features exist for trade dates only; run the job with a window that covers {date} (`market-encoder --from {date}`)"
    )]
    NoDate {
        target: String,
        date: NaiveDate,
        latest: NaiveDate,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The stored features of `date`, or of the latest date that has any, sorted for display
/// ([`display_rank`]): what `market-encoder features` prints and `GET /ml-features` answers.
/// Reads `market_features` only (no configuration needed).
pub async fn read_stored(
    store: &Store,
    date: Option<NaiveDate>,
) -> Result<(NaiveDate, Vec<StoredFeature>), FeaturesError> {
    let target = store.target().to_owned();
    let Some(latest) = store.latest_feature_date().await? else {
        return Err(FeaturesError::NoData { target });
    };
    let date = date.unwrap_or(latest);
    let mut rows = store.features_on(date).await?;
    if rows.is_empty() {
        return Err(FeaturesError::NoDate {
            target,
            date,
            latest,
        });
    }
    rows.sort_by(|a, b| display_rank(&a.feature).cmp(&display_rank(&b.feature)));
    Ok((date, rows))
}
