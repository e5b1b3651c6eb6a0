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

/// A `COPY table (columns) FROM STDIN (FORMAT binary)` statement, made from one column list
/// together with the field count of its rows, so that the two cannot disagree.
pub(super) struct CopyInto {
    statement: String,
    columns: usize,
}

impl CopyInto {
    /// The statement copying into `columns` of `table`, in that order.
    pub(super) fn new(table: &str, columns: &[&str]) -> Self {
        Self {
            statement: format!(
                "COPY {table} ({}) FROM STDIN (FORMAT binary)",
                columns.join(", ")
            ),
            columns: columns.len(),
        }
    }

    /// Empty rows for this statement, with room for about `rows` of them.
    pub(super) fn rows(&self, rows: usize) -> CopyRows {
        let mut data = Vec::with_capacity(HEADER.len() + rows * (2 + 12 * self.columns) + 2);
        data.extend_from_slice(HEADER);
        CopyRows {
            data,
            // A row's field count is an int16 in the format; no table of ours comes near.
            columns: i16::try_from(self.columns).unwrap_or(i16::MAX),
            rows: 0,
            fields: 0,
            misframed: false,
            scratch: PgArgumentBuffer::default(),
        }
    }

    /// Runs the statement with `rows` on `conn` (inside the caller's transaction, if any): all
    /// rows or, on any error, none. Rows of the wrong field count are refused before anything
    /// is sent. Returns the rows copied.
    pub(super) async fn run(
        &self,
        conn: &mut PgConnection,
        rows: CopyRows,
        doing: &'static str,
    ) -> Result<u64, StoreError> {
        let data = self.framed(rows, doing)?;
        // Dropped on an error before `finish`, the `PgCopyIn` sends CopyFail: the server rolls
        // the COPY back.
        let mut copy = conn
            .copy_in_raw(&self.statement)
            .await
            .map_err(query_error(doing))?;
        copy.send(data).await.map_err(query_error(doing))?;
        copy.finish().await.map_err(query_error(doing))
    }

    /// The bytes of `rows` with the format's trailer, or an error if a row has not as many
    /// fields as the statement has columns.
    fn framed(&self, rows: CopyRows, doing: &'static str) -> Result<Vec<u8>, StoreError> {
        if rows.misframed || rows.fields != rows.rows * self.columns {
            return Err(query_error(doing)(sqlx::Error::Protocol(format!(
                "{} fields in {} rows (not {} each) for the columns of `{}`",
                rows.fields, rows.rows, self.columns, self.statement
            ))));
        }
        Ok(rows.finish())
    }
}

/// Rows in the binary copy format for one [`CopyInto`], built in memory and sent whole.
pub(super) struct CopyRows {
    data: Vec<u8>,
    columns: i16,
    rows: usize,
    fields: usize,
    /// Whether a row was started before the one before it had all its fields.
    misframed: bool,
    /// Reused for each value: sqlx's encoders write into a `PgArgumentBuffer`.
    scratch: PgArgumentBuffer,
}

impl CopyRows {
    /// Starts a row: its fields follow, in the statement's column order.
    pub(super) fn row(&mut self) {
        // The rows so far must be complete, so that a short row and a long one cannot add up.
        self.misframed |= self.fields != self.rows * usize::from(self.columns.unsigned_abs());
        self.rows += 1;
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
        self.fields += 1;
        Ok(self)
    }

    /// The rows with the format's trailer.
    fn finish(mut self) -> Vec<u8> {
        self.data.extend_from_slice(&(-1i16).to_be_bytes());
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_framed_as_the_binary_copy_format() {
        let copy = CopyInto::new("t", &["a", "b", "c"]);
        assert_eq!(
            copy.statement,
            "COPY t (a, b, c) FROM STDIN (FORMAT binary)"
        );
        let mut rows = copy.rows(1);
        rows.row();
        rows.field(&7i64)
            .unwrap()
            .field(&None::<f64>)
            .unwrap()
            .field(&"ab")
            .unwrap();
        let data = copy.framed(rows, "testing").unwrap();
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

    #[test]
    fn rows_of_another_field_count_are_refused_before_sending() {
        let copy = CopyInto::new("t", &["a", "b"]);
        let mut rows = copy.rows(2);
        rows.row();
        rows.field(&1i64).unwrap().field(&2i64).unwrap();
        rows.row();
        rows.field(&3i64).unwrap();
        let error = copy.framed(rows, "testing").unwrap_err().to_string();
        assert!(
            error.contains("3 fields in 2 rows (not 2 each) for the columns of `COPY t (a, b)"),
            "{error}"
        );
        // A short row and a long one add up to the right total, and are refused all the same.
        let mut rows = copy.rows(2);
        rows.row();
        rows.field(&1i64).unwrap();
        rows.row();
        rows.field(&2i64)
            .unwrap()
            .field(&3i64)
            .unwrap()
            .field(&4i64)
            .unwrap();
        assert!(copy.framed(rows, "testing").is_err());
    }
}
