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
/// One backup runs at a time. It runs to the end even when the request
/// times out or the client goes away, and is then recorded as it ended, so
/// no backup goes unaudited.
async fn backup(headers: HeaderMap, app: Arc<App>) -> Response {
    let r = Req { method: "POST", route: "POST /admin/v1/backups", headers, tenant: None, key_id: None };
    if let Err(e) = app.admin_auth(&r) {
        return app.fail(&r, e);
    }
    let Some(base) = app.backup_dir.clone() else {
        return app.fail(&r, ApiError::BackupNotConfigured);
    };
    let Ok(running) = app.backup_running.clone().try_lock_owned() else {
        return app.fail(&r, ApiError::BackupInProgress);
    };
    let (done, answer) = tokio::sync::oneshot::channel();
    let task = {
        let (app, r) = (app.clone(), r.clone());
        async move {
            let _running = running;
            let _ = done.send(write_backup(&app, &r, base).await);
        }
    };
    tokio::spawn(super::REQUEST_ID.scope(super::current_request_id(), task));
    answer.await.unwrap_or_else(|_| app.fail(&r, ApiError::Internal))
}

async fn write_backup(app: &Arc<App>, r: &Req, base: std::path::PathBuf) -> Response {
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
            app.audit(r, detail, json(StatusCode::CREATED, &body))
        }
        Ok(Err(e)) => {
            log::error!("backup to {} failed: {e}", dir.display());
            app.fail(r, ApiError::DbUnavailable)
        }
        Err(e) => {
            log::error!("backup task failed: {e}");
            app.fail(r, ApiError::Internal)
        }
    }
}
