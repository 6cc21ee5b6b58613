//! Admin operations on the running store: online backups.

use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use warp::Filter as _;

use super::{ApiError, Req, Response, Routes, json, with_app};
use crate::app::{App, now_ms};

pub fn routes(app: Arc<App>) -> Routes {
    warp::path!("admin" / "v1" / "backups")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(with_app(app))
        .then(backup)
        .boxed()
}

/// Writes a consistent snapshot into `storage.backup_dir/backup-<ms>` while
/// appends continue. The directory name is the daemon's, never the caller's.
async fn backup(headers: HeaderMap, app: Arc<App>) -> Response {
    let r = Req { method: "POST", route: "POST /admin/v1/backups", headers, tenant: None, key_id: None };
    if let Err(e) = app.admin_auth(&r) {
        return app.fail(&r, e);
    }
    let Some(base) = app.backup_dir.clone() else {
        return app.fail(&r, ApiError::BackupNotConfigured);
    };
    let dir = base.join(format!("backup-{}", now_ms()));
    let store = app.store.clone();
    let target = dir.clone();
    let result = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
        store.backup(&target).map_err(|e| format!("{e:?}"))
    })
    .await;
    match result {
        Ok(Ok(stats)) => {
            let detail = format!("backup written to {} ({} records)", dir.display(), stats.records_total);
            let body =
                serde_json::json!({"path": dir.display().to_string(), "records_total": stats.records_total});
            app.audit(&r, detail, json(StatusCode::CREATED, &body))
        }
        Ok(Err(e)) => {
            log::error!("backup to {} failed: {e}", dir.display());
            app.fail(&r, ApiError::DbUnavailable)
        }
        Err(e) => {
            log::error!("backup task failed: {e}");
            app.fail(&r, ApiError::Internal)
        }
    }
}
