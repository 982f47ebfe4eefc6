//! `saga.query.list`: every saga, a page at a time, oldest first, read
//! from the stream so that any replica, restarted or not, gives the same
//! answer.
//!
//! An unfinished saga has one entry, `saga.open.<order_id>` (its
//! [`SagaSummary`]), written after each of its records, each rolling up the
//! one before; the record that finishes the saga removes it. Unfinished sagas are listed from those entries, oldest
//! started first. Finished ones are listed from their last records,
//! `saga.log.<order_id>.finish`, in the order they finished. A list of
//! every saga gives the finished ones, then the unfinished.
//!
//! The cursor (`next`, `after`) says which of the two a page ended in and
//! where: `f<sequence>` from that sequence of the finished records on, or
//! `o<started, in Unix nanoseconds>:<order_id>` after that unfinished saga
//! (`o` alone: from the first).

use std::cmp::Ordering;

use events::saga::{
    ListSagas, ListStatus, SagaList, SagaRecord, SagaSummary, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT,
};
use events::subjects;
use runtime::query::{Query, QueryError};
use runtime::{Store, StoreError};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Where a page of the list starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// The finished sagas whose last record is at this sequence or after.
    Finished(u64),
    /// The unfinished sagas after this one (started, order id), or from
    /// the first.
    Open(Option<(i128, String)>),
}

impl Cursor {
    pub fn parse(cursor: &str) -> Result<Self, QueryError> {
        let unreadable = || {
            QueryError::BadRequest(format!(
                "unreadable cursor {cursor:?}: pass the `next` of the page before"
            ))
        };
        if let Some(seq) = cursor.strip_prefix('f') {
            return seq.parse().map(Self::Finished).map_err(|_| unreadable());
        }
        match cursor.strip_prefix('o') {
            Some("") => Ok(Self::Open(None)),
            Some(rest) => {
                let (started, order_id) = rest.split_once(':').ok_or_else(unreadable)?;
                let started = started.parse().map_err(|_| unreadable())?;
                Ok(Self::Open(Some((started, order_id.to_owned()))))
            }
            None => Err(unreadable()),
        }
    }

    pub fn render(&self) -> String {
        match self {
            Self::Finished(seq) => format!("f{seq}"),
            Self::Open(None) => "o".to_owned(),
            Self::Open(Some((started, order_id))) => format!("o{started}:{order_id}"),
        }
    }
}

/// `saga.query.list`, answered from `store` (the saga stream).
pub fn list_query(store: Store) -> Query {
    Query::json("list", subjects::LIST_SAGAS, move |request: ListSagas| {
        let store = store.clone();
        async move { list(&store, request).await }
    })
}

/// One page of the list `request` asks for.
pub async fn list(store: &Store, request: ListSagas) -> Result<SagaList, QueryError> {
    let limit = request.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(QueryError::BadRequest(format!(
            "limit: must be 1 to {MAX_LIST_LIMIT}, got {limit}"
        )));
    }
    let cursor = request.after.as_deref().map(Cursor::parse).transpose()?;
    let wrong_part =
        || QueryError::BadRequest("the cursor is of a list with another status".to_owned());
    match (request.status, cursor) {
        (Some(ListStatus::Finished), None) => finished(store, 1, limit).await,
        (Some(ListStatus::Finished), Some(Cursor::Finished(from))) => {
            finished(store, from, limit).await
        }
        (Some(status), None) => Ok(open(store, Some(status), None, limit).await?),
        (Some(status), Some(Cursor::Open(after))) if status != ListStatus::Finished => {
            Ok(open(store, Some(status), after, limit).await?)
        }
        (Some(_), Some(_)) => Err(wrong_part()),
        (None, Some(Cursor::Open(after))) => Ok(open(store, None, after, limit).await?),
        (None, cursor) => {
            let from = match cursor {
                Some(Cursor::Finished(from)) => from,
                _ => 1,
            };
            let mut page = finished(store, from, limit).await?;
            if page.next.is_some() {
                return Ok(page);
            }
            // The finished sagas end here: the unfinished follow.
            let rest = open(store, None, None, limit - page.sagas.len()).await?;
            page.next = match (rest.sagas.is_empty(), rest.next) {
                (true, Some(_)) => Some(Cursor::Open(None).render()),
                (_, next) => next,
            };
            page.sagas.extend(rest.sagas);
            Ok(page)
        }
    }
}

/// Up to `limit` finished sagas, from the record at `from` on.
async fn finished(store: &Store, from: u64, limit: usize) -> Result<SagaList, QueryError> {
    let scan = store.scan(subjects::FINISHED_SAGAS, from, limit).await?;
    let next = scan
        .more
        .then(|| {
            scan.messages
                .last()
                .map(|m| Cursor::Finished(m.seq + 1).render())
        })
        .flatten();
    let sagas = scan
        .messages
        .iter()
        .filter_map(|m| match serde_json::from_slice::<SagaRecord>(&m.payload) {
            Ok(record) => Some(record.summary()),
            Err(e) => {
                tracing::warn!(subject = %m.subject, error = %e, "an unreadable saga record is left out of the list");
                None
            }
        })
        .collect();
    Ok(SagaList { sagas, next })
}

