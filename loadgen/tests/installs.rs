//! `get-token --installs-file`: request n asks for install n mod count, so a run of as many
//! requests as installs asks for each exactly once (what scripts/bench relies on to fill
//! token-service's cache with every install).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use loadgen::args::{Budget, LocalUrl};
use loadgen::client::Bearer;
use loadgen::echo::Echo;
use loadgen::get_token;
use snykapps_proto::token_v1 as pb;
use snykapps_proto::token_v1::token_service_server::{TokenService, TokenServiceServer};
use tonic::{Request, Response, Status};

/// The echo service, counting the install ids asked for.
#[derive(Clone, Default)]
struct Recording {
    echo: Echo,
    asked: Arc<Mutex<BTreeMap<String, u64>>>,
}

fn only_get_access_token() -> Status {
    Status::unimplemented("test server")
}

#[tonic::async_trait]
impl TokenService for Recording {
    async fn complete_install(
        &self,
        _req: Request<pb::CompleteInstallRequest>,
    ) -> Result<Response<pb::Install>, Status> {
        Err(only_get_access_token())
    }

    async fn get_access_token(
        &self,
        req: Request<pb::GetAccessTokenRequest>,
    ) -> Result<Response<pb::AccessToken>, Status> {
        let Some(pb::get_access_token_request::Target::InstallId(id)) =
            req.get_ref().target.clone()
        else {
            return Err(Status::invalid_argument("no install id"));
        };
        *self
            .asked
            .lock()
            .expect("not poisoned")
            .entry(id)
            .or_default() += 1;
        self.echo.get_access_token(req).await
    }

    async fn force_refresh(
        &self,
        _req: Request<pb::ForceRefreshRequest>,
    ) -> Result<Response<pb::AccessToken>, Status> {
        Err(only_get_access_token())
    }

    async fn get_install(
        &self,
        _req: Request<pb::GetInstallRequest>,
    ) -> Result<Response<pb::Install>, Status> {
        Err(only_get_access_token())
    }

    async fn list_installs(
        &self,
        _req: Request<pb::ListInstallsRequest>,
    ) -> Result<Response<pb::ListInstallsResponse>, Status> {
        Err(only_get_access_token())
    }

    async fn delete_install(
        &self,
        _req: Request<pb::DeleteInstallRequest>,
    ) -> Result<Response<pb::DeleteInstallResponse>, Status> {
        Err(only_get_access_token())
    }

    async fn acquire_snyk_permit(
        &self,
        _req: Request<pb::AcquireSnykPermitRequest>,
    ) -> Result<Response<pb::SnykPermit>, Status> {
        Err(only_get_access_token())
    }

    type WatchInstallEventsStream = futures::stream::Empty<Result<pb::InstallEvent, Status>>;

    async fn watch_install_events(
        &self,
        _req: Request<pb::WatchInstallEventsRequest>,
    ) -> Result<Response<Self::WatchInstallEventsStream>, Status> {
        Err(only_get_access_token())
    }
}

#[tokio::test]
async fn a_run_of_n_requests_over_n_installs_asks_for_each_once() {
    let service = Recording::default();
    let asked = Arc::clone(&service.asked);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = LocalUrl::parse_target(&format!("http://{}", listener.local_addr().expect("addr")))
        .expect("local");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TokenServiceServer::new(service))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );

    let dir = std::env::temp_dir().join(format!("loadgen-installs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("installs.txt");
    let ids: Vec<String> = (0..37).map(|i| format!("install-{i:02}")).collect();
    std::fs::write(
        &file,
        format!("# {} installs\n{}\n", ids.len(), ids.join("\n")),
    )
    .expect("writes");
    let install_ids = get_token::read_installs_file(&file).expect("reads");
    std::fs::remove_dir_all(&dir).expect("cleans up");
    assert_eq!(install_ids, ids);

    let report = get_token::run(get_token::Plan {
        targets: vec![url],
        bearer: Bearer::new("k").expect("key"),
        install_ids,
        min_validity_seconds: 0,
        concurrency: 5,
        connections_per_target: 2,
        budget: Budget::new(37, 10.0).expect("budget"),
        warmup: 0,
    })
    .await
    .expect("runs");
    assert_eq!((report.ok, report.errors), (37, 0), "{report:?}");
    assert_eq!(report.installs, Some(37));
    let asked = asked.lock().expect("not poisoned").clone();
    assert_eq!(asked.len(), 37, "{asked:?}");
    assert!(asked.values().all(|&n| n == 1), "{asked:?}");

    let _ = stop.send(());
    served.await.expect("joins").expect("served");
}
