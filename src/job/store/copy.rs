//! `COPY .. FROM STDIN (FORMAT binary)` for the rows of a first history (bars and indicator
//! rows with nothing stored in their range): the fastest way into a table PostgreSQL has. The
//! values are encoded by sqlx's own binary encoders, the bytes it sends for bind parameters,
//! framed as the binary copy format
//! (<https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4>): a signature,
//! then per row its field count and each field's length (-1 for NULL) and bytes, then -1.
//!
//! Against the `INSERT .. SELECT FROM UNNEST(arrays)` it replaces there, PostgreSQL neither
//! decodes arrays nor materialises the function scan into a tuplestore (~15% of its samples in
//! `perf`): on the 200 x 10-year backfill its CPU fell from 11.4-12.6 to 8.0-9.4 CPU-s, five
//! rounds back to back (README, Performance). The text format had been tried and dropped: its
//! formatting of every `Decimal` and `f64` cost us more than it saved the server.
//!
//! Binary input does not cast: each field's encoder must produce the column's own type
//! (`NUMERIC` from `Decimal`, `DOUBLE PRECISION` from `f64`, `VARCHAR` from `&str`, ...).
//! The column's type modifier still applies (`NUMERIC(20, 8)` rounds, `VARCHAR(32)` refuses
//! longer), as do its CHECK constraints and keys, as for an `INSERT`.

use sqlx::encode::{Encode, IsNull};
use sqlx::postgres::{PgArgumentBuffer, PgConnection, Postgres};

use super::{StoreError, query_error};

/// The binary copy format's signature, flags (no OIDs) and header extension length (none).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Rows in the binary copy format, built in memory and sent in one [`copy_in`].
pub(super) struct CopyRows {
    data: Vec<u8>,
    columns: i16,
    /// Reused for each value: sqlx's encoders write into a `PgArgumentBuffer`.
    scratch: PgArgumentBuffer,
}

impl CopyRows {
    /// An empty set of rows of `columns` fields each, with room for about `rows` of them.
    pub(super) fn new(columns: i16, rows: usize) -> Self {
        let mut data = Vec::with_capacity(HEADER.len() + rows * (2 + 12 * columns as usize) + 2);
        data.extend_from_slice(HEADER);
        Self {
            data,
            columns,
            scratch: PgArgumentBuffer::default(),
        }
    }

    /// Starts a row: its `columns` fields follow, in the statement's column order.
    pub(super) fn row(&mut self) {
        self.data.extend_from_slice(&self.columns.to_be_bytes());
    }

    /// One field of the current row (`None` is NULL).
    pub(super) fn field<'q, T: Encode<'q, Postgres>>(
        &mut self,
        value: &T,
    ) -> Result<&mut Self, StoreError> {
        self.scratch.clear();
        let encode_error = |e| query_error("encoding a row for COPY")(sqlx::Error::Encode(e));
        let null = value
            .encode_by_ref(&mut self.scratch)
            .map_err(encode_error)?;
        match null {
            IsNull::Yes => self.data.extend_from_slice(&(-1i32).to_be_bytes()),
            IsNull::No => {
                let len =
                    i32::try_from(self.scratch.len()).map_err(|e| encode_error(Box::new(e)))?;
                self.data.extend_from_slice(&len.to_be_bytes());
                self.data.extend_from_slice(&self.scratch);
            }
        }
        Ok(self)
    }

    /// The rows with the format's trailer.
    fn finish(mut self) -> Vec<u8> {
        self.data.extend_from_slice(&(-1i16).to_be_bytes());
        self.data
    }
}

/// Runs `statement` (a `COPY table (columns) FROM STDIN (FORMAT binary)`) with `rows` on `conn`
/// (inside the caller's transaction, if any): all rows or, on any error, none. Returns the rows
/// copied.
pub(super) async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    rows: CopyRows,
    doing: &'static str,
) -> Result<u64, StoreError> {
    let data = rows.finish();
    // Dropped on an error before `finish`, the `PgCopyIn` sends CopyFail: the server rolls
    // the COPY back.
    let mut copy = conn
        .copy_in_raw(statement)
        .await
        .map_err(query_error(doing))?;
    copy.send(data).await.map_err(query_error(doing))?;
    copy.finish().await.map_err(query_error(doing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_framed_as_the_binary_copy_format() {
        let mut rows = CopyRows::new(3, 1);
        rows.row();
        rows.field(&7i64)
            .unwrap()
            .field(&None::<f64>)
            .unwrap()
            .field(&"ab")
            .unwrap();
        let data = rows.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend_from_slice(&[0; 8]); // flags, header extension length
        expected.extend_from_slice(&3i16.to_be_bytes());
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(&(-1i32).to_be_bytes()); // NULL
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(b"ab");
        expected.extend_from_slice(&(-1i16).to_be_bytes()); // trailer
        assert_eq!(data, expected);
    }
}
