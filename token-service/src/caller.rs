//! Who is calling: the `authorization: Bearer <key>` check every RPC passes first
//! (docs/design.md, invariant 5).

use snykapps_proto::auth::ClientKeys;
use tonic::{Request, Status};

/// The caller an RPC was authenticated as (a request extension, logged by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// A tonic interceptor: rejects calls without a known key, tags the others with [`Caller`].
pub fn check(keys: &ClientKeys, mut req: Request<()>) -> Result<Request<()>, Status> {
    let header = req.metadata().get("authorization").map(|v| v.as_bytes());
    let caller = keys
        .authenticate(header)
        .map_err(|r| Status::unauthenticated(r.to_string()))?
        .to_owned();
    req.extensions_mut().insert(Caller(caller));
    Ok(req)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tonic::Code;

    #[test]
    fn tags_known_callers_and_refuses_the_rest() {
        let keys = ClientKeys::parse("V", "projects-service=aaaaaaaaaaaaaaaa1").unwrap();
        let mut req = Request::new(());
        req.metadata_mut()
            .insert("authorization", "Bearer aaaaaaaaaaaaaaaa1".parse().unwrap());
        let req = check(&keys, req).unwrap();
        assert_eq!(
            req.extensions().get::<Caller>(),
            Some(&Caller("projects-service".into()))
        );
        let err = check(&keys, Request::new(())).unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
}
