//! The Redis servers of a stack as compose runs them (each under its ACL file), one a test can
//! kill and restart, and readers of what the services keep there.

use test_support::RedisServer;

use crate::stack::Stack;

/// token-service's user in the grants' Redis (`deploy/redis/redis.acl`).
pub const TOKEN_SERVICE_USER: &str = "token-service";
/// auth-service's user in its own Redis (`deploy/redis/redis-auth.acl`).
pub const AUTH_SERVICE_USER: &str = "auth-service";

/// The grants' Redis as compose runs it: under the repository's ACL file, so token-service
/// connects as its own user and the test reads as [`test_support::ADMIN_USER`].
pub fn grants_redis() -> test_support::RedisOptions {
    test_support::RedisOptions {
        acl: Some(test_support::acl_file("redis")),
        ..test_support::RedisOptions::default()
    }
}

/// auth-service's own Redis, under its ACL file.
pub fn auth_redis() -> RedisServer {
    RedisServer::start_with(test_support::RedisOptions {
        acl: Some(test_support::acl_file("redis-auth")),
        ..test_support::RedisOptions::default()
    })
    .expect("auth-service's redis-server starts")
}

/// A Redis that a test kills and starts again: persistent (AOF in a temp dir) on a fixed TCP
/// port, so a restart finds its data and its clients find it.
pub struct RestartableRedis {
    _dir: tempfile::TempDir,
    options: test_support::RedisOptions,
    /// `redis://token-service:…@127.0.0.1:<port>`, for `REDIS_URL`.
    pub url: String,
}

impl RestartableRedis {
    /// Starts one and makes it the stack's Redis.
    pub fn replace(stack: &mut Stack) -> RestartableRedis {
        let dir = tempfile::tempdir().unwrap();
        let options = test_support::RedisOptions {
            tcp: true,
            persistent: true,
            dir: Some(dir.path().into()),
            ..grants_redis()
        };
        stack.redis = RedisServer::start_with(options.clone()).unwrap();
        let options = test_support::RedisOptions {
            port: stack.redis.port(),
            ..options
        };
        let url = stack.redis.tcp_url_as(TOKEN_SERVICE_USER).unwrap();
        RestartableRedis {
            _dir: dir,
            options,
            url,
        }
    }

    /// Starts it again (after `stack.redis.kill()`), same port, same data.
    pub fn restart(&self, stack: &mut Stack) {
        stack.redis = RedisServer::start_with(self.options.clone()).unwrap();
    }
}

/// The pending sign-ins in auth-service's Redis: each `auth:state:*` key's JSON record.
pub async fn pending_sign_ins(auth_redis: &RedisServer) -> Vec<serde_json::Value> {
    let keys = auth_redis.keys("auth:state:*").await;
    let mut c = auth_redis.conn().await;
    let mut records = Vec::new();
    for key in keys {
        let raw: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        if let Some(raw) = raw {
            records.push(serde_json::from_str(&raw).expect("a JSON sign-in record"));
        }
    }
    records
}

/// Every entry of the event stream as Redis holds it: (id, kind, install id).
pub async fn stored_events(stack: &Stack) -> Vec<(String, String, String)> {
    let mut c = stack.redis_conn().await;
    let entries: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("snykapps:events")
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(id, f)| (id, f["kind"].clone(), f["install_id"].clone()))
        .collect()
}
