//! A started bot: its address, its pool, and the tasks (HTTP server, workers) to stop. Both bots'
//! `app::start` return one; `main` waits on it and the end-to-end tests stop or crash it.

use std::net::SocketAddr;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Running {
    pub addr: SocketAddr,
    pub pool: PgPool,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn new(addr: SocketAddr, pool: PgPool, shutdown: watch::Sender<bool>, tasks: Vec<JoinHandle<()>>) -> Self {
        Running {
            addr,
            pool,
            shutdown,
            tasks,
        }
    }

    /// Asks everything to stop and waits until it has (in-flight requests and steps reach a safe
    /// point first).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }

    /// Stops everything at once, mid-work, the way `kill -9` would as far as the database and the
    /// step processes can tell: no safe point is reached, tasks are dropped where they are, and a
    /// step's shell dies while what it started lives on in its process group (recorded in
    /// `step_processes`, for the next start to kill). For crash-recovery tests.
    pub async fn abort(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Waits until the server and workers have stopped (after a shutdown signal).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}
