//! The gRPC contract of token-service, generated from `proto/snykapps/token/v1/token.proto`.
//!
//! Modules mirror the proto package tree (`snykapps.token.v1` -> [`snykapps::token::v1`]) so a
//! reader can go from a type name on the wire to its Rust path without a lookup table.
//!
//! Reading order: the contract itself, `proto/snykapps/token/v1/token.proto` (every RPC and
//! message, with their comments) → `build.rs` (compiled with `protox`, so no `protoc` is needed,
//! plus the descriptor set) → this file: [`snykapps::token::v1`] (the generated messages, client
//! and server, also reachable as [`token_v1`]), [`FILE_DESCRIPTOR_SET`] (for gRPC reflection) and
//! the re-exported [`Timestamp`]. Its tests check that the descriptor set describes the service.

/// `snykapps.*` packages.
pub mod snykapps {
    /// `snykapps.token.*` packages.
    pub mod token {
        /// `snykapps.token.v1`: the token-service contract.
        #[allow(missing_debug_implementations, clippy::all, clippy::pedantic)]
        pub mod v1 {
            tonic::include_proto!("snykapps.token.v1");
        }
    }
}

/// The encoded `FileDescriptorSet` of every file in the contract, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/snykapps_descriptor.bin"));

pub use prost_types::Timestamp;
pub use snykapps::token::v1 as token_v1;

/// The names `snykapps.token.v1.TokenService` goes by on the wire, for the code that names it
/// outside the generated client and server: gRPC health checks, per-RPC permissions, metrics.
pub mod token_service {
    /// The service name, as gRPC health checks and reflection know it.
    pub use crate::token_v1::token_service_server::SERVICE_NAME;

    /// The metadata key of a RESOURCE_EXHAUSTED answer of `AcquireSnykPermit`: in how many
    /// seconds (a decimal integer, at least 1) the install's budget has a permit again.
    pub const RETRY_AFTER: &str = "retry-after";

    /// Each method's request path, `/<SERVICE_NAME>/<Method>`, as a `&'static str` (`concat!`
    /// takes only literals, hence the one spelling of the service name here; a test holds it to
    /// the generated [`SERVICE_NAME`] and the paths to the contract's methods).
    pub mod path {
        macro_rules! path {
            ($method:literal) => {
                concat!("/snykapps.token.v1.TokenService/", $method)
            };
        }

        pub const COMPLETE_INSTALL: &str = path!("CompleteInstall");
        pub const GET_ACCESS_TOKEN: &str = path!("GetAccessToken");
        pub const FORCE_REFRESH: &str = path!("ForceRefresh");
        pub const GET_INSTALL: &str = path!("GetInstall");
        pub const LIST_INSTALLS: &str = path!("ListInstalls");
        pub const DELETE_INSTALL: &str = path!("DeleteInstall");
        pub const WATCH_INSTALL_EVENTS: &str = path!("WatchInstallEvents");
        pub const ACQUIRE_SNYK_PERMIT: &str = path!("AcquireSnykPermit");

        /// Every method's path, in the contract's order.
        pub const ALL: [&str; 8] = [
            COMPLETE_INSTALL,
            GET_ACCESS_TOKEN,
            FORCE_REFRESH,
            GET_INSTALL,
            LIST_INSTALLS,
            DELETE_INSTALL,
            WATCH_INSTALL_EVENTS,
            ACQUIRE_SNYK_PERMIT,
        ];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn descriptor_set_names_the_service() {
        let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("decodes");
        let file = fds
            .file
            .iter()
            .find(|f| f.package() == "snykapps.token.v1")
            .expect("token.proto is in the set");
        let service = &file.service[0];
        assert_eq!(service.name(), "TokenService");
        let methods: Vec<_> = service.method.iter().map(|m| m.name()).collect();
        assert_eq!(
            methods,
            [
                "CompleteInstall",
                "GetAccessToken",
                "ForceRefresh",
                "GetInstall",
                "ListInstalls",
                "DeleteInstall",
                "WatchInstallEvents",
                "AcquireSnykPermit"
            ]
        );

        // The hand-built names are the generated code's and the contract's, method for method.
        let name = format!("{}.{}", file.package(), service.name());
        assert_eq!(token_service::SERVICE_NAME, name);
        let paths: Vec<String> = methods.iter().map(|m| format!("/{name}/{m}")).collect();
        assert_eq!(token_service::path::ALL.to_vec(), paths);
    }

    #[test]
    fn oneof_target_round_trips() {
        let req = token_v1::GetAccessTokenRequest {
            target: Some(token_v1::get_access_token_request::Target::OrgId(
                "org".into(),
            )),
            min_validity_seconds: 60,
        };
        let back = token_v1::GetAccessTokenRequest::decode(req.encode_to_vec().as_slice())
            .expect("decodes");
        assert_eq!(back, req);
    }
}