/// Up to `limit` unfinished sagas of `status` (all of them for `None`),
/// after `after`, oldest started first. With `limit` 0, only whether
/// there are any (`next`).
async fn open(
    store: &Store,
    status: Option<ListStatus>,
    after: Option<(i128, String)>,
    limit: usize,
) -> Result<SagaList, StoreError> {
    let sagas = open_sagas(store).await?;
    Ok(page(sagas, status, after, limit))
}

/// Every unfinished saga's entry.
pub async fn open_sagas(store: &Store) -> Result<Vec<SagaSummary>, StoreError> {
    Ok(store
        .scan_all(subjects::OPEN_SAGAS)
        .await?
        .iter()
        // An empty entry marks a saga just finished.
        .filter(|m| !m.payload.is_empty())
        .filter_map(|m| match serde_json::from_slice::<SagaSummary>(&m.payload) {
            Ok(summary) => Some(summary),
            Err(e) => {
                tracing::warn!(subject = %m.subject, error = %e, "an unreadable saga entry is left out of the list");
                None
            }
        })
        .collect())
}

/// The page of `sagas` (unfinished) that `status`, `after` and `limit`
/// ask for.
pub fn page(
    sagas: Vec<SagaSummary>,
    status: Option<ListStatus>,
    after: Option<(i128, String)>,
    limit: usize,
) -> SagaList {
    let mut keyed: Vec<((i128, String), SagaSummary)> = sagas
        .into_iter()
        .filter(|s| status.is_none_or(|status| s.is(status)))
        .map(|s| ((started(&s), s.order_id.to_string()), s))
        .filter(|(key, _)| {
            after
                .as_ref()
                .is_none_or(|after| key.cmp(after) == Ordering::Greater)
        })
        .collect();
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let more = keyed.len() > limit;
    keyed.truncate(limit);
    let next = match (more, keyed.last()) {
        (true, Some((key, _))) => Some(Cursor::Open(Some(key.clone())).render()),
        (true, None) => Some(Cursor::Open(None).render()),
        (false, _) => None,
    };
    SagaList {
        sagas: keyed.into_iter().map(|(_, s)| s).collect(),
        next,
    }
}

/// When the saga started, in Unix nanoseconds (0 if unreadable: first).
fn started(summary: &SagaSummary) -> i128 {
    OffsetDateTime::parse(&summary.started_at, &Rfc3339).map_or(0, |t| t.unix_timestamp_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::saga::SagaState;
    use events::OrderId;

    fn saga(id: &str, started_at: &str, state: SagaState, attempt: u32) -> SagaSummary {
        SagaSummary {
            order_id: OrderId::parse(id).unwrap(),
            state,
            waiting_on: Some("reserve_stock".to_owned()),
            attempt,
            started_at: started_at.to_owned(),
            updated_at: started_at.to_owned(),
        }
    }

    fn ids(list: &SagaList) -> Vec<&str> {
        list.sagas.iter().map(|s| s.order_id.as_str()).collect()
    }

    fn sagas() -> Vec<SagaSummary> {
        vec![
            saga("o-c", "2026-12-01T10:00:01Z", SagaState::Charging, 2),
            saga("o-a", "2026-12-01T10:00:00.5Z", SagaState::Reserving, 1),
            saga("o-b", "2026-12-01T10:00:00.5Z", SagaState::Releasing, 3),
            saga("o-d", "2026-12-01T09:59:59Z", SagaState::Cancelling, 1),
        ]
    }

    #[test]
    fn unfinished_sagas_come_oldest_started_first_whatever_the_spelling_of_the_time() {
        let list = page(sagas(), None, None, 10);
        assert_eq!(ids(&list), ["o-d", "o-a", "o-b", "o-c"]);
        assert_eq!(list.next, None);
    }

    #[test]
    fn the_filters_pick_running_compensating_and_stuck_sagas() {
        let pick = |status| ids(&page(sagas(), Some(status), None, 10)).join(",");
        assert_eq!(pick(ListStatus::Running), "o-a,o-c");
        assert_eq!(pick(ListStatus::Compensating), "o-d,o-b");
        assert_eq!(pick(ListStatus::Stuck), "o-b,o-c");
    }

    #[test]
    fn pages_follow_one_another_without_a_gap_or_a_repeat() {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let list = page(sagas(), None, after, 1);
            seen.extend(ids(&list).iter().map(|s| s.to_string()));
            match list.next {
                Some(next) => match Cursor::parse(&next).unwrap() {
                    Cursor::Open(key) => after = key,
                    other => panic!("{other:?}"),
                },
                None => break,
            }
        }
        assert_eq!(seen, ["o-d", "o-a", "o-b", "o-c"]);
    }

    #[test]
    fn a_cursor_reads_back_as_it_was_written_and_nonsense_is_refused() {
        for cursor in [
            Cursor::Finished(42),
            Cursor::Open(None),
            Cursor::Open(Some((1_764_583_200_500_000_000, "o-a:b".to_owned()))),
        ] {
            assert_eq!(Cursor::parse(&cursor.render()).unwrap(), cursor);
        }
        for bad in ["", "x1", "f", "f-1", "o12", "oabc:o-1"] {
            assert!(
                matches!(Cursor::parse(bad), Err(QueryError::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
