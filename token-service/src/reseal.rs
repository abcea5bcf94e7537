//! `token-service reseal`: re-seals every stored grant with the primary key of
//! `TOKEN_ENCRYPTION_KEYS`, so an old key can be removed after a rotation.

use crate::{
    grant::InstallId,
    store::{Fenced, Store},
};

/// What a re-seal run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResealReport {
    pub resealed: u64,
    pub already_current: u64,
    /// Records that could not be opened with any listed key (left untouched, logged).
    pub unreadable: u64,
}

/// Walks every install and rewrites the ones sealed with an older key. Safe while the service
/// runs: each rewrite is a fenced write, retried when a refresh got there first.
pub async fn reseal_all(store: &Store) -> anyhow::Result<ResealReport> {
    let mut report = ResealReport::default();
    let mut after: Option<InstallId> = None;
    loop {
        let ids = store.list_ids(after.as_ref(), 200).await?;
        let Some(last) = ids.last().copied() else {
            break;
        };
        for id in ids {
            for _attempt in 0..5 {
                let v = match store.load(&id).await {
                    Ok(Some(v)) => v,
                    Ok(None) => break,
                    Err(e @ crate::store::StoreError::Unavailable(_)) => return Err(e.into()),
                    Err(e) => {
                        tracing::error!(install_id = %id, error = %e, "cannot re-seal an unreadable record");
                        report.unreadable += 1;
                        break;
                    }
                };
                if v.sealed_with_primary {
                    report.already_current += 1;
                    break;
                }
                if let Fenced::Written(_) = store.write_fenced(v.generation, &v.grant, None).await?
                {
                    report.resealed += 1;
                    break;
                }
            }
        }
        after = Some(last);
    }
    Ok(report)
}
